"""Objectives of chapter 4 (image-text matching) and of its baselines CMPM/CMPC and VSE++.

Inputs are a batch of N paired shared-space features, ``image`` (N, D) and ``text`` (N, D) (row j
of both is training pair j), and their instance labels ``labels`` (N,) int64; several pairs may
share a label (captions of the same image, images of the same PEDES identity). Modality logits
are (N, 2) with index 0 = image and 1 = text. Every function returns a scalar tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CMPM_EPSILON", "VSEPP_MARGIN", "bidirectional_triplet_loss", "cmpc_logits",
           "cmpc_loss", "cmpm_loss", "imbalance_kl_loss", "inter_modal_triplet",
           "intra_modal_triplet", "max_violation_loss", "modality_cross_entropy",
           "negative_entropy_loss", "paired_projection", "projection_similarity", "vsepp_loss"]

CMPM_EPSILON = 1e-8
VSEPP_MARGIN = 0.2


def _check_pairs(image: Tensor, text: Tensor, labels: Tensor | None = None) -> None:
    if image.dim() != 2 or image.shape != text.shape:
        raise ValueError(f"image and text must both be (N, D) with the same shape; got "
                         f"{tuple(image.shape)} and {tuple(text.shape)}")
    if labels is not None and labels.shape != image.shape[:1]:
        raise ValueError(f"labels must be (N,) with N = {image.shape[0]}; got shape "
                         f"{tuple(labels.shape)}")


def _check_logits(image_logits: Tensor, text_logits: Tensor) -> None:
    for name, logits in (("image_logits", image_logits), ("text_logits", text_logits)):
        if logits.dim() != 2 or logits.shape[1] != 2:
            raise ValueError(f"{name} must be (N, 2) modality logits; got shape "
                             f"{tuple(logits.shape)}")


def _check_margin(margin: float) -> None:
    if not math.isfinite(margin) or margin <= 0:
        raise ValueError(f"margin must be a finite number > 0; got {margin}")


def negative_entropy_loss(image_logits: Tensor, text_logits: Tensor) -> Tensor:
    """L_s of Eq. (4.4): ``(1/N) Σ_j Σ_m P log P`` over the image rows plus the text rows.

    ``P`` is the discriminator's softmax; L_s = -H, so minimising it (the generator's side)
    pushes the modality prediction towards the uniform distribution (L_s = -2 log 2 there).
    """
    _check_logits(image_logits, text_logits)
    total = image_logits.new_zeros(())
    for logits in (image_logits, text_logits):
        log_p = F.log_softmax(logits, dim=1)
        total = total + (log_p.exp() * log_p).sum(dim=1).mean()
    return total


def modality_cross_entropy(image_logits: Tensor, text_logits: Tensor) -> Tensor:
    """L_c of Eq. (4.5): cross-entropy of the modality labels (image = 0, text = 1), the mean
    over the image rows plus the mean over the text rows."""
    _check_logits(image_logits, text_logits)
    image_target = torch.zeros(len(image_logits), dtype=torch.long, device=image_logits.device)
    text_target = torch.ones(len(text_logits), dtype=torch.long, device=text_logits.device)
    return F.cross_entropy(image_logits, image_target) + F.cross_entropy(text_logits, text_target)


def projection_similarity(x: Tensor, z: Tensor) -> Tensor:
    """A of Eqs. (4.2)-(4.3): ``x · z̄ᵀ`` (N, M), the length of every row of ``x`` projected on
    every normalised row of ``z`` (only ``z`` is normalised)."""
    return x @ F.normalize(z, dim=1).T


def paired_projection(x: Tensor, z: Tensor) -> Tensor:
    """ẑ of Eq. (4.1) for paired rows: ``⟨x_j, z̄_j⟩ z̄_j`` (N, D), e.g. ẑ^{i→t} = (image, text)."""
    z_bar = F.normalize(z, dim=1)
    return (x * z_bar).sum(dim=1, keepdim=True) * z_bar


def cmpm_loss(image: Tensor, text: Tensor, labels: Tensor, eps: float = CMPM_EPSILON) -> Tensor:
    """L_kl of Eqs. (4.6)-(4.9), following CMPM (the reference protocol).

    ``q = y / row-sum(y)`` with ``y_jk = [label_j = label_k]``; ``p_i2t = softmax_row(x · z̄ᵀ)``
    and ``p_t2i = softmax_row(z · x̄ᵀ)`` (only the projected-on side normalised); each direction
    gives ``mean_j Σ_k p log(ε + p / (q + ε))`` and the two are summed. Eq. (4.8) prints a softmax
    of ``YᵀY`` for the target; the book uses CMPM's row normalisation, the thesis' source [186],
    so that ``q`` is exactly the uniform distribution over the matching items.
    """
    _check_pairs(image, text, labels)
    same = (labels[:, None] == labels[None, :]).to(image.dtype)
    q = same / same.sum(dim=1, keepdim=True)
    total = image.new_zeros(())
    for x, z in ((image, text), (text, image)):
        p = F.softmax(projection_similarity(x, z), dim=1)
        total = total + (p * torch.log(eps + p / (q + eps))).sum(dim=1).mean()
    return total


def cmpc_logits(image: Tensor, text: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Norm-softmax logits ``W̄ᵀ ẑ`` of Eq. (4.10) for ẑ^{i→t} and ẑ^{t→i}; ``weight`` is the raw
    (D, C) classifier matrix, its columns are L2-normalised here."""
    _check_pairs(image, text)
    if weight.dim() != 2 or weight.shape[0] != image.shape[1]:
        raise ValueError(f"weight must be (D, C) with D = {image.shape[1]}; got shape "
                         f"{tuple(weight.shape)}")
    projected = torch.cat([paired_projection(image, text), paired_projection(text, image)])
    # ẑ·(w / |w|) = (ẑ·w) / |w|: dividing the (2N, C) logits is cheaper than normalising W
    logits = (projected @ weight) / weight.norm(dim=0).clamp_min(1e-12)
    return logits[:len(image)], logits[len(image):]


