"""Training on several processes with PyTorch's own engines: torchrun and DistributedDataParallel.

A training script of the book runs unchanged as one process or under

    torchrun --nproc_per_node N -m irbook.cli run ch05 --profile full

``torchrun`` starts N processes and tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``
(plus ``MASTER_ADDR``/``MASTER_PORT``) through the environment; :func:`setup` reads them and
joins the process group (NCCL on CUDA, gloo on CPU). Every training loop
computes its loss through :func:`data_parallel` (``DistributedDataParallel`` over the model),
which averages the gradients of every step over the processes; each process keeps its own
share of every batch (:func:`share`, or
:class:`irbook.data.samplers.DistributedClassBalancedBatchSampler` for P x K batches), and only
rank 0 writes checkpoints, metrics and pages (:func:`is_main`). Without torchrun every
function here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["World", "all_mean", "barrier", "call", "data_parallel", "finish", "gather", "is_main",
           "local_device", "main_first", "setup", "share", "world"]

T = TypeVar("T")
S = TypeVar("S", list, torch.Tensor)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer; got {raw!r}") from None
    if value < 0:
        raise ValueError(f"environment variable {name} must be >= 0; got {value}")
    return value


def launched_world() -> World:
    """What torchrun put in the environment (one process when it did not)."""
    world_size = max(_env_int("WORLD_SIZE", 1), 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if rank >= world_size:
        raise ValueError(f"RANK must be below WORLD_SIZE ({world_size}); got {rank}")
    return World(rank, world_size, local_rank)


def world() -> World:
    """The process group joined by :func:`setup`, or the environment's when none was joined."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                     _env_int("LOCAL_RANK", 0), torch.distributed.get_backend())
    return launched_world()


def setup(device: str | torch.device = "cpu") -> World:
    """Join the process group torchrun prepared (idempotent); return this process's World.

    ``device`` decides the backend: NCCL for CUDA (each process on GPU ``LOCAL_RANK``), gloo
    otherwise. One process (no torchrun) joins nothing.
    """
    launched = launched_world()
    if not launched.distributed or torch.distributed.is_initialized():
        return world()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(launched.local_rank)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def local_device(device: str | torch.device) -> torch.device:
    """``device`` for this process: CUDA device ``LOCAL_RANK`` under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_world().distributed:
        return torch.device("cuda", launched_world().local_rank)
    return device


def is_main() -> bool:
    """Whether this process writes results (rank 0, or the only process)."""
    return world().rank == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for in one process)."""
    if world().distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()


def main_first(make: Callable[[], T]) -> T:
    """``make()`` on rank 0 first, then on the others (e.g. write a cache once, then read it)."""
    if is_main():
        value = make()
        barrier()
        return value
    barrier()
    return make()


def finish() -> None:
    """Wait for every process, then leave the process group (at the end of a script)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def gather(value: Any) -> list[Any]:
    """``value`` of every process, in rank order (``[value]`` in one process)."""
    if not (world().distributed and torch.distributed.is_initialized()):
        return [value]
    values: list[Any] = [None] * world().world_size
    torch.distributed.all_gather_object(values, value)
    return values


def all_mean(value: float) -> float:
    """The mean of ``value`` over the processes (``value`` itself in one process)."""
    if not (world().distributed and torch.distributed.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        tensor = tensor.cuda()
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / world().world_size


class _Computation(nn.Module):
    """``compute(*inputs)`` as the forward of a module that holds ``model``: what
    DistributedDataParallel wraps, so that any loss written against ``model`` (its methods,
    closures, several heads) has its gradients averaged over the processes."""

    def __init__(self, model: nn.Module, compute: Callable[..., Any]) -> None:
        super().__init__()
        self.model, self.compute = model, compute

    def forward(self, *inputs: Any) -> Any:
        return self.compute(*inputs)


def data_parallel(model: nn.Module, compute: Callable[..., T],
                  device: str | torch.device = "cpu") -> Callable[..., T]:
    """``compute`` run through DistributedDataParallel over ``model`` when several processes
    train, else ``compute`` itself.

    ``compute`` may use ``model`` any way it likes (a method other than ``forward``, a closure);
    the parameters DDP synchronises are ``model``'s. After ``loss.backward()`` every process
    holds the mean of the processes' gradients, so one optimiser step keeps them equal.
    ``find_unused_parameters`` is on: a method may leave a head out of a step (e.g. a zero
    weight, a frozen discriminator), which DDP would otherwise wait for forever.
    """
    if not world().distributed:
        return compute
    if not torch.distributed.is_initialized():
        raise RuntimeError("several processes were launched but the process group is not "
                           "joined; call irbook.distributed.setup(device) first")
    device = torch.device(device)
    ids: Any = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(_Computation(model, compute), device_ids=ids,
                                               find_unused_parameters=True)


def call(compute: Callable[..., T], *inputs: Any) -> T:
    """``compute(*inputs)``: with ``data_parallel(model, call)`` one DDP wrapper runs each of a
    loop's several computations per batch (``step(loss_a, x)``, later ``step(loss_b, y)``),
    each followed by its own backward."""
    return compute(*inputs)


def share(items: S, minimum: int = 1) -> S:
    """This process's share of a batch (a list or a tensor, along its first axis): items
    ``rank, rank + world_size, ...``, so that the processes together hold the batch once.

    A batch with fewer than ``minimum`` items per process (``minimum=2`` for a loss that needs
    a negative in its batch) is kept whole by every process: DDP then averages equal gradients,
    the single-process step. One process keeps everything.
    """
    here = world()
    if not here.distributed or len(items) < minimum * here.world_size:
        return items
    return items[here.rank::here.world_size]
