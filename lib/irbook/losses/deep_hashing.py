"""Deep hashing objectives of chapter 2 (Section 2.3.2.4, codes of Eq. 2.12).

``h`` (B, K) are relaxed codes (tanh outputs of :class:`irbook.models.hash_head.HashHead`),
``b = sign(h)`` their binary codes. The thesis names the goals and the constraints but gives no
loss formula, so each term below writes one constraint as a batch penalty:

- quantization: ``b`` close to ``h``;
- bit balance ``b·1 = 0``: every bit +1 for half of the images, i.e. each bit's batch mean 0
  (the thesis writes ``1`` K-dimensional, yet describes each bit being ±1 with probability ½,
  which is the per-bit mean over images, as in DCMH's ``‖F·1‖²``);
- bit uncorrelation ``b bᵀ = I`` (K×K): the bits' batch correlation matrix is the identity;
- similarity: the Siamese loss of Eq. 2.16 with the Hamming distance in place of ``D``, the
  hashing use the thesis cites (DSH, Liu et al. 2016), on a relaxed Hamming distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from irbook.losses.finetune import siamese_loss_from_distances, squared_distance
from irbook.losses.hashing import quantization_loss, similarity_matrix

__all__ = ["DeepHashingWeights", "bit_balance_loss", "decorrelation_loss", "deep_hashing_loss",
           "hashing_pair_loss", "hashing_quantization_loss", "relaxed_hamming_distance"]


def _check_codes(h: Tensor) -> None:
    if h.dim() != 2 or h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"h must be (B, K) with B, K >= 1; got shape {tuple(h.shape)}")


def hashing_quantization_loss(h: Tensor) -> Tensor:
    """``||b - h||²`` averaged over the batch, ``b = sign(h)`` detached: the sum of
    :func:`irbook.losses.hashing.quantization_loss` (Eq. 3.1, the same term) divided by B."""
    _check_codes(h)
    return quantization_loss(h) / h.shape[0]


def bit_balance_loss(h: Tensor) -> Tensor:
    """Bit balance ``b·1 = 0`` relaxed: ``||mean_over_batch(h)||²``, 0 when every bit averages
    to 0 over the batch."""
    _check_codes(h)
    return h.mean(dim=0).pow(2).sum()


def decorrelation_loss(h: Tensor) -> Tensor:
    """Bit uncorrelation ``b bᵀ = I`` relaxed: ``||(1/B) hᵀh - I||²_F`` over the K bits, 0 when
    the bit columns are orthogonal with mean square 1."""
    _check_codes(h)
    gram = h.T @ h / h.shape[0]
    eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    return (gram - eye).pow(2).sum()


def relaxed_hamming_distance(h_i: Tensor, h_j: Tensor) -> Tensor:
    """``¼ ||h_i - h_j||²`` per row pair (B,): exactly the Hamming distance on ±1 codes and a
    differentiable stand-in on relaxed ones."""
    return squared_distance(h_i, h_j) / 4.0


def _pair_similarity(labels: Tensor, batch: int) -> Tensor:
    """(B, B) 0/1: same class for (B,) labels, a shared label for (B, c) multi-hot ones."""
    if labels.dim() == 1 and labels.shape[0] == batch:
        return (labels[:, None] == labels[None, :]).float()
    if labels.dim() == 2 and labels.shape[0] == batch:
        return similarity_matrix(labels, labels)
    raise ValueError(f"labels must be (B,) class indices or (B, c) multi-hot with B = {batch}; "
                     f"got shape {tuple(labels.shape)}")


def hashing_pair_loss(h: Tensor, labels: Tensor, margin: float | None = None) -> Tensor:
    """Eq. 2.16 for hashing: the Siamese loss over all pairs ``i < j`` of the batch, with
    :func:`relaxed_hamming_distance` as ``D`` and ``S = 1`` for pairs of the same class (or
    sharing a label when ``labels`` is multi-hot).

    ``margin`` is in bits; by default K/2, which is DSH's ``m = 2K`` on the squared distance
    of ±1 codes (4 × Hamming). Needs B >= 2.
    """
    _check_codes(h)
    if h.shape[0] < 2:
        raise ValueError(f"h must hold at least 2 rows to form pairs; got {h.shape[0]}")
    similar = _pair_similarity(labels, h.shape[0])
    rows, cols = torch.triu_indices(h.shape[0], h.shape[0], offset=1, device=h.device)
    margin = h.shape[1] / 2.0 if margin is None else margin
    distances = relaxed_hamming_distance(h[rows], h[cols])
    return siamese_loss_from_distances(distances, similar[rows, cols], margin)


@dataclass(frozen=True)
class DeepHashingWeights:
    """Weights of the code-quality terms; the thesis gives none (DCMH uses 1 for its
    quantization and balance terms), so all default to 1 and the similarity term has 1."""

    quantization: float = 1.0
    balance: float = 1.0
    decorrelation: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name} must be a finite number >= 0; got {value!r}")


def deep_hashing_loss(h: Tensor, similarity_loss: Tensor,
                      weights: DeepHashingWeights | None = None) -> dict[str, Tensor]:
    """``similarity_loss + w_q · quantization + w_b · balance + w_d · decorrelation`` on the
    relaxed codes ``h``; ``similarity_loss`` is any scalar (e.g. :func:`hashing_pair_loss`).
    Returns every term and ``"total"``."""
    weights = DeepHashingWeights() if weights is None else weights
    if similarity_loss.dim() != 0:
        raise ValueError(f"similarity_loss must be a scalar tensor; got shape "
                         f"{tuple(similarity_loss.shape)}")
    terms = {"similarity": similarity_loss, "quantization": hashing_quantization_loss(h),
             "balance": bit_balance_loss(h), "decorrelation": decorrelation_loss(h)}
    terms["total"] = (similarity_loss + weights.quantization * terms["quantization"]
                      + weights.balance * terms["balance"]
                      + weights.decorrelation * terms["decorrelation"])
    return terms
