"""Triplet losses with in-batch hard mining (thesis Eqs. 5.2 and 6.1, and the reference code).

Both functions take a batch of embeddings (B, D) and integer labels (B,); positives share the
anchor's label and exclude the anchor itself, negatives have another label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DISTANCES", "reference_pair_loss", "triplet_hard_loss"]

DISTANCES = ("cosine", "squared_l2")


def _check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (B, D); got shape {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels must be (B,) with B = {embeddings.shape[0]}; got shape "
                         f"{tuple(labels.shape)}")


def _pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean (B, B) masks of positive pairs (same label, not the anchor) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def triplet_hard_loss(embeddings: Tensor, labels: Tensor, margin: float,
                      distance: str = "cosine", normalize: bool = True) -> Tensor:
    """Batch-hard triplet loss: per anchor, its hardest positive against its hardest negative.

    ``distance="cosine"`` is thesis Eq. 5.2: similarities ``S = R Rᵀ`` and the hinge
    ``max(0, margin + S_neg - S_pos)``, with the hardest positive the least similar one and the
    hardest negative the most similar one (chapter 5 uses ``margin = 0.5``).
    ``distance="squared_l2"`` is Eq. 6.1: ``D = ||f_a - f_x||²`` and
    ``max(0, margin + D_pos - D_neg)``. On L2-normalised vectors ``D = 2 - 2S``, so the two
    agree when the squared-L2 margin is twice the cosine one (then the loss is twice as large).

    Choices where the thesis is silent: embeddings are L2-normalised first (``normalize``);
    the mean runs over the anchors that have at least one positive and one negative in the
    batch (every anchor in a P×K batch, which is the 1/N of Eq. 5.2); a batch without any such
    anchor gives 0 (still connected to the graph).
    """
    _check_batch(embeddings, labels)
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    x = F.normalize(embeddings, dim=1) if normalize else embeddings
    positive, negative = _pair_masks(labels)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0
    if distance == "cosine":
        similarity = x @ x.T
        hardest_pos = similarity.masked_fill(~positive, float("inf")).amin(dim=1)
        hardest_neg = similarity.masked_fill(~negative, float("-inf")).amax(dim=1)
        hinge = margin + hardest_neg - hardest_pos
    else:
        squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(dim=-1)
        hardest_pos = squared.masked_fill(~positive, float("-inf")).amax(dim=1)
        hardest_neg = squared.masked_fill(~negative, float("inf")).amin(dim=1)
        hinge = margin + hardest_pos - hardest_neg
    return torch.relu(hinge[valid]).mean()


def reference_pair_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.1) -> Tensor:
    """Hard-mining pair loss of the thesis author's code (REFERENCE_PROTOCOLS, chapter 6).

    With ``S = X Xᵀ`` (no normalisation here: the reference feeds L2-normalised embeddings),
    for each anchor: negatives with ``s > min(s_pos) - margin`` and positives with
    ``s < max(s_neg) + margin`` are kept, and the anchor loss is
    ``mean(1 - s_pos_kept) + mean(s_neg_kept)``. An anchor whose kept-negative set is empty,
    or that has no positive or no negative at all, contributes 0, and the sum is divided by
    the batch size B (all anchors, as in the reference).

    Choice: the anchor is excluded from its positives by index. The reference drops every
    positive with ``s >= 1`` instead, which is meant to remove the anchor but also drops exact
    duplicates and keeps the anchor when rounding makes its self-similarity 0.99999994.
    When a negative is kept, the least similar positive is always kept, so the positive mean
    is never taken over an empty set.
    """
    _check_batch(embeddings, labels)
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    batch = embeddings.shape[0]
    if batch == 0:
        raise ValueError("embeddings must hold at least one row; got an empty batch")
    similarity = embeddings @ embeddings.T
    positive, negative = _pair_masks(labels)
    min_pos = similarity.masked_fill(~positive, float("inf")).amin(dim=1, keepdim=True)
    max_neg = similarity.masked_fill(~negative, float("-inf")).amax(dim=1, keepdim=True)
    kept_neg = negative & (similarity > min_pos - margin)
    kept_pos = positive & (similarity < max_neg + margin)
    valid = kept_neg.any(dim=1) & positive.any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0
    zero = similarity.new_zeros(())
    pos_term = torch.where(kept_pos, 1.0 - similarity, zero).sum(dim=1)
    neg_term = torch.where(kept_neg, similarity, zero).sum(dim=1)
    per_anchor = (pos_term[valid] / kept_pos[valid].sum(dim=1)
                  + neg_term[valid] / kept_neg[valid].sum(dim=1))
    return per_anchor.sum() / batch
