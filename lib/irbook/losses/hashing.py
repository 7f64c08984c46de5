"""Cross-modal hashing losses of chapter 3, DCMH and SSAH, as pure functions on tensors.

Notation: ``a`` (A, d) and ``b`` (B, d) are rows of two modalities (real-valued common features
``F``/``G`` or relaxed codes ``H = tanh``); ``Δ = ½ a bᵀ`` (A, B); ``S`` (A, B) the binary
similarity (1 when the two items share a label) and ``W`` (A, B) the multi-level similarity
``w_ij = t_ij / c`` (``t_ij`` shared labels, ``c`` labels in all). Every loss is a *sum* over
the elements its equation sums over; the trainer chooses the normalisation. Probabilities
``P log P`` use ``0 log 0 = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TERM_WEIGHTS", "HashingLossWeights", "dcmh_codes", "dcmh_loss",
           "discriminator_loss", "domain_classification_loss", "domain_uncertainty_loss",
           "generator_adversarial_loss", "label_prediction_loss", "label_regression_loss",
           "half_inner_products", "multilevel_from_delta", "multilevel_loss",
           "multilevel_similarity", "negative_entropy", "pairwise_likelihood_from_delta",
           "pairwise_likelihood_loss", "quantization_loss", "sign_tensor", "similarity_matrix",
           "ssah_terms", "total_hashing_loss"]


# --- supervision -----------------------------------------------------------------------------

def _check_labels(labels_a: Tensor, labels_b: Tensor) -> None:
    if labels_a.dim() != 2 or labels_b.dim() != 2 or labels_a.shape[1] != labels_b.shape[1]:
        raise ValueError(f"labels must be 2-D multi-hot (n, c) with the same c, got shapes "
                         f"{tuple(labels_a.shape)} and {tuple(labels_b.shape)}")


def similarity_matrix(labels_a: Tensor, labels_b: Tensor) -> Tensor:
    """Binary similarity ``S_ij = 1`` when items i and j share at least one label, else 0."""
    _check_labels(labels_a, labels_b)
    return ((labels_a.float() @ labels_b.float().T) > 0).float()


def multilevel_similarity(labels_a: Tensor, labels_b: Tensor) -> Tensor:
    """Multi-level similarity ``W_ij = t_ij / c`` (Section 3.3.2): shared labels over all
    labels."""
    _check_labels(labels_a, labels_b)
    return (labels_a.float() @ labels_b.float().T) / labels_a.shape[1]


def sign_tensor(x: Tensor) -> Tensor:
    """``sign(x)`` in {-1, +1} (sign(0) = +1), detached, same dtype."""
    return torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype)


# --- Eqs. (3.1)-(3.7) ------------------------------------------------------------------------

def quantization_loss(h: Tensor, b: Tensor | None = None) -> Tensor:
    """Eq. (3.1), one modality: ``‖H − B‖²_F`` with ``B = sign(H)`` (detached) by default."""
    target = sign_tensor(h) if b is None else b.detach().to(h.dtype)
    return ((h - target) ** 2).sum()


def negative_entropy(probabilities: Tensor) -> Tensor:
    """``Σ_i Σ_j P_ij log P_ij`` over samples i and domains j: minus the Shannon entropy of
    each row, summed; smallest (−N log M) when every row is uniform."""
    return torch.special.xlogy(probabilities, probabilities).sum()


def domain_uncertainty_loss(p_real: Tensor, p_binary: Tensor) -> Tensor:
    """Eq. (3.2): ``L_d^r + L_d^b = Σ P^r log P^r + Σ P^b log P^b``, the domain predictors'
    probabilities on the real-valued features and on the relaxed codes. The encoders minimise
    it, i.e. maximise the predictors' uncertainty about the modality."""
    return negative_entropy(p_real) + negative_entropy(p_binary)


