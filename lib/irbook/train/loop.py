"""A small seeded training loop with atomic per-epoch checkpoints and exact resume.

Any chapter's objective plugs in through ``loss_fn(model, batch) -> scalar tensor``.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..progress import progress_bar

__all__ = ["atomic_save", "fit", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then ``os.replace`` it.

    A reader never sees a half-written file, and an interrupted save leaves the old one intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _rng_state(loader: Iterable) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(loader, "generator", None)
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state: dict[str, Any], loader: Iterable) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(loader, "generator", None)
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a (nested) tuple, list or dict batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple | list):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def fit(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
    scheduler: Any | None = None,
    on_epoch_end: Callable[[int, nn.Module], dict | None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``epochs`` epochs and return one record per epoch.

    Each batch is moved to ``device`` and passed as ``loss_fn(model, batch)``; the record holds
    ``epoch`` (1-based), ``loss`` (mean batch loss), ``seconds`` and whatever ``on_epoch_end(epoch,
    model)`` returns. ``scheduler.step()`` runs once per epoch. With ``checkpoint``, the model,
    optimizer, scheduler, history and all random-generator states are saved atomically after
    every epoch, and an existing checkpoint is resumed, so an interrupted run ends with the same
    weights as an uninterrupted one. The checkpoint is this module's own file (a trusted pickle).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0; got {epochs}")
    device = torch.device(device)
    seed_everything(seed)
    model.to(device)
    history: list[dict[str, Any]] = []
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        _set_rng_state(state["rng"], loader)
    epoch_bar = progress_bar(range(len(history) + 1, epochs + 1), enabled=progress, desc=desc,
                             initial=len(history), total=epochs, unit="epoch")
    for epoch in epoch_bar:
        model.train()
        started, total, batches = time.perf_counter(), 0.0, 0
        batch_bar = progress_bar(loader, enabled=progress, desc=f"{desc} {epoch}/{epochs}",
                                 leave=False)
        for batch in batch_bar:
            loss = loss_fn(model, _to_device(batch, device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, batch "
                                         f"{batches + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
            batch_bar.set_postfix(loss=f"{total / batches:.4f}")
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch, "loss": total / max(batches, 1),
                  "seconds": time.perf_counter() - started}
        if on_epoch_end is not None:
            record.update(on_epoch_end(epoch, model) or {})
        history.append(record)
        epoch_bar.set_postfix(loss=f"{record['loss']:.4f}")
        if checkpoint is not None:
            atomic_save({
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch,
                "history": history,
                "rng": _rng_state(loader),
            }, checkpoint)
    return history
