"""Classification pre-training of a backbone: the book's stand-in for ImageNet pre-training.

Backbone + global average pooling + linear classifier, trained with the cross-entropy loss of
thesis Eq. (2.13); the trained backbone is cached on disk together with its training config.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, RandomSampler

from irbook.data.loading import batch_loader
from irbook.data.samplers import BatchShares
from irbook.distributed import barrier, is_main
from irbook.train.loop import atomic_save, fit, load_checkpoint, seed_everything

__all__ = ["pretrain_classifier", "pretrain_config"]


def _architecture_digest(backbone: nn.Module) -> str:
    shapes = [(name, tuple(t.shape)) for name, t in backbone.state_dict().items()]
    return hashlib.sha1(repr((type(backbone).__name__, shapes)).encode()).hexdigest()[:16]


def pretrain_config(backbone: nn.Module, train_set, num_classes: int, *, epochs: int, lr: float,
                    batch_size: int, seed: int, extra_config: dict | None = None) -> dict:
    """The JSON-like config that identifies a cached pre-training result."""
    config = {
        "recipe": "gap+linear, cross-entropy, Adam, cosine lr",
        "architecture": _architecture_digest(backbone),
        "num_samples": len(train_set),
        "num_classes": num_classes,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "extra": extra_config or {},
    }
    return json.loads(json.dumps(config, sort_keys=True))


def _cached_state(cache_path: Path, config: dict) -> dict | None:
    """The cached state dict saved with ``config``; None when absent, stale or unreadable.

    An unreadable file is moved aside with a warning by :func:`load_checkpoint`.
    """
    payload = load_checkpoint(cache_path)
    if not isinstance(payload, dict) or payload.get("config") != config:
        return None
    return payload.get("state_dict")


def _cross_entropy(model: nn.Module, batch: Any) -> torch.Tensor:
    images, labels = batch[0], batch[1]
    return F.cross_entropy(model(images), torch.as_tensor(labels, device=images.device))


def pretrain_classifier(
    backbone: nn.Module,
    train_set,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str | torch.device = "cpu",
    cache_path: str | os.PathLike,
    progress: bool = True,
    extra_config: dict | None = None,
) -> nn.Module:
    """Pre-train ``backbone`` (needs ``out_channels``) as a classifier on ``train_set``.

    ``train_set`` yields ``(image_tensor, label)``. If ``cache_path`` holds weights saved with the
    same config (see :func:`pretrain_config`; put a dataset identifier in ``extra_config``) they
    are loaded instead of training. Otherwise the model is trained with :func:`fit` (Adam, cosine
    learning rate over the epochs, resumable from ``<cache_path>.<config digest>.partial``) and
    the backbone's state dict is saved atomically with the config, and the linear classifier
    (``head``: weight, bias) beside it (:func:`cached_head`). Returns the backbone on
    ``device`` in eval mode.
    """
    for name, value in (("num_classes", num_classes), ("epochs", epochs),
                        ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value}")
    cache_path = Path(cache_path)
    config = pretrain_config(backbone, train_set, num_classes, epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, extra_config=extra_config)
    state = _cached_state(cache_path, config)
    if state is not None:
        backbone.load_state_dict(state)
        return backbone.to(device).eval()

    seed_everything(seed)
    classifier = nn.Sequential(backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(backbone.out_channels, num_classes))
    batches = BatchSampler(RandomSampler(train_set), batch_size,
                           drop_last=len(train_set) > batch_size)  # BatchNorm needs batches > 1
    loader = batch_loader(train_set, BatchShares(batches, minimum=2), device=device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    partial = cache_path.with_name(f"{cache_path.name}.{digest}.partial")
    fit(classifier, loader, _cross_entropy, optimizer, epochs=epochs, device=device,
        checkpoint=partial, seed=seed, progress=progress, desc="pretrain", scheduler=scheduler)
    weights = {name: tensor.detach().cpu() for name, tensor in backbone.state_dict().items()}
    head = {name: tensor.detach().cpu() for name, tensor in classifier[3].state_dict().items()}
    if is_main():  # under torchrun every process trained (DDP); rank 0 alone writes
        atomic_save({"config": config, "state_dict": weights, "head": head}, cache_path)
        partial.unlink(missing_ok=True)
    barrier()  # the others read the cache only once it is written
    return backbone.to(device).eval()


def cached_head(cache_path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear classifier (weight (classes, C), bias (classes,)) saved with a pre-trained
    backbone by :func:`pretrain_classifier`: the fully-connected layer of the stand-in (FC
    features, class activation maps)."""
    payload = load_checkpoint(Path(cache_path))
    if not isinstance(payload, dict) or "head" not in payload:
        raise ValueError(f"{cache_path} holds no classifier head; it was written before heads "
                         "were saved: delete it and the backbone is trained again")
    return payload["head"]["weight"], payload["head"]["bias"]