def domain_classification_loss(logits: Tensor, domains: Tensor) -> Tensor:
    """The domain predictor's own objective: mean cross-entropy of the modality (0 image,
    1 text) from its logits. (Eq. 3.2 minimised over the predictor as well would be met by
    answering 0.5 everywhere; the predictor is trained to recognise the modality instead.)"""
    return F.cross_entropy(logits, domains.long())


def _half_inner(a: Tensor, b: Tensor) -> Tensor:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be 2-D with the same width, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return 0.5 * (a @ b.T)


def _check_target(target: Tensor, a: Tensor, b: Tensor, name: str) -> None:
    if tuple(target.shape) != (a.shape[0], b.shape[0]):
        raise ValueError(f"{name} must have shape ({a.shape[0]}, {b.shape[0]}), got "
                         f"{tuple(target.shape)}")


def half_inner_products(a: Tensor, b: Tensor) -> Tensor:
    """``Δ = ½ a bᵀ`` (A, B), the argument of Eqs. (3.3)-(3.5) and of DCMH's ``θ``."""
    return _half_inner(a, b)


def pairwise_likelihood_from_delta(delta: Tensor, s: Tensor) -> Tensor:
    """:func:`pairwise_likelihood_loss` from precomputed ``Δ`` (A, B)."""
    if s.shape != delta.shape:
        raise ValueError(f"s must have the shape of delta {tuple(delta.shape)}, got "
                         f"{tuple(s.shape)}")
    return (F.softplus(delta) - s * delta).sum()


