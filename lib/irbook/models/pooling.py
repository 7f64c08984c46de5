"""Thin ``nn.Module`` wrappers around :mod:`irbook.models.functional` (thesis Figure 2.6)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irbook.constants import POOLINGS
from irbook.models import functional as F

__all__ = ["CroW", "GeM", "L2N", "MAC", "POOLINGS", "RMAC", "SPoC", "make_pooling"]


class MAC(nn.Module):
    """Global max pooling, (B, C, H, W) -> (B, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.mac(x)


class SPoC(nn.Module):
    """Sum pooling with an optional Gaussian centre prior, (B, C, H, W) -> (B, C)."""

    def __init__(self, center_prior: bool = True):
        super().__init__()
        self.center_prior = center_prior

    def forward(self, x: Tensor) -> Tensor:
        return F.spoc(x, center_prior=self.center_prior)

    def extra_repr(self) -> str:
        return f"center_prior={self.center_prior}"


class GeM(nn.Module):
    """Generalized-mean pooling with a learnable exponent ``p`` (initialised to 3)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.gem(x, p=self.p, eps=self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}"


class RMAC(nn.Module):
    """Regional MAC over ``levels`` scales of square regions, (B, C, H, W) -> (B, C)."""

    def __init__(self, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6):
        super().__init__()
        self.levels, self.overlap, self.eps = levels, overlap, eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rmac(x, levels=self.levels, overlap=self.overlap, eps=self.eps)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, overlap={self.overlap}"


class CroW(nn.Module):
    """Cross-dimensional weighted sum pooling, (B, C, H, W) -> (B, C)."""

    def __init__(self, a: float = 2.0, b: float = 2.0, eps: float = 1e-6):
        super().__init__()
        self.a, self.b, self.eps = a, b, eps

    def forward(self, x: Tensor) -> Tensor:
        return F.crow(x, a=self.a, b=self.b, eps=self.eps)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}"


class L2N(nn.Module):
    """L2 normalisation along dimension 1."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.l2n(x, eps=self.eps)


_CLASSES = {"mac": MAC, "spoc": SPoC, "gem": GeM, "rmac": RMAC, "crow": CroW}


def make_pooling(name: str, **kwargs) -> nn.Module:
    """The pooling module called ``name`` (one of :data:`POOLINGS`); ``kwargs`` go to it."""
    if name not in _CLASSES:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {name!r}")
    return _CLASSES[name](**kwargs)
