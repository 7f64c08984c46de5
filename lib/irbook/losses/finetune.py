"""Supervised fine-tuning losses of chapter 2 (thesis Eqs. 2.13-2.19) and cirtorch's mining.

Pair losses take two row-aligned batches ``x_i``, ``x_j`` (B, d) and a pair label ``similar``
(B,) in {0, 1}, 1 for a matching pair. (The thesis sentence under Eq. 2.15 names the labels the
other way round, but every formula of the section, 2.15 to 2.19, treats ``S = 1`` as the similar
pair, and so does this module.) Every loss returns the mean over its pairs, triplets or tuples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from irbook.losses.classification import new_class_cross_entropy
from irbook.losses.triplet import triplet_hard_loss

__all__ = ["REDUCTIONS", "classification_loss", "contrastive_loss", "double_margin_siamese_loss",
           "double_margin_siamese_from_distances", "joint_loss", "mine_hard_negatives",
           "siamese_loss", "siamese_loss_from_distances", "squared_distance",
           "transformation_regression_loss", "transformation_similarity", "triplet_loss"]

REDUCTIONS = ("mean", "sum")


# --- validation ------------------------------------------------------------------------------

def _check_nonnegative(**values: float) -> None:
    """Each value must be a real number, finite (not NaN or inf) and >= 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


def _check_rows(**batches: Tensor) -> None:
    """All batches must be 2-D (B, d) with the same shape."""
    shapes = {name: tuple(x.shape) for name, x in batches.items()}
    first = next(iter(shapes.values()))
    if any(len(s) != 2 for s in shapes.values()) or any(s != first for s in shapes.values()):
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{', '.join(shapes)} must be 2-D (B, d) of the same shape; "
                         f"got {described}")


def _check_similar(similar: Tensor, batch: int) -> Tensor:
    """``similar`` must be (B,) with values in {0, 1}; returned as float."""
    if tuple(similar.shape) != (batch,):
        raise ValueError(f"similar must be (B,) with B = {batch}; got shape "
                         f"{tuple(similar.shape)}")
    s = similar.to(torch.float64)
    if not ((s == 0) | (s == 1)).all():
        raise ValueError(f"similar must hold only 0 (dissimilar) or 1 (similar); got values "
                         f"{torch.unique(s)[:6].tolist()}")
    return s


# --- Eq. 2.13 --------------------------------------------------------------------------------

