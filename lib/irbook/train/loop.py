"""A small seeded training loop with atomic per-epoch checkpoints and exact resume.

Any chapter's objective plugs in through ``loss_fn(model, batch) -> scalar tensor``.
"""

from __future__ import annotations

import errno
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import distributed as dist
from ..progress import progress_bar

__all__ = ["CheckpointWriteError", "atomic_save", "fit", "load_checkpoint", "move_to_device",
           "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class CheckpointWriteError(OSError):
    """The device ran out of space while a checkpoint (or cached weights) was written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        super().__init__(f"no space left on the device while writing {self.path}; free some "
                         "space (or point IRBOOK_CACHE elsewhere) and rerun: finished stages "
                         "are kept")
        self.errno = errno.ENOSPC

    def __str__(self) -> str:  # OSError.__str__ would print an errno prefix
        return str(self.args[0])


def _out_of_space(error: BaseException) -> bool:
    """ENOSPC as an OSError, or torch's zip writer failing (``inline_container`` / ``file write
    failed`` / errno 28 in a RuntimeError)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return any(mark in text for mark in ("inline_container", "file write failed",
                                             "errno 28", "no space left"))
    return False


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then ``os.replace`` it.

    A reader never sees a half-written file, and an interrupted save leaves the old one intact.
    A full disk raises :class:`CheckpointWriteError` naming ``path``.
    """
    path = Path(path)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if _out_of_space(error):
            raise CheckpointWriteError(path) from error
        raise
    return path


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Read a checkpoint with ``torch.load(weights_only=True)``; None when there is none.

    Checkpoints hold tensors and plain data only. A file that cannot be read is moved aside to
    ``<name>.unreadable`` and reported with a warning naming both paths, so the work it held is
    redone knowingly, never silently.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is handled the same way
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        warnings.warn(f"checkpoint {path} could not be read ({type(error).__name__}: "
                      f"{error}); moved it to {aside} and the work it held is redone",
                      stacklevel=2)
        return None


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


def plain_data(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays turned into Python data, so that
    ``torch.load(weights_only=True)`` reads it back."""
    if isinstance(value, dict):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain_data(item) for item in value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a (nested) tuple, list or dict batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple | list):
        return type(batch)(move_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
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
    distributed: bool | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Train ``model`` for ``epochs`` epochs and return one record per epoch.

    Each batch is moved to ``device`` and passed as ``loss_fn(model, batch)``; the record holds
    ``epoch`` (1-based), ``loss`` (mean batch loss), ``seconds`` and whatever ``on_epoch_end(epoch,
    model)`` returns. ``scheduler.step()`` runs once per epoch. With ``checkpoint``, the model,
    optimizer, scheduler, history and all random-generator states are saved atomically after
    every epoch, and an existing checkpoint is resumed, so an interrupted run ends with the same
    weights as an uninterrupted one (tensors and plain data only, read with
    :func:`load_checkpoint`; an unreadable one is moved aside and training starts again).

    Under torchrun (``distributed=None`` reads the environment) the loss is computed through
    DDP over ``model`` (:func:`irbook.distributed.data_parallel`), whatever parts of ``model``
    ``loss_fn`` calls; the logged loss is the processes' mean and rank 0 alone writes. Each
    process should load its share of the batch. ``precision="bf16"``: bfloat16 autocast.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0; got {epochs}")
    device = torch.device(device)
    seed_everything(seed)
    model.to(device)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    history = _resume(checkpoint, model, optimizer, scheduler, loader)
    compute = _loss_of_batch(model, loss_fn, precision, device, distributed)
    progress = progress and dist.is_main()
    epoch_bar = progress_bar(range(len(history) + 1, epochs + 1), enabled=progress, desc=desc,
                             initial=len(history), total=epochs, unit="epoch")
    for epoch in epoch_bar:
        started = time.perf_counter()
        batch_bar = progress_bar(loader, enabled=progress, desc=f"{desc} {epoch}/{epochs}",
                                 leave=False)
        loss = dist.all_mean(_train_epoch(model, batch_bar, compute, optimizer, device, epoch))
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - started,
                  **((on_epoch_end(epoch, model) or {}) if on_epoch_end is not None else {})}
        history.append(plain_data(record))
        epoch_bar.set_postfix(loss=f"{loss:.4f}")
        if checkpoint is not None and dist.is_main():
            _save_epoch(checkpoint, model, optimizer, scheduler, epoch, history, loader)
    return history


def _save_epoch(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any | None, epoch: int, history: list, loader: Iterable) -> None:
    """fit()'s checkpoint after ``epoch``: weights, optimiser, scheduler, history, RNG states."""
    atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "epoch": epoch, "history": history, "rng": _rng_state(loader)}, checkpoint)


PRECISIONS = ("fp32", "bf16")


def _with_precision(loss_fn: Callable[[nn.Module, Any], Tensor], precision: str,
                    device: torch.device) -> Callable[[nn.Module, Any], Tensor]:
    """``loss_fn`` computed under bf16 autocast on ``device`` (itself for ``"fp32"``)."""
    if precision == "fp32":
        return loss_fn

    def autocast_loss(module: nn.Module, batch: Any) -> Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return loss_fn(module, batch).float()

    return autocast_loss


def _loss_of_batch(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor],
                   precision: str, device: torch.device,
                   distributed: bool | None) -> Callable[[Any], Tensor]:
    """``batch -> loss_fn(model, batch)`` at ``precision``, through DDP when distributed."""
    step_loss = _with_precision(loss_fn, precision, device)

    def compute(batch: Any) -> Tensor:
        return step_loss(model, batch)

    if dist.world().distributed if distributed is None else distributed:
        return dist.data_parallel(model, compute, device)
    return compute


def _resume(checkpoint: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any | None, loader: Iterable) -> list[dict[str, Any]]:
    """Restore a readable checkpoint into the objects; return its history ([] when none)."""
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is None:
        return []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], loader)
    return list(state["history"])


def _train_epoch(model: nn.Module, batches: Any, compute: Callable[[Any], Tensor],
                 optimizer: torch.optim.Optimizer, device: torch.device, epoch: int) -> float:
    """One pass over ``batches`` (a progress bar over the loader); the mean batch loss.
    ``compute(batch)`` is the loss of ``model`` (through DDP under torchrun)."""
    model.train()
    total, count = 0.0, 0
    for batch in batches:
        loss = compute(move_to_device(batch, device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, batch "
                                     f"{count + 1}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item(), count + 1
        batches.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)
