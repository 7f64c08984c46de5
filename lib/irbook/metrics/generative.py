"""Quality of generated images (thesis Table 7.5): the Inception score (Salimans et al. 2016)
and the Fréchet distance between Gaussian fits of two feature sets (FID, Heusel et al. 2017).

Both take arrays computed elsewhere (class probabilities, features of an Inception-like
network), so they know no network.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import linalg
from scipy.special import rel_entr

__all__ = ["fid", "frechet_distance", "inception_score"]


def _finite_matrix(name: str, value: object, shape: str) -> np.ndarray:
    """``value`` as a float64 array of the rank of ``shape`` (e.g. "(N, D)"), finite."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != shape.count(",") + (not shape.endswith(",)")) or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {shape} array; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def inception_score(probabilities: object, splits: int = 10) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) ‖ p(y)))`` on each of ``splits`` near-equal consecutive parts of the
    (N, C) rows of class probabilities, p(y) being the mean row of the part; returns the mean
    and the (population) standard deviation over the parts, as Salimans et al.'s code does.

    The score lies in [1, C]: 1 when every row equals p(y), C for confident predictions spread
    evenly over C classes. Rows must be non-negative and sum to 1 (within 1e-3).
    """
    p = _finite_matrix("probabilities", probabilities, "(N, C)")
    if isinstance(splits, bool) or not isinstance(splits, int | np.integer) or splits < 1:
        raise ValueError(f"splits must be an integer >= 1; got {splits!r}")
    if splits > len(p):
        raise ValueError(f"splits ({splits}) must not exceed the number of rows ({len(p)})")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows that sum to 1")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = rel_entr(part, marginal).sum(axis=1).mean()  # 0 log 0 = 0
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def frechet_distance(mu1: object, sigma1: object, mu2: object, sigma2: object,
                     eps: float = 1e-6) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2):
    ``‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})``.

    As in the reference FID code: when the square root of Σ1Σ2 is not finite (a singular
    product), ``eps`` is added to both diagonals and it is recomputed; a complex result with a
    negligible imaginary diagonal (< 1e-3) keeps its real part, otherwise ValueError.
    """
    m1, m2 = _finite_matrix("mu1", mu1, "(D,)"), _finite_matrix("mu2", mu2, "(D,)")
    s1, s2 = _finite_matrix("sigma1", sigma1, "(D, D)"), _finite_matrix("sigma2", sigma2, "(D, D)")
    d = m1.shape[0]
    if m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"mu1, mu2 must be (D,) and sigma1, sigma2 (D, D) with one D; got "
                         f"{m1.shape}, {m2.shape}, {s1.shape}, {s2.shape}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
    with warnings.catch_warnings():  # the reference passes disp=False: no singularity warning
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"the square root of sigma1 @ sigma2 has an imaginary component "
                             f"{imaginary:.3g}: are both covariance matrices symmetric PSD?")
        covmean = covmean.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid(features_a: object, features_b: object, eps: float = 1e-6) -> float:
    """FID between two feature sets (N_a, D) and (N_b, D): :func:`frechet_distance` of their
    means and unbiased covariances (``np.cov(rowvar=False)``); needs two rows per set."""
    a = _finite_matrix("features_a", features_a, "(N, D)")
    b = _finite_matrix("features_b", features_b, "(N, D)")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same dimension; got "
                         f"{a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each feature set needs at least 2 rows for a covariance; got "
                         f"{len(a)} and {len(b)}")
    return frechet_distance(a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False)),
                            b.mean(axis=0), np.atleast_2d(np.cov(b, rowvar=False)), eps=eps)