def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 2.13: mean cross-entropy of the class ``logits`` (B, c) against ``labels`` (B,).

    The thesis's ``p̂`` are the softmax probabilities of the logits. This is
    :func:`irbook.losses.classification.new_class_cross_entropy` with ``first_new = 0`` (the
    softmax over every class), reused for its input checks.
    """
    return new_class_cross_entropy(logits, labels, first_new=0)


# --- Eqs. 2.14-2.15 --------------------------------------------------------------------------

def squared_distance(x_i: Tensor, x_j: Tensor) -> Tensor:
    """Eq. 2.14: ``D_ij = ||x_i - x_j||²`` for each row pair; (B,)."""
    _check_rows(x_i=x_i, x_j=x_j)
    return (x_i - x_j).pow(2).sum(dim=1)


def transformation_similarity(x_i: Tensor, x_j: Tensor, weight: Tensor,
                              bias: Tensor | None = None) -> Tensor:
    """``S_W(x_i, x_j)`` of Eq. 2.15: the score of the linear sub-network ``f_W`` on the
    concatenated pair ``[x_i, x_j]`` with ``W`` (2d,) or (2d, 1) and an optional scalar bias;
    (B,)."""
    _check_rows(x_i=x_i, x_j=x_j)
    w = weight.reshape(-1)
    if w.numel() != 2 * x_i.shape[1]:
        raise ValueError(f"weight must hold 2d = {2 * x_i.shape[1]} values ((2d,) or (2d, 1)); "
                         f"got shape {tuple(weight.shape)}")
    score = torch.cat([x_i, x_j], dim=1) @ w
    return score if bias is None else score + bias.reshape(())


def transformation_regression_loss(predicted: Tensor, x_i: Tensor, x_j: Tensor,
                                   similar: Tensor, margin: float) -> Tensor:
    """Eq. 2.15: mean of ``|S_W - S (sim + m) - (1 - S)(sim - m)|`` over the pairs.

    ``predicted`` (B,) is ``S_W``, the similarity that the transformation sub-network ``f_W``
    predicts for each pair (for example :func:`transformation_similarity`); ``sim`` is the
    cosine similarity of ``x_i`` and ``x_j``. The regression pulls ``S_W`` to ``m`` above the
    cosine for similar pairs and ``m`` below it for dissimilar ones.
    """
    _check_nonnegative(margin=margin)
    _check_rows(x_i=x_i, x_j=x_j)
    if tuple(predicted.shape) != (x_i.shape[0],):
        raise ValueError(f"predicted must be (B,) with B = {x_i.shape[0]}; got shape "
                         f"{tuple(predicted.shape)}")
    s = _check_similar(similar, x_i.shape[0]).to(predicted.dtype)
    sim = F.cosine_similarity(x_i, x_j, dim=1)
    target = s * (sim + margin) + (1.0 - s) * (sim - margin)
    return (predicted - target).abs().mean()


# --- Eqs. 2.16 and 2.19 (pairs) --------------------------------------------------------------

def double_margin_siamese_from_distances(distances: Tensor, similar: Tensor, margin_similar: float,
                                         margin_dissimilar: float) -> Tensor:
    """Eq. 2.19 on precomputed distances (B,): mean of
    ``½ S max(0, D - m1) + ½ (1 - S) max(0, m2 - D)``; needs ``0 <= m1 < m2`` (the thesis asks
    ``m1 > 0``; ``m1 = 0`` is allowed here because it gives Eq. 2.16 exactly)."""
    _check_nonnegative(margin_similar=margin_similar, margin_dissimilar=margin_dissimilar)
    if not margin_similar < margin_dissimilar:
        raise ValueError(f"margin_similar (m1) must be smaller than margin_dissimilar (m2); "
                         f"got m1 = {margin_similar}, m2 = {margin_dissimilar}")
    if distances.dim() != 1:
        raise ValueError(f"distances must be (B,); got shape {tuple(distances.shape)}")
    s = _check_similar(similar, distances.shape[0]).to(distances.dtype)
    pull = torch.relu(distances - margin_similar)
    push = torch.relu(margin_dissimilar - distances)
    return (0.5 * s * pull + 0.5 * (1.0 - s) * push).mean()


def siamese_loss_from_distances(distances: Tensor, similar: Tensor, margin: float) -> Tensor:
    """Eq. 2.16 on precomputed distances (B,): mean of ``½ S D + ½ (1 - S) max(0, m - D)``.

    It is Eq. 2.19 with ``m1 = 0`` (distances are >= 0), so it calls
    :func:`double_margin_siamese_from_distances`; a positive margin is required.
    """
    _check_nonnegative(margin=margin)
    if margin == 0:
        raise ValueError("margin must be > 0; got 0")
    return double_margin_siamese_from_distances(distances, similar, 0.0, margin)


def siamese_loss(x_i: Tensor, x_j: Tensor, similar: Tensor, margin: float) -> Tensor:
    """Eq. 2.16, the Siamese loss, with ``D`` the squared distance of Eq. 2.14 (mean over the
    pairs). For cirtorch's variant on (non-squared) distances see :func:`contrastive_loss`."""
    return siamese_loss_from_distances(squared_distance(x_i, x_j), similar, margin)


def double_margin_siamese_loss(x_i: Tensor, x_j: Tensor, similar: Tensor, margin_similar: float,
                               margin_dissimilar: float) -> Tensor:
    """Eq. 2.19, the double-margin Siamese loss, with ``D`` the squared distance of Eq. 2.14:
    similar pairs are pulled only while ``D > m1``, dissimilar ones pushed while ``D < m2``."""
    return double_margin_siamese_from_distances(squared_distance(x_i, x_j), similar,
                                                margin_similar, margin_dissimilar)


