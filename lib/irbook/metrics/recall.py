"""Recall@K and precision@K over class labels (metric-learning protocol, chapters 5-7).

Recall@K is the fraction of queries with at least one database item of the query's label among
the top K (as in the chapter-6 reference code and the deep-metric-learning literature). When the
queries are the database, remove each query from its own ranking first (:func:`drop_self`,
:func:`rankings_excluding_self`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ap import check_rankings, check_same_length


def _check_ks(ks: Sequence[int], n_columns: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}")
    if max(ks) > n_columns:
        raise ValueError(f"ks must be <= the ranking length {n_columns}, got max(ks)={max(ks)}")
    return ks


def _matches(
    rankings: np.ndarray, query_labels: Sequence | np.ndarray, db_labels: Sequence | np.ndarray
) -> np.ndarray:
    """Boolean (Q, K): does the item at each rank share the query's label."""
    rankings_arr = check_rankings(rankings)
    query_arr = np.asarray(query_labels).reshape(-1)
    db_arr = np.asarray(db_labels).reshape(-1)
    check_same_length(query_arr, rankings_arr, "query_labels")
    return db_arr[rankings_arr] == query_arr[:, None]


def recall_at_k(
    rankings: np.ndarray,
    query_labels: Sequence | np.ndarray,
    db_labels: Sequence | np.ndarray,
    ks: Sequence[int] = (1, 2, 4, 8),
) -> dict[int, float]:
    """``{k: fraction of queries with a same-label item in the top k}`` for ``rankings`` (Q, K)."""
    matches = _matches(rankings, query_labels, db_labels)
    ks = _check_ks(ks, matches.shape[1])
    return {k: float(matches[:, :k].any(axis=1).mean()) for k in ks}


def precision_at_k(
    rankings: np.ndarray,
    query_labels: Sequence | np.ndarray,
    db_labels: Sequence | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, float]:
    """``{k: mean over queries of the fraction of same-label items in the top k}``."""
    matches = _matches(rankings, query_labels, db_labels)
    ks = _check_ks(ks, matches.shape[1])
    return {k: float(matches[:, :k].mean(axis=1).mean()) for k in ks}


def drop_self(rankings: np.ndarray, query_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Remove each query's own index from its row of ``rankings`` (Q, K) -> (Q, K - 1).

    Rows that do not contain the query lose their last column instead, so every row keeps the
    same length.
    """
    rankings_arr = check_rankings(rankings)
    queries = np.asarray(query_indices, dtype=np.int64).reshape(-1)
    check_same_length(queries, rankings_arr, "query_indices")
    n_rows, n_cols = rankings_arr.shape
    if n_cols == 0:
        raise ValueError("rankings must have at least one column")
    is_self = rankings_arr == queries[:, None]
    first_self = np.where(is_self.any(axis=1), is_self.argmax(axis=1), n_cols - 1)
    keep = np.ones_like(rankings_arr, dtype=bool)
    keep[np.arange(n_rows), first_self] = False
    return rankings_arr[keep].reshape(n_rows, n_cols - 1)


def rankings_excluding_self(similarity: np.ndarray) -> np.ndarray:
    """Full rankings (N, N - 1) of a square query-equals-database similarity matrix, self removed.

    Larger similarity ranks first; ties keep index order (stable sort).
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square (N, N) matrix, got shape {sim.shape}")
    order = np.argsort(-sim, axis=1, kind="stable")
    return drop_self(order, np.arange(sim.shape[0]))
