"""The book's custom training loops on tiny problems, run as one process or under torchrun.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_loops.py --out D``
trains each loop (fit with shared batches, the chapter-4 matcher with its discriminator, the
three chapter-3 hashing methods, the chapter-8 ``fit_batches``, and fit interrupted after an
epoch and resumed from rank 0's checkpoint) and rank 0 writes
``D/results.json``: per loop, every rank's parameter checksum and the first epoch's loss.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from irbook import distributed as dist
from irbook.crossmodal.hashing import HashingConfig, train_hashing
from irbook.crossmodal.matching import MatchingConfig, train_matching
from irbook.data.samplers import BatchShares
from irbook.multimodal.training import TrainingConfig, fit_batches
from irbook.train.loop import fit


def checksum(module: nn.Module) -> list[float]:
    """Sum and L2 norm of all parameters (float64): equal on every rank when DDP syncs."""
    flat = torch.cat([p.detach().double().reshape(-1) for p in module.parameters()])
    return [float(flat.sum()), float(flat.norm())]


def fit_loop(epochs: int = 2, checkpoint: Path | None = None) -> tuple[nn.Module, float]:
    generator = np.random.default_rng(0)
    x = torch.as_tensor(generator.normal(size=(64, 6)), dtype=torch.float32)
    y = x @ torch.arange(6.0) + 0.1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    data = TensorDataset(x, y)
    loader = DataLoader(data, batch_sampler=BatchShares(BatchSampler(RandomSampler(data), 16,
                                                                     drop_last=True)))
    history = fit(model, loader, lambda m, b: (m(b[0]).squeeze(1) - b[1]).pow(2).mean(),
                  torch.optim.SGD(model.parameters(), lr=0.01), epochs=epochs, progress=False,
                  checkpoint=checkpoint)
    return model, history[0]["loss"]


def resumed_fit_loop(folder: Path) -> tuple[nn.Module, float]:
    """fit stopped after epoch 1 (rank 0's checkpoint), then resumed to epoch 2 by a new
    model, optimiser and loader: it must end where the uninterrupted ``fit_loop`` does."""
    checkpoint = folder / "resume.pt"
    fit_loop(epochs=1, checkpoint=checkpoint)
    dist.barrier()  # the checkpoint is written by rank 0 only
    return fit_loop(epochs=2, checkpoint=checkpoint)


def matching_problem() -> tuple:
    rng = np.random.default_rng(1)
    attributes = rng.integers(0, 5, size=(40, 2))
    onehot = np.zeros((40, 10))
    for a in range(2):
        onehot[np.arange(40), 5 * a + attributes[:, a]] = 1
    features = (onehot @ rng.normal(size=(10, 12))).astype(np.float32)
    tokens = np.repeat(2 + attributes + np.array([0, 5]), 2, axis=0)
    return features, tokens, np.full(80, 2), np.repeat(np.arange(40), 2), np.arange(40)


def matching_loop() -> tuple[nn.Module, float]:
    config = MatchingConfig(embed_dim=8, word_dim=8, text_hidden=8, batch_size=20, lr=3e-3,
                            generator_steps=2, epochs=2, discriminator="separate")
    model = train_matching(config, *matching_problem(), vocab_size=12, progress=False)
    return model.network, model.history[0]["total"]


def hashing_loop(method: str) -> tuple[nn.Module, float]:
    rng = np.random.default_rng(2)
    labels = (rng.random((64, 3)) < 0.4).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    features = (labels @ rng.normal(size=(3, 16))).astype(np.float32)
    tags = (rng.random((64, 20)) < 0.2).astype(np.float32)
    config = HashingConfig(method=method, n_bits=8, common_dim=16, text_hidden=16,
                           batch_size=16, epochs=2, lr=1e-3)
    model = train_hashing(config, features, tags, labels, progress=False)
    return model.nets, next(v for k, v in model.history[0].items() if k != "epoch")


def fit_batches_loop() -> tuple[nn.Module, float]:
    torch.manual_seed(3)
    x = torch.randn(48, 5)
    model = nn.Linear(5, 5)

    def terms(index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reconstruction": (model(x[index]) - x[index]).pow(2).mean()}

    history = fit_batches(model, terms, 48, TrainingConfig(epochs=2, batch_size=12), "ae")
    return model, history[0]["total"]


LOOPS = {"fit": fit_loop, "matching": matching_loop, "fit_batches": fit_batches_loop,
         **{f"hashing_{m}": (lambda m=m: hashing_loop(m)) for m in ("ours", "dcmh", "ssah")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    here = dist.setup("cpu")
    torch.set_num_threads(1)
    results = {}
    loops = {**LOOPS, "fit_resumed": lambda: resumed_fit_loop(out)}
    out.mkdir(parents=True, exist_ok=True)
    for name, loop in loops.items():
        module, first_loss = loop()
        results[name] = {"checksums": dist.gather(checksum(module)), "loss": first_loss}
    if dist.is_main():
        (out / "results.json").write_text(json.dumps({"world_size": here.world_size,
                                                      "loops": results}))
    dist.finish()


if __name__ == "__main__":
    main()
