"""PCA whitening and learned (Radenović) whitening of global descriptors, on numpy arrays.

Both produce a :class:`Whitening` ``(mean, P)`` applied as ``P[:d] (x - mean)`` followed by
L2 normalisation (REFERENCE_PROTOCOLS.md, "Instance retrieval").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Whitening", "fit_learned_whitening", "fit_pca_whitening"]


def _as_matrix(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"{name} must be a 2-D float array (N, D); got {X.dtype} {X.shape}")
    return X.astype(np.float64)


def _check_dim(dim: int | None, available: int) -> int:
    if dim is None:
        return available
    if not 1 <= dim <= available:
        raise ValueError(f"dim must be between 1 and {available}; got {dim}")
    return dim


@dataclass(frozen=True)
class Whitening:
    """``mean`` (D,), projection ``P`` (d, D) with rows sorted by decreasing ``eigenvalues``."""

    mean: np.ndarray
    P: np.ndarray
    eigenvalues: np.ndarray

    @property
    def dim(self) -> int:
        return self.P.shape[0]

    def apply(self, X: np.ndarray, dim: int | None = None, normalize: bool = True) -> np.ndarray:
        """``P[:dim] (x - mean)`` for every row x of X, then L2-normalised (if ``normalize``)."""
        dtype = np.asarray(X).dtype
        X = _as_matrix(X)
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X must have {self.mean.shape[0]} columns; got {X.shape[1]}")
        Y = (X - self.mean) @ self.P[: _check_dim(dim, self.dim)].T
        if normalize:
            Y /= np.linalg.norm(Y, axis=1, keepdims=True) + 1e-12
        return Y.astype(dtype)

    def as_linear(self, dim: int | None = None) -> nn.Linear:
        """The same projection as a float32 ``nn.Linear`` (weight ``P[:dim]``, bias ``-P m``)."""
        P = self.P[: _check_dim(dim, self.dim)]
        layer = nn.Linear(P.shape[1], P.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(P))
            layer.bias.copy_(torch.from_numpy(-P @ self.mean))
        return layer


def _eigh_descending(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def fit_pca_whitening(X: np.ndarray, dim: int | None = None, eps: float = 1e-6) -> Whitening:
    """PCA whitening ``P = Λ^(-1/2) Vᵀ`` of the covariance of the rows of X (N, D).

    The covariance uses ``1/(N-1)``; eigenvalues below ``eps`` are raised to ``eps`` before the
    inverse square root. After it the (unnormalised) whitened training data has identity
    covariance in every kept component.
    """
    X = _as_matrix(X)
    if X.shape[0] < 2:
        raise ValueError(f"X must have at least 2 rows; got {X.shape[0]}")
    dim = _check_dim(dim, X.shape[1])
    mean = X.mean(axis=0)
    centred = X - mean
    values, vectors = _eigh_descending(centred.T @ centred / (X.shape[0] - 1))
    values, vectors = values[:dim], vectors[:, :dim]
    P = vectors.T / np.sqrt(np.maximum(values, eps))[:, None]
    return Whitening(mean=mean, P=P, eigenvalues=values)


def fit_learned_whitening(
    X: np.ndarray,
    query_idx: np.ndarray,
    positive_idx: np.ndarray,
    dim: int | None = None,
    eps: float = 1e-6,
) -> Whitening:
    """Learned whitening of Radenović et al. from matching pairs (X[query_idx], X[positive_idx]).

    ``P1 = chol(C)^-1`` with ``C`` the mean of ``(q - p)(q - p)ᵀ`` over the pairs (``eps * I``
    added for stability), the mean ``m`` taken over the query descriptors; then the rows of P are
    the eigenvectors (decreasing eigenvalue) of the scatter of ``P1 (x - m)`` over all of X,
    rotated back: ``P = Vᵀ P1``.
    """
    X = _as_matrix(X)
    query_idx, positive_idx = np.asarray(query_idx), np.asarray(positive_idx)
    if query_idx.shape != positive_idx.shape or query_idx.ndim != 1 or query_idx.size == 0:
        raise ValueError("query_idx and positive_idx must be 1-D index arrays of the same "
                         f"non-zero length; got {query_idx.shape} and {positive_idx.shape}")
    dim = _check_dim(dim, X.shape[1])
    mean = X[query_idx].mean(axis=0)
    differences = X[query_idx] - X[positive_idx]
    pair_cov = differences.T @ differences / len(differences) + eps * np.eye(X.shape[1])
    P1 = np.linalg.inv(np.linalg.cholesky(pair_cov))
    projected = (X - mean) @ P1.T
    values, vectors = _eigh_descending(projected.T @ projected)
    P = vectors[:, :dim].T @ P1
    return Whitening(mean=mean, P=P, eigenvalues=values[:dim])
