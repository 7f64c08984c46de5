"""Multi-kernel Gaussian Maximum Mean Discrepancy (thesis Eqs. 5.4 and 5.5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MEDIAN_MULTIPLIERS", "gaussian_mmd", "median_sigma"]

# Bandwidths of the "median" option, as multiples of the median pairwise distance.
MEDIAN_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """(len(a), len(b)) squared Euclidean distances, exact (no ``a² + b² - 2ab`` cancellation)."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(dim=-1)


def median_sigma(x: Tensor, y: Tensor) -> float:
    """Median heuristic: the median Euclidean distance between distinct rows of ``[x; y]``.

    Computed without gradient (the bandwidth is a constant of the loss); an even count takes
    the mean of the two middle distances; 1.0 when every distance is 0 or there is one row.
    """
    with torch.no_grad():
        pooled = torch.cat([x, y]).double()
        if len(pooled) < 2:
            return 1.0
        squared = _squared_distances(pooled, pooled)
        upper = torch.triu_indices(len(pooled), len(pooled), offset=1, device=pooled.device)
        median = torch.quantile(squared[upper[0], upper[1]].sqrt(), 0.5).item()
    return median if median > 0 else 1.0


def gaussian_mmd(x: Tensor, y: Tensor,
                 sigmas: Sequence[float] | str = "median", squared: bool = True) -> Tensor:
    """Biased (V-statistic) estimate of MMD² between feature sets ``x`` (N, D) and ``y`` (M, D).

    ``MMD² = mean k(x_i, x_j) + mean k(y_i, y_j) - 2 mean k(x_i, y_j)`` over all pairs, diagonal
    terms included (Eq. 5.4, with the kernel trick of Eq. 5.5), where
    ``k = mean over sigma of exp(-||a - b||² / (2 sigma²))``. The V-statistic is >= 0, exactly
    0 for ``x`` equal to ``y``, and symmetric in its arguments.

    ``squared=False`` returns the square root, which is the loss L_mmd of Eq. 5.5
    (``(1/N) [sum ...]^(1/2)`` with N = M); its gradient is taken as 0 where MMD² < 1e-12
    (for instance at the start of an incremental stage, when student equals teacher) instead
    of the infinite slope of the root.

    Choices: the thesis names "m variances" without values, so ``sigmas`` is either a sequence
    of bandwidths or ``"median"``: :data:`MEDIAN_MULTIPLIERS` times :func:`median_sigma` of the
    pooled batch. The kernels are averaged (equal weights summing to 1, as in multi-kernel MMD).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D) with the same D; got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0 or len(y) == 0:
        raise ValueError("x and y must each hold at least one row")
    if isinstance(sigmas, str):
        if sigmas != "median":
            raise ValueError(f"sigmas must be a sequence of positive floats or 'median'; got "
                             f"{sigmas!r}")
        base = median_sigma(x, y)
        sigmas = [base * multiplier for multiplier in MEDIAN_MULTIPLIERS]
    sigmas = [float(s) for s in sigmas]
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"sigmas must be a non-empty sequence of positive floats; got {sigmas}")

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        squared_distance = _squared_distances(a, b)
        return torch.stack([torch.exp(-squared_distance / (2.0 * s * s)) for s in sigmas]).mean(0)

    mmd2 = kernel(x, x).mean() + kernel(y, y).mean() - 2.0 * kernel(x, y).mean()
    if squared:
        return mmd2
    eps = 1e-12
    return torch.where(mmd2 > eps, mmd2.clamp(min=eps).sqrt(), mmd2.new_zeros(()))
