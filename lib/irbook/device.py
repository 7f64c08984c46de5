"""Choosing the compute device and describing the machine for ``results.json``."""

from __future__ import annotations

import platform
import sys
from contextlib import contextmanager

from .params import ParameterError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """``auto`` picks CUDA when torch sees a GPU; asking for ``cuda`` without one is refused with
    :class:`~irbook.params.ParameterError` (a ``ValueError``), before any work."""
    import torch

    if name not in DEVICES:
        raise ParameterError(f"parameter 'device' got {name!r}; allowed: {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            "parameter 'device' is 'cuda' but torch sees no GPU; allowed here: auto, cpu"
        )
    return name


def describe_device(device: str) -> str:
    """A short description such as ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    import torch

    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def environment() -> dict[str, str]:
    """Versions of the software that produced a run."""
    import numpy
    import torch
    import torchvision

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import faiss

        env["faiss"] = getattr(faiss, "__version__", "unknown")
    except ImportError:
        env["faiss"] = "not installed"
    return env


@contextmanager
def cpu_threads(count: int):
    """Run the block with ``count`` intra-op CPU threads, then restore the previous number.

    Small recurrent networks (chapter 4's Bi-LSTM on batches of 32) gain nothing from a second
    thread and lose several-fold when another process holds a core, as OpenMP threads then wait
    for each other; their trainers run single-threaded.
    """
    import torch

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1; got {count!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def single_cpu_thread(device: str = "cpu"):
    """On the CPU, run the block with one thread for torch and for the OpenMP/BLAS libraries
    (:func:`cpu_threads`; small networks gain nothing from a second thread and lose several-fold
    when another process holds a core); on a GPU, change nothing."""
    from threadpoolctl import threadpool_limits

    if str(device) != "cpu":
        yield
        return
    with cpu_threads(1), threadpool_limits(1):
        yield