def contrastive_loss(query: Tensor, positives: Tensor, negatives: Tensor, margin: float = 0.7,
                     eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """cirtorch's contrastive loss on tuples (query, 1 positive, n negatives).

    ``query`` and ``positives`` are (Q, d), ``negatives`` (Q, n, d). With the L2 distance
    ``d = sqrt(Σ (q - x + eps)²)`` (cirtorch adds ``eps`` before squaring, which keeps the
    square root differentiable at 0), a tuple costs ``½ d_pos²`` plus
    ``Σ_neg ½ max(0, margin - d_neg)²``. ``reduction="mean"`` averages over the Q tuples;
    cirtorch sums over the batch, which is ``reduction="sum"`` (Q times larger).
    It is the form of Eq. 2.16 that cirtorch trains with: unsquared ``D`` and a squared hinge.
    """
    _check_nonnegative(margin=margin, eps=eps)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    _check_rows(query=query, positives=positives)
    if negatives.dim() != 3 or negatives.shape[0] != query.shape[0] \
            or negatives.shape[2] != query.shape[1]:
        raise ValueError(f"negatives must be (Q, n, d) with Q = {query.shape[0]} and d = "
                         f"{query.shape[1]}; got shape {tuple(negatives.shape)}")
    d_pos = (query - positives + eps).pow(2).sum(dim=1).sqrt()
    d_neg = (query[:, None, :] - negatives + eps).pow(2).sum(dim=2).sqrt()
    per_tuple = 0.5 * d_pos.pow(2) + 0.5 * torch.relu(margin - d_neg).pow(2).sum(dim=1)
    return per_tuple.mean() if reduction == "mean" else per_tuple.sum()


# --- Eqs. 2.17-2.18 (triplets) ---------------------------------------------------------------

def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Eq. 2.17 on explicit triplets (B, d) each: mean of ``max(0, m + D(a, p) - D(a, n))``
    with ``D`` the squared distance of Eq. 2.14.

    For triplets mined inside a labelled batch (hardest positive and negative per anchor) use
    :func:`irbook.losses.triplet.triplet_hard_loss` with ``distance="squared_l2"``, which is
    this equation with batch-hard mining.
    """
    _check_nonnegative(margin=margin)
    _check_rows(anchor=anchor, positive=positive, negative=negative)
    d_pos = squared_distance(anchor, positive)
    d_neg = squared_distance(anchor, negative)
    return torch.relu(margin + d_pos - d_neg).mean()


def joint_loss(embeddings: Tensor, logits: Tensor, labels: Tensor, margin: float,
               alpha: float = 1.0, beta: float = 1.0, normalize: bool = False) -> Tensor:
    """Eq. 2.18: ``alpha · L_Triplet + beta · L_CE`` on one labelled batch.

    The triplet term is Eq. 2.17 with batch-hard mining on the squared distance
    (:func:`irbook.losses.triplet.triplet_hard_loss`, ``distance="squared_l2"``; the
    embeddings are used as given unless ``normalize``); the classification term is Eq. 2.13
    on ``logits`` (B, c). The thesis gives no values for alpha and beta.
    """
    _check_nonnegative(alpha=alpha, beta=beta, margin=margin)
    triplet = triplet_hard_loss(embeddings, labels, margin, distance="squared_l2",
                                normalize=normalize)
    return alpha * triplet + beta * classification_loss(logits, labels)


# --- hard-negative mining (cirtorch) ---------------------------------------------------------

def _check_mining(query: Tensor, pool: Tensor, query_groups: Tensor, pool_groups: Tensor,
                  n: int) -> None:
    if query.dim() != 2 or pool.dim() != 2 or query.shape[1] != pool.shape[1]:
        raise ValueError(f"query_descriptors (Q, d) and pool_descriptors (P, d) must be 2-D with "
                         f"the same d; got {tuple(query.shape)} and {tuple(pool.shape)}")
    if tuple(query_groups.shape) != (query.shape[0],):
        raise ValueError(f"query_groups must be (Q,) with Q = {query.shape[0]}; got shape "
                         f"{tuple(query_groups.shape)}")
    if tuple(pool_groups.shape) != (pool.shape[0],):
        raise ValueError(f"pool_groups must be (P,) with P = {pool.shape[0]}; got shape "
                         f"{tuple(pool_groups.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")


def mine_hard_negatives(query_descriptors: Tensor, pool_descriptors: Tensor,
                        query_groups: Tensor, pool_groups: Tensor, n: int = 5) -> Tensor:
    """cirtorch's hard-negative mining: for each query, the ``n`` most similar pool images of
    other groups, at most one per group; returns pool indices (Q, n), most similar first.

    Similarity is the dot product (cirtorch's descriptors are L2-normalised, so this ranks as
    the L2 distance does). Pool images of the query's own group are skipped (they may be
    positives), and each group (cirtorch: 3D model / cluster) gives only its most similar
    image, as cirtorch's greedy walk down the ranking does. Ties keep pool order. ``n`` larger
    than the number of other groups available to some query is refused.
    """
    _check_mining(query_descriptors, pool_descriptors, query_groups, pool_groups, n)
    _, group_ids = torch.unique(torch.cat([query_groups, pool_groups]), return_inverse=True)
    q_ids, p_ids = group_ids[: len(query_groups)], group_ids[len(query_groups):]
    n_groups = int(group_ids.max()) + 1 if len(group_ids) else 0
    present = torch.zeros(n_groups, dtype=torch.bool, device=p_ids.device)
    present[p_ids] = True
    available = present.sum() - present[q_ids].long()
    if len(q_ids) and int(available.min()) < n:
        raise ValueError(f"n must be <= the number of pool groups other than the query's; "
                         f"got n = {n} with only {int(available.min())} available to a query")
    if len(q_ids) == 0:
        return torch.empty(0, n, dtype=torch.long, device=pool_groups.device)
    scores = query_descriptors.detach() @ pool_descriptors.detach().T
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank_groups = p_ids[order]
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    first_rank = torch.full((len(q_ids), n_groups), order.shape[1], device=order.device)
    first_rank = first_rank.scatter_reduce(1, rank_groups, positions, reduce="amin")
    first_rank[torch.arange(len(q_ids)), q_ids] = order.shape[1]
    chosen = torch.topk(first_rank, n, dim=1, largest=False).values
    return order.gather(1, chosen)
