"""The training loop the Chapter 8 demonstrations share: one pass over the training items per
epoch (captions for the matcher and the captioner, images for the autoencoder) in a seeded
random order, batches of ``batch_size`` items (a last batch of one is dropped), Adam on every
parameter of the model, the mean of each loss term logged per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..distributed import all_mean, data_parallel, is_main, share
from ..progress import progress_bar
from ..train.loop import seed_everything

__all__ = ["TrainingConfig", "as_long", "fit_batches", "item_batches"]


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of one demonstration model."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 2), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
                raise ValueError(f"{type(self).__name__}.{name} must be an integer >= {low}; "
                                 f"got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{type(self).__name__}.lr must be a finite number > 0; "
                             f"got {self.lr!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"{type(self).__name__}.device must be 'cpu' or 'cuda[:N]'; "
                             f"got {self.device!r}")


def as_long(values: object, name: str) -> Tensor:
    """``values`` as an int64 CPU tensor; a ValueError naming ``name`` for floats."""
    tensor = values if torch.is_tensor(values) else torch.as_tensor(np.asarray(values))
    if tensor.is_floating_point():
        raise ValueError(f"{name} must hold integers; got {tensor.dtype}")
    return tensor.to(torch.int64).cpu()


def item_batches(n_items: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Item indices of one epoch: a random permutation cut into batches, a last batch of one
    item dropped (a ranking loss needs a negative)."""
    order = torch.randperm(int(n_items), generator=generator)
    batches = list(order.split(int(batch_size)))
    return [b for b in batches if len(b) >= 2]


def fit_batches(model: nn.Module, batch_terms: Callable[[Tensor], dict[str, Tensor]],
                n_items: int, config: TrainingConfig, desc: str,
                progress: bool = False) -> list[dict[str, float]]:
    """Train ``model`` for ``config.epochs``; ``batch_terms(item_index)`` returns the loss
    terms of a batch, whose sum is minimised. Returns the per-epoch means (and seconds).
    Under torchrun each process takes its share of every batch and DDP averages the
    gradients (:func:`irbook.distributed.data_parallel`)."""
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    terms_of = data_parallel(model, batch_terms, config.device)  # DDP under torchrun
    history: list[dict[str, float]] = []
    for epoch in progress_bar(range(config.epochs), enabled=progress and is_main(), desc=desc,
                              unit="epoch"):
        started, sums = time.perf_counter(), {}
        model.train()
        for index in item_batches(n_items, config.batch_size, generator):
            terms = terms_of(share(index, minimum=2))  # under torchrun: this process's items
            total = torch.stack(list(terms.values())).sum()
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            for name, value in {**terms, "total": total}.items():
                sums.setdefault(name, []).append(float(value.detach()))
        history.append({"epoch": epoch + 1,
                        **{k: all_mean(float(np.mean(v))) for k, v in sums.items()},
                        "seconds": time.perf_counter() - started})
    model.eval()
    return history