def cmpc_loss(image: Tensor, text: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """L_ce of Eq. (4.10) (CMPC): softmax cross-entropy of the instance labels on the
    norm-softmax logits of ẑ^{i→t} plus that of ẑ^{t→i}, each a mean over the N pairs."""
    _check_pairs(image, text, labels)
    logits_i2t, logits_t2i = cmpc_logits(image, text, weight)
    return F.cross_entropy(logits_i2t, labels) + F.cross_entropy(logits_t2i, labels)


def imbalance_kl_loss(logits_i2t: Tensor, logits_t2i: Tensor, tau: float = 4.0) -> Tensor:
    """L_di of Eq. (4.11): ``τ² [KL(p_i→t ‖ p_t→i) + KL(p_t→i ‖ p_i→t)] / N``,
    ``p = softmax(logits / τ)``, summed over classes and rows.

    The printed formula compares each distribution with itself (and is then zero); its text
    says the loss measures the difference between the re-scaled image-to-text and text-to-image
    probabilities, so the book implements that symmetric KL. Log-probabilities come from
    ``log_softmax``, so no ε is needed; ``τ = 1`` is the plain symmetric KL.
    """
    if logits_i2t.dim() != 2 or logits_i2t.shape != logits_t2i.shape:
        raise ValueError(f"logits_i2t and logits_t2i must both be (N, C); got "
                         f"{tuple(logits_i2t.shape)} and {tuple(logits_t2i.shape)}")
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0; got {tau}")
    log_p = F.log_softmax(logits_i2t / tau, dim=1)
    log_q = F.log_softmax(logits_t2i / tau, dim=1)
    symmetric = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum()
    return tau ** 2 * symmetric / len(logits_i2t)


def _hardest_hinge_sum(sim: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Σ over anchors (rows) of ``max(0, m - S_pos + S_neg)`` with the least similar positive and
    the most similar negative; rows without a positive or a negative add nothing."""
    valid = positive.any(dim=1) & negative.any(dim=1)
    s_pos = sim.masked_fill(~positive, float("inf")).min(dim=1).values
    s_neg = sim.masked_fill(~negative, float("-inf")).max(dim=1).values
    hinge = (margin - s_pos + s_neg).clamp(min=0)
    return torch.where(valid, hinge, torch.zeros_like(hinge)).sum()


def inter_modal_triplet(image: Tensor, text: Tensor, labels: Tensor, margin: float) -> Tensor:
    """L_inter of Eq. (4.12): image anchors against texts and text anchors against images,
    cosine similarity, hardest positive and hardest negative in the batch, divided by N."""
    _check_pairs(image, text, labels)
    _check_margin(margin)
    sim = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T
    same = labels[:, None] == labels[None, :]
    total = (_hardest_hinge_sum(sim, same, ~same, margin)
             + _hardest_hinge_sum(sim.T, same, ~same, margin))
    return total / len(image)


def intra_modal_triplet(image: Tensor, text: Tensor, labels: Tensor, margin: float) -> Tensor:
    """L_intra of Eq. (4.13): image anchors against the other images and text anchors against
    the other texts (the anchor itself is never its own positive), divided by N."""
    _check_pairs(image, text, labels)
    _check_margin(margin)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    total = image.new_zeros(())
    for x in (image, text):
        x_bar = F.normalize(x, dim=1)
        total = total + _hardest_hinge_sum(x_bar @ x_bar.T, same & ~eye, ~same, margin)
    return total / len(image)


def bidirectional_triplet_loss(image: Tensor, text: Tensor, labels: Tensor,
                               margin: float = 0.5) -> Tensor:
    """L_tr = L_inter + L_intra, Eq. (4.14), margin 0.5 in the thesis.

    Positives are the items with the anchor's instance label. When several exist (the captions
    of one image, or the images of one PEDES identity) the least similar one is used, the
    batch-hard rule that the hardest-negative choice of the thesis pairs with (as in chapter 5);
    an anchor with no positive or no negative in the batch contributes 0, and the sums are
    divided by the batch size N as printed.
    """
    return (inter_modal_triplet(image, text, labels, margin)
            + intra_modal_triplet(image, text, labels, margin))


def max_violation_loss(sim: Tensor, margin: float = VSEPP_MARGIN,
                       labels: Tensor | None = None) -> Tensor:
    """VSE++ max-violation hinge on a similarity matrix ``sim`` (B images × B captions, pair j
    on the diagonal): for each pair, the hardest caption negative of its image and the hardest
    image negative of its caption, ``max(0, m + S_neg - S_jj)``, summed over the batch.

    VSE++ masks only the diagonal; when ``labels`` are given, every pair sharing the label is
    excluded from the negatives too (two captions of the same image can share a batch here,
    since one training pair is one caption)."""
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be a square (B, B) matrix; got shape {tuple(sim.shape)}")
    _check_margin(margin)
    diagonal = sim.diagonal()
    if labels is None:
        not_negative = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    else:
        if labels.shape != (len(sim),):
            raise ValueError(f"labels must be ({len(sim)},); got {tuple(labels.shape)}")
        not_negative = labels[:, None] == labels[None, :]
    cost_caption = (margin + sim - diagonal[:, None]).clamp(min=0).masked_fill(not_negative, 0)
    cost_image = (margin + sim - diagonal[None, :]).clamp(min=0).masked_fill(not_negative, 0)
    return cost_caption.max(dim=1).values.sum() + cost_image.max(dim=0).values.sum()


def vsepp_loss(image: Tensor, text: Tensor, margin: float = VSEPP_MARGIN,
               labels: Tensor | None = None) -> Tensor:
    """VSE++ loss of paired embeddings: :func:`max_violation_loss` on their cosine
    similarities (margin 0.2 in VSE++)."""
    _check_pairs(image, text, labels)
    sim = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T
    return max_violation_loss(sim, margin, labels)
