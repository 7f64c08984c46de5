"""Metrics of class-incremental learning (chapters 5-7).

An accuracy matrix ``acc`` (T x T) holds ``acc[i, j]``, the accuracy (e.g. Recall@1 or mAP) on
the classes of task ``j`` of the model obtained after training task ``i`` (task 0 = the old
classes). Entries above the diagonal (tasks not yet learnt) are ignored, conventionally NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "average_forgetting",
    "average_incremental_accuracy",
    "forgetting_curve",
    "harmonic_mean",
    "old_new_summary",
]


def _lower_triangle(acc: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``acc`` as a float (T, T) array with NaN above the diagonal; missing entries raise."""
    matrix = np.array(acc, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"acc must be a square (T, T) matrix with T >= 1; got shape "
                         f"{matrix.shape}")
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    matrix[rows, cols] = np.nan
    missing = np.argwhere(np.isnan(np.tril(matrix)) & np.tri(matrix.shape[0], dtype=bool))
    if missing.size:
        i, j = missing[0]
        raise ValueError(f"acc[{i}, {j}] is NaN: every entry on and below the diagonal "
                         "must be a number")
    return matrix


def forgetting_curve(acc: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Average forgetting after each task (thesis Eq. 6.12, after Chaudhry et al. 2018).

    Entry ``i >= 1`` is the mean over the earlier tasks ``j < i`` of
    ``max_{j <= l < i} acc[l, j] - acc[i, j]``: the best accuracy task ``j`` ever had before
    step ``i`` minus its accuracy now. Entry 0 is NaN (nothing to forget yet). All earlier
    tasks, including task 0, are averaged, as the thesis describes its Figure 6.7 (at
    ``t = 2`` both classes 1-100 and 101-125 are tested).
    """
    matrix = _lower_triangle(acc)
    curve = np.full(matrix.shape[0], np.nan)
    for i in range(1, matrix.shape[0]):
        best = np.array([matrix[j:i, j].max() for j in range(i)])
        curve[i] = float(np.mean(best - matrix[i, :i]))
    return curve


def average_forgetting(acc: np.ndarray | Sequence[Sequence[float]],
                       after: int | None = None) -> float:
    """Eq. 6.12 after task ``after`` (default: the last task); NaN when ``after`` is 0."""
    curve = forgetting_curve(acc)
    index = curve.size - 1 if after is None else after
    if not 0 <= index < curve.size:
        raise ValueError(f"after must be in 0..{curve.size - 1}; got {after}")
    return float(curve[index])


def average_incremental_accuracy(acc: np.ndarray | Sequence[Sequence[float]],
                                 task_weights: Sequence[float] | None = None) -> float:
    """Mean over steps ``i`` of the mean accuracy on the tasks seen so far (Rebuffi et al.).

    ``A_i = sum_{j<=i} w_j acc[i, j] / sum_{j<=i} w_j`` and the result is the mean of the
    ``A_i``. Without ``task_weights`` every task counts equally; pass e.g. the number of test
    images per task to weight by size.
    """
    matrix = _lower_triangle(acc)
    size = matrix.shape[0]
    weights = np.ones(size) if task_weights is None else np.asarray(task_weights, dtype=float)
    if weights.shape != (size,) or (weights <= 0).any():
        raise ValueError(f"task_weights must hold {size} positive numbers; got {task_weights}")
    steps = [np.average(matrix[i, : i + 1], weights=weights[: i + 1]) for i in range(size)]
    return float(np.mean(steps))


def harmonic_mean(a: float | np.ndarray, b: float | np.ndarray) -> float | np.ndarray:
    """``2ab / (a + b)``, 0 where ``a + b = 0`` (the H of seen/unseen accuracy, chapter 7)."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    total = a_arr + b_arr
    result = np.divide(2 * a_arr * b_arr, total, out=np.zeros(np.broadcast(a_arr, b_arr).shape),
                       where=total != 0)
    return float(result) if result.ndim == 0 else result


def old_new_summary(old: Mapping[str, float],
                    new: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Per metric: accuracy on the old and on the new classes, their mean and harmonic mean.

    ``old`` and ``new`` map metric names (e.g. ``"R@1"``, ``"mAP"``) to values; the arithmetic
    mean is the "Average" column of thesis Tables 6.1-6.2.
    """
    if set(old) != set(new):
        raise ValueError(f"old and new must have the same metrics; got {sorted(old)} and "
                         f"{sorted(new)}")
    return {metric: {"old": float(old[metric]), "new": float(new[metric]),
                     "average": (float(old[metric]) + float(new[metric])) / 2,
                     "harmonic": float(harmonic_mean(old[metric], new[metric]))}
            for metric in old}
