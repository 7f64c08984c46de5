"""Choosing the compute device and describing the machine for ``results.json``."""

from __future__ import annotations

import platform
import sys

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
