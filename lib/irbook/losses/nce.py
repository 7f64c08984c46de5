"""Normalized cross-entropy over one positive and K hard negatives (the NCE part of NCE_EWC).

The chapter 6 baseline follows Parshotam et al. ("continual-object-instances"): the anchor's
inner products with one positive and K = 9 hard negatives are treated as K + 1 class scores,
and the positive is the class to predict. The full baseline adds :class:`~irbook.losses.EWC`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["nce_batch_loss", "nce_loss"]


def nce_loss(anchor: Tensor, positive: Tensor, negatives: Tensor,
             temperature: float = 1.0) -> Tensor:
    """``mean_b -log( exp(a·p / τ) / (exp(a·p / τ) + sum_k exp(a·n_k / τ)) )``.

    ``anchor`` and ``positive`` are (B, D), ``negatives`` (B, K, D); scores are plain inner
    products (the embeddings are L2-normalised upstream), τ = ``temperature`` (1 in the
    reference). Choice: the reference shuffles the K + 1 scores before its cross-entropy,
    which does not change the value; here the positive simply sits at index 0. The author's
    repository also holds an unused variant (log2, positive left out of the denominator);
    this is the one the thesis's protocol names.
    """
    if anchor.dim() != 2 or positive.shape != anchor.shape:
        raise ValueError(f"anchor and positive must both be (B, D); got shapes "
                         f"{tuple(anchor.shape)} and {tuple(positive.shape)}")
    if negatives.dim() != 3 or negatives.shape[0] != anchor.shape[0] \
            or negatives.shape[2] != anchor.shape[1] or negatives.shape[1] == 0:
        raise ValueError(f"negatives must be (B, K, D) with B = {anchor.shape[0]}, K >= 1, "
                         f"D = {anchor.shape[1]}; got shape {tuple(negatives.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    pos_score = (anchor * positive).sum(dim=1, keepdim=True)
    neg_scores = torch.einsum("bd,bkd->bk", anchor, negatives)
    logits = torch.cat([pos_score, neg_scores], dim=1) / temperature
    target = torch.zeros(len(anchor), dtype=torch.long, device=anchor.device)
    return F.cross_entropy(logits, target)


def nce_batch_loss(embeddings: Tensor, labels: Tensor, num_negatives: int = 9,
                   temperature: float = 1.0) -> Tensor:
    """:func:`nce_loss` with in-batch mining: per anchor, its least similar positive and its
    ``num_negatives`` most similar negatives (9 in the thesis).

    Mining follows the thesis author's code (hardest positive = lowest inner product,
    negatives sorted by decreasing inner product). Anchors without a positive are left out;
    an anchor with fewer than ``num_negatives`` negatives is an error (use a P×K batch with
    enough classes).
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"embeddings must be (B, D) and labels (B,); got shapes "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1; got {num_negatives}")
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    anchors = positive.any(dim=1).nonzero().flatten()
    if len(anchors) == 0:
        raise ValueError("no anchor has a positive in this batch; sample at least two images "
                         "per class")
    too_few = negative[anchors].sum(dim=1) < num_negatives
    if too_few.any():
        raise ValueError(f"num_negatives = {num_negatives} but some anchors have only "
                         f"{int(negative[anchors].sum(dim=1).min())} negatives in the batch")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    similarity = embeddings @ embeddings.T
    with torch.no_grad():
        scores = similarity.detach()
        hardest_pos = scores.masked_fill(~positive, float("inf"))[anchors].argmin(dim=1)
        hard_negs = scores.masked_fill(~negative, float("-inf"))[anchors].topk(
            num_negatives, dim=1).indices
    # The scores of nce_loss, read from the similarity matrix: every row picks distinct
    # columns, so the backward pass has no colliding index updates and is deterministic on
    # multi-threaded CPUs (gathering embeddings[hard_negs] would scatter-add duplicates).
    chosen = torch.cat([hardest_pos[:, None], hard_negs], dim=1)
    logits = similarity[anchors].gather(1, chosen) / temperature
    target = torch.zeros(len(anchors), dtype=torch.long, device=embeddings.device)
    return F.cross_entropy(logits, target)
