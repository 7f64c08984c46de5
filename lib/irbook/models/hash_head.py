"""Deep hashing head of chapter 2 (thesis Eq. 2.12): ``b = h(f(x; θ))`` with ``h`` a linear
layer whose sign gives the K-bit code; training uses the tanh relaxation, whose values lie in
(-1, 1) and whose sign is the code."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irbook.models.hashing import sign_codes

__all__ = ["CODE_FORMATS", "HashHead", "hash_relaxation"]

CODE_FORMATS = ("bits", "sign")
"""``bits``: uint8 {0, 1} (1 where the relaxation is >= 0); ``sign``: int8 {-1, +1}."""


def hash_relaxation(features: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Relaxed Eq. 2.12: ``tanh(features Wᵀ + bias)``; ``features`` (B, d), ``weight`` (K, d),
    ``bias`` (K,) or None; (B, K) in (-1, 1)."""
    if features.dim() != 2 or weight.dim() != 2 or features.shape[1] != weight.shape[1]:
        raise ValueError(f"features (B, d) and weight (K, d) must be 2-D with the same d; got "
                         f"{tuple(features.shape)} and {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be (K,) with K = {weight.shape[0]}; got shape "
                         f"{tuple(bias.shape)}")
    return torch.tanh(F.linear(features, weight, bias))


class HashHead(nn.Module):
    """A linear layer ``in_dim -> n_bits`` with the tanh relaxation (:func:`hash_relaxation`);
    :meth:`codes` binarises with the sign (sign(0) = +1)."""

    def __init__(self, in_dim: int, n_bits: int):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("n_bits", n_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.linear = nn.Linear(in_dim, n_bits)

    @property
    def n_bits(self) -> int:
        return self.linear.out_features

    def forward(self, features: Tensor) -> Tensor:
        """Relaxed codes (B, n_bits) in (-1, 1)."""
        return hash_relaxation(features, self.linear.weight, self.linear.bias)

    @torch.no_grad()
    def codes(self, features: Tensor, code_format: str = "bits") -> np.ndarray:
        """Binary codes (B, n_bits) of ``features``: ``sign`` of the relaxation
        (:func:`irbook.models.hashing.sign_codes`) as int8 ±1, or as uint8 {0, 1} bits."""
        if code_format not in CODE_FORMATS:
            raise ValueError(f"code_format must be one of {CODE_FORMATS}; got {code_format!r}")
        signs = sign_codes(self(features))
        return signs if code_format == "sign" else (signs > 0).astype(np.uint8)