def pairwise_likelihood_loss(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
    """Eq. (3.5) / DCMH, one part: the negative log-likelihood of Eq. (3.4),
    ``−Σ_ij (S_ij Δ_ij − log(1 + e^Δ_ij))`` with ``Δ = ½ a bᵀ``; ``log(1 + e^Δ)`` is computed
    as a stable softplus."""
    delta = _half_inner(a, b)
    _check_target(s, a, b, "s")
    return pairwise_likelihood_from_delta(delta, s)


def multilevel_from_delta(delta: Tensor, w: Tensor) -> Tensor:
    """:func:`multilevel_loss` from precomputed ``Δ`` (A, B)."""
    if w.shape != delta.shape:
        raise ValueError(f"w must have the shape of delta {tuple(delta.shape)}, got "
                         f"{tuple(w.shape)}")
    return ((torch.sigmoid(2.0 * delta) - w) ** 2).sum()


def multilevel_loss(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """Eq. (3.3), one part: ``Σ_ij (σ(2Δ_ij) − w_ij)²`` with ``Δ = ½ a bᵀ`` (so
    ``σ(2Δ) = σ(a bᵀ)``) and ``w_ij = t_ij / c``."""
    delta = _half_inner(a, b)
    _check_target(w, a, b, "w")
    return multilevel_from_delta(delta, w)


def label_prediction_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. (3.6), one modality: ``−Σ_i (l_i log p_i + (1 − l_i) log(1 − p_i))`` summed over
    samples and labels, with ``p = sigmoid(logits)`` (computed from the logits, stably)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")


TERM_WEIGHTS = {"domain": "alpha", "pairs": "beta", "label": "gamma", "multilevel": "eta",
                "quantization": "epsilon"}
"""Term of Eq. (3.7) -> its weight."""


@dataclass(frozen=True)
class HashingLossWeights:
    """Weights of Eq. (3.7); the thesis uses α = 100, β = γ = ε = 1, η = 0.1."""

    alpha: float = 100.0
    beta: float = 1.0
    gamma: float = 1.0
    eta: float = 0.1
    epsilon: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name} must be a finite number >= 0, got {value!r}")


def total_hashing_loss(terms: Mapping[str, Tensor], weights: HashingLossWeights) -> Tensor:
    """Eq. (3.7): ``α L_d + β L_pairs + γ L_l + η L_m + ε L_q`` over the terms present in
    ``terms`` (keys of :data:`TERM_WEIGHTS`; a missing term counts 0, so the ablation baselines
    of Table 3.3 pass fewer terms)."""
    unknown = set(terms) - set(TERM_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown terms {sorted(unknown)}; allowed: {sorted(TERM_WEIGHTS)}")
    if not terms:
        raise ValueError("terms must hold at least one loss term")
    return sum(getattr(weights, TERM_WEIGHTS[k]) * v for k, v in terms.items())


# --- DCMH (Jiang & Li, CVPR 2017) ------------------------------------------------------------

def dcmh_loss(f: Tensor, g: Tensor, s: Tensor, b: Tensor, f_rest_sum: Tensor | None = None,
              gamma: float = 1.0, eta: float = 1.0) -> dict[str, Tensor]:
    """DCMH's objective for a batch ``f`` (n, K) of one modality against all outputs ``g``
    (N, K) of the other: ``−Σ(S θ − log(1 + e^θ)) + γ‖B − F‖² + η‖F·1‖²`` with ``θ = ½ f gᵀ``,
    ``B`` the batch's rows of ``sign(F + G)`` and ``F·1`` the column sums of this modality's
    outputs over the whole training set: the batch's current rows plus ``f_rest_sum``, the sum
    of the other (stored) rows. Returns the terms and ``"total"``."""
    pairs = pairwise_likelihood_loss(f, g, s)
    quantization = ((b.detach().to(f.dtype) - f) ** 2).sum()
    column_sum = f.sum(dim=0) + (0.0 if f_rest_sum is None else f_rest_sum.detach())
    balance = (column_sum ** 2).sum()
    return {"pairs": pairs, "quantization": quantization, "balance": balance,
            "total": pairs + gamma * quantization + eta * balance}


def dcmh_codes(f: Tensor, g: Tensor) -> Tensor:
    """DCMH's unified training codes ``B = sign(F + G)`` (sign(0) = +1)."""
    return sign_tensor(f + g)


# --- SSAH (Li et al., CVPR 2018) -------------------------------------------------------------

def label_regression_loss(probabilities: Tensor, labels: Tensor) -> Tensor:
    """SSAH's label term ``‖L̂ − L‖²_F`` (squared error of the sigmoid label predictions)."""
    return ((probabilities - labels.to(probabilities.dtype)) ** 2).sum()


def ssah_terms(features: Tensor, codes: Tensor, label_probabilities: Tensor, labels: Tensor,
               ref_features: Tensor, ref_codes: Tensor, s: Tensor) -> dict[str, Tensor]:
    """SSAH's terms for one network against the label network's stored outputs
    (``ref_*``, all training items): ``J1`` pairwise likelihood of the semantic features
    (``Δ = ½ F^l F^*ᵀ``), ``J2`` the same for the codes, ``J3`` quantization ``‖H − sign(H)‖²``,
    ``J4`` label regression. For the label network itself ``ref_*`` are its own outputs."""
    return {"pairs_feature": pairwise_likelihood_loss(features, ref_features, s),
            "pairs_code": pairwise_likelihood_loss(codes, ref_codes, s),
            "quantization": quantization_loss(codes),
            "label": label_regression_loss(label_probabilities, labels)}


def discriminator_loss(logits_label: Tensor, logits_modality: Tensor) -> Tensor:
    """SSAH's discriminator objective: tell label-network features (target 1) from one
    modality's features (target 0); summed sigmoid cross-entropy on the logits (the authors'
    code; the paper writes a squared error on the outputs)."""
    ones, zeros = torch.ones_like(logits_label), torch.zeros_like(logits_modality)
    return (F.binary_cross_entropy_with_logits(logits_label, ones, reduction="sum")
            + F.binary_cross_entropy_with_logits(logits_modality, zeros, reduction="sum"))


def generator_adversarial_loss(logits_modality: Tensor) -> Tensor:
    """SSAH's adversarial term of a modality network: make the discriminator take its features
    for label-network features (target 1); summed sigmoid cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits_modality, torch.ones_like(logits_modality),
                                              reduction="sum")
