"""Synthetic embedding vectors for search benchmarks and tests.

:func:`clustered_vectors` draws Gaussian clusters around random unit centres: a vector of
cluster ``c`` is ``centre_c + spread * g / sqrt(dim)`` with ``g`` standard normal, so the noise
has norm close to ``spread`` whatever ``dim`` is, then (by default) it is L2-normalised.
:func:`clustered_queries` draws queries from the same centres with fresh noise; its relevant
database items are those of the same cluster (:func:`relevance_by_cluster`).

:func:`gaussian_vectors` has no structure at all. Approximate indexes (IVF, PQ, HNSW) exploit
the structure of the data; on such vectors every one of them loses most of its recall
(REFERENCE_PROTOCOLS "Library pitfalls"), which is why benchmarks use clustered data.

Everything is deterministic per ``seed``: the centres, the database noise and the query noise
come from separate streams ``np.random.default_rng([seed, stream])``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["cluster_centres", "clustered_queries", "clustered_vectors", "gaussian_vectors",
           "relevance_by_cluster"]

_CENTRES, _DATABASE, _QUERIES, _GAUSSIAN = 0, 1, 2, 3  # random streams per seed


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_spread(spread: Any) -> float:
    if isinstance(spread, bool) or not isinstance(spread, int | float | np.floating):
        raise ValueError(f"spread must be a finite number >= 0, got {spread!r}")
    if not math.isfinite(spread) or spread < 0:
        raise ValueError(f"spread must be a finite number >= 0, got {spread!r}")
    return float(spread)


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    vectors /= norms
    return vectors


def cluster_centres(n_clusters: int, dim: int, seed: int) -> np.ndarray:
    """``(n_clusters, dim)`` float32 random unit vectors, the centres used for ``seed``."""
    n_clusters = _check_count(n_clusters, "n_clusters")
    dim = _check_count(dim, "dim")
    seed = _check_count(seed, "seed", minimum=0)
    rng = np.random.default_rng([seed, _CENTRES])
    return _normalise_rows(rng.standard_normal((n_clusters, dim), dtype=np.float32))


def _draw_around(centres: np.ndarray, n: int, spread: float, normalize: bool,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(centres.shape[0], size=n).astype(np.int64)
    dim = centres.shape[1]
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors *= np.float32(spread / math.sqrt(dim))
    vectors += centres[labels]
    return (_normalise_rows(vectors) if normalize else vectors), labels


def clustered_vectors(n: int, dim: int, n_clusters: int, seed: int, spread: float = 0.1,
                      normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors float32 (n, dim), cluster ids int64 (n,))`` of Gaussian clusters.

    Cluster ids are drawn uniformly; each vector is its centre plus noise of norm about
    ``spread`` (see the module docstring), L2-normalised when ``normalize``.
    """
    n = _check_count(n, "n")
    spread = _check_spread(spread)
    centres = cluster_centres(n_clusters, dim, seed)
    return _draw_around(centres, n, spread, normalize, np.random.default_rng([seed, _DATABASE]))


def clustered_queries(n_queries: int, dim: int, n_clusters: int, seed: int,
                      spread: float = 0.1, normalize: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Queries from the clusters of :func:`clustered_vectors` with the same ``seed``.

    Same centres, fresh noise (another random stream), so no query equals a database vector.
    Returns ``(queries float32 (n_queries, dim), cluster ids int64 (n_queries,))``.
    """
    n_queries = _check_count(n_queries, "n_queries")
    spread = _check_spread(spread)
    centres = cluster_centres(n_clusters, dim, seed)
    return _draw_around(centres, n_queries, spread, normalize,
                        np.random.default_rng([seed, _QUERIES]))


def relevance_by_cluster(query_labels: Any, database_labels: Any) -> np.ndarray:
    """``(Q, N)`` bool: database item ``j`` is relevant to query ``i`` when their clusters match."""
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    if query_labels.ndim != 1 or database_labels.ndim != 1:
        raise ValueError(f"query_labels and database_labels must be 1-D, got shapes "
                         f"{query_labels.shape} and {database_labels.shape}")
    return query_labels[:, None] == database_labels[None, :]


def gaussian_vectors(n: int, dim: int, seed: int, normalize: bool = True) -> np.ndarray:
    """``(n, dim)`` float32 structureless standard-normal vectors (L2-normalised by default)."""
    n = _check_count(n, "n")
    dim = _check_count(dim, "dim")
    seed = _check_count(seed, "seed", minimum=0)
    vectors = np.random.default_rng([seed, _GAUSSIAN]).standard_normal((n, dim),
                                                                        dtype=np.float32)
    return _normalise_rows(vectors) if normalize else vectors
