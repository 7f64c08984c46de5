"""Distillation objectives: LwF logits (Eq. 5.3), feature distances (L2/L1 baselines) and
correlation (Gram-matrix) distillation (Eqs. 6.4, 6.5, 6.10 and Table 6.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KERNELS",
    "correlation_distillation",
    "feature_distillation",
    "gram_matrix",
    "lwf_distillation",
    "multi_model_correlation",
]

KERNELS = ("linear", "rbf")


def _check_pair(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.dim() != 2 or teacher.dim() != 2:
        raise ValueError(f"{what} must be (B, D) tensors; got shapes {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}")
    if student.shape[0] != teacher.shape[0] or student.shape[0] == 0:
        raise ValueError(f"student and teacher must hold the same, non-zero number of rows; "
                         f"got {student.shape[0]} and {teacher.shape[0]}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")


def lwf_distillation(student_logits: Tensor, teacher_logits: Tensor,
                     temperature: float = 2.0) -> Tensor:
    """Learning-without-Forgetting loss on the old-class outputs (thesis Eq. 5.3).

    ``teacher_logits`` (B, n) come from the frozen model; only the first n columns of
    ``student_logits`` (B, n + m) are used. Both are divided by ``temperature`` (T = 2 as in
    LwF), softmax-ed over the n old classes, and the loss is the soft cross-entropy
    ``-mean_x sum_k p_k(x) log p'_k(x)`` (teacher p, student p').

    Choices: no T² factor (Eq. 5.3 and the LwF/HAT code have none); exact ``log_softmax``
    instead of the HAT code's 1e-5 probability smoothing. Being a cross-entropy, the value
    includes the teacher's entropy, so it is not 0 when student and teacher agree; its
    gradient equals that of KL(p ‖ p').
    """
    _check_temperature(temperature)
    if student_logits.dim() != 2 or teacher_logits.dim() != 2:
        raise ValueError("student_logits and teacher_logits must be (B, C) tensors; got shapes "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    old = teacher_logits.shape[1]
    if student_logits.shape[0] != teacher_logits.shape[0] or student_logits.shape[1] < old:
        raise ValueError(f"student_logits must be (B, >= {old}) with B = "
                         f"{teacher_logits.shape[0]}; got {tuple(student_logits.shape)}")
    target = F.softmax(teacher_logits / temperature, dim=1)
    log_student = F.log_softmax(student_logits[:, :old] / temperature, dim=1)
    return -(target * log_student).sum(dim=1).mean()


def feature_distillation(student: Tensor, teacher: Tensor, p: int = 2,
                         squared: bool = False) -> Tensor:
    """Mean over the batch of the Lp distance ``||student_i - teacher_i||_p`` (p = 1 or 2).

    These are the "L2 loss" and "L1" feature-alignment baselines of chapters 5 and 6. The
    default follows the thesis author's code (``torch.norm(s - t, p=2, dim=1).mean()``):
    the Euclidean distance, not its square. ``squared=True`` (p = 2 only) gives the mean
    squared distance instead. At ``student == teacher`` (the start of an incremental stage)
    the value is 0 and the gradient is 0, not NaN.
    """
    _check_pair(student, teacher, "student and teacher")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {p}")
    if squared and p != 2:
        raise ValueError("squared=True needs p=2")
    difference = student - teacher
    if squared:
        return difference.pow(2).sum(dim=1).mean()
    return torch.linalg.vector_norm(difference, ord=p, dim=1).mean()


def gram_matrix(features: Tensor, kernel: str = "linear", normalize: bool = True,
                sigma: float = 1.0) -> Tensor:
    """Batch Gram matrix ``G_ij = K(F_i, F_j)`` (thesis Eq. 6.4), shape (B, B).

    ``kernel="linear"`` is the inner product the thesis uses; ``kernel="rbf"`` is
    ``exp(-||F_i - F_j||² / (2 sigma²))``. With ``normalize`` the rows are L2-normalised
    first, so the linear Gram holds cosine similarities.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (B, D); got shape {tuple(features.shape)}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}; got {kernel!r}")
    x = F.normalize(features, dim=1) if normalize else features
    if kernel == "linear":
        return x @ x.T
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(dim=-1)
    return torch.exp(-squared / (2.0 * sigma**2))


def correlation_distillation(student: Tensor, teacher: Tensor, temperature: float = 4.0,
                             normalize: bool = False) -> Tensor:
    """Correlation distillation between two batches of features (thesis Eq. 6.5).

    Row-wise softmax of the linear Gram matrices divided by ``temperature`` gives
    ``P_s = softmax(G_student / T)`` and ``P_t = softmax(G_teacher / T)``; the loss is
    ``sum_ij P_s,ij (log P_s,ij - log P_t,ij) · T² / B``, i.e. KL(P_s ‖ P_t) summed over the
    B rows, times T², divided by B.

    Direction (from the thesis author's code, REFERENCE_PROTOCOLS): the *student* Gram is the
    target argument of ``F.kl_div`` and the teacher's log-probabilities are its input, so the
    expectation is taken under the student distribution. This is the reverse of the usual
    distillation KL(P_t ‖ P_s) that Eq. 6.5 suggests; the two differ on asymmetric inputs.
    T = 4 and the T² factor also come from that code; Eq. 6.5 shows neither.

    ``normalize=False`` (default) builds the Gram from the features as given, as the reference
    does: its embeddings are already L2-normalised, and the estimated features of Eq. 6.8
    (``f + f ⊙ r``) enter unnormalised, which keeps their estimated drift. The teacher is not
    detached: compute it under ``torch.no_grad()`` from the frozen model.
    """
    _check_pair(student, teacher, "student and teacher")
    _check_temperature(temperature)
    logits_student = gram_matrix(student, normalize=normalize) / temperature
    logits_teacher = gram_matrix(teacher, normalize=normalize) / temperature
    log_p_student = F.log_softmax(logits_student, dim=1)
    log_p_teacher = F.log_softmax(logits_teacher, dim=1)
    kl = (log_p_student.exp() * (log_p_student - log_p_teacher)).sum()
    return kl * temperature**2 / student.shape[0]


def multi_model_correlation(student: Tensor, teachers: Sequence[Tensor],
                            weights: Sequence[float] | None = None, temperature: float = 4.0,
                            normalize: bool = False) -> Tensor:
    """Weighted sum of :func:`correlation_distillation` against several teachers.

    ``weights=None`` gives 1 to each teacher: the "two-model distillation" that keeps every old
    model (Table 6.3, case (d): ``L^(t-1)->t + L^(t-2)->t``). With teachers ordered
    ``[F_{t-1}, F̂_{t-2}, ..., F̂_0]`` (actual, then estimated features) and
    ``weights = estimation_weights(t)`` this is Eq. 6.11.
    """
    teachers = list(teachers)
    if not teachers:
        raise ValueError("teachers must hold at least one feature batch")
    weights = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]
    if len(weights) != len(teachers):
        raise ValueError(f"weights must have one entry per teacher ({len(teachers)}); got "
                         f"{len(weights)}")
    losses = [w * correlation_distillation(student, teacher, temperature, normalize)
              for w, teacher in zip(weights, teachers, strict=True)]
    return torch.stack(losses).sum()
