"""Hamming-ranking mAP and hash-lookup precision-recall (chapter 3, DCMH / SSAH protocol).

Relevance: a database item is relevant to a query when their multi-hot label vectors share at
least one label. Ranking: the whole database sorted by Hamming distance to the query; DCMH's
``calc_map`` sorts with ``np.argsort`` (whose order within a tie is unspecified), here ties
are broken by database index (a stable sort), so the AP is reproducible.

AP of one query (REFERENCE_PROTOCOLS, ``calc_map``): the mean over its relevant items of
(relevant items up to and including it) / (its 1-based position). A query without any relevant
item has AP 0 and still counts in the mean, as in ``calc_map``.

Hash lookup (Figs. 3.5–3.6): for every radius ``r = 0..K`` the pairs (query, item) with
Hamming distance ≤ r are "retrieved", pooled over all queries: precision = relevant retrieved
pairs / retrieved pairs, recall = relevant retrieved pairs / all relevant pairs. A radius that
retrieves no pair has precision NaN (undefined); recall is NaN when no pair is relevant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..search.binary import as_bits, hamming_distances

__all__ = ["hamming_average_precision", "hamming_map", "hash_lookup_pr", "relevance"]

CHUNK_PAIRS = 1 << 23  # query x database entries per block (about 8 M)


def _labels(labels: Any, name: str, rows: int) -> np.ndarray:
    array = np.asarray(labels, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != rows:
        raise ValueError(f"{name} must be a 2-D (n, n_labels) array with {rows} rows, got "
                         f"shape {array.shape}")
    return array


def relevance(query_labels: Any, db_labels: Any) -> np.ndarray:
    """``(Q, N)`` bool: the query and the item share at least one label."""
    q, db = np.asarray(query_labels, np.float32), np.asarray(db_labels, np.float32)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"query_labels and db_labels must be 2-D with the same number of "
                         f"labels, got shapes {q.shape} and {db.shape}")
    return (q @ db.T) > 0


def _checked(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q, db = as_bits(query_codes, "query_codes"), as_bits(db_codes, "db_codes")
    ql = _labels(query_labels, "query_labels", q.shape[0])
    dl = _labels(db_labels, "db_labels", db.shape[0])
    return q, db, ql, dl


def _blocks(n_queries: int, n_db: int) -> list[slice]:
    step = max(1, CHUNK_PAIRS // max(n_db, 1))
    return [slice(s, min(s + step, n_queries)) for s in range(0, n_queries, step)]


def _block_ap(distances: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP of each row: stable sort by distance (ties by index), then calc_map's rule."""
    order = np.argsort(distances.astype(np.int16), axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    cumulative = np.cumsum(hits, axis=1, dtype=np.float64)
    positions = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    n_relevant = hits.sum(axis=1)
    total = np.where(hits, cumulative / positions, 0.0).sum(axis=1)
    return np.where(n_relevant > 0, total / np.maximum(n_relevant, 1), 0.0)


def hamming_average_precision(query_codes: Any, db_codes: Any, query_labels: Any,
                              db_labels: Any) -> np.ndarray:
    """``(Q,)`` AP of every query over the full Hamming ranking of the database (``calc_map``;
    no relevant item -> 0)."""
    q, db, ql, dl = _checked(query_codes, db_codes, query_labels, db_labels)
    out = np.zeros(q.shape[0], dtype=np.float64)
    for block in _blocks(q.shape[0], db.shape[0]):
        distances = hamming_distances(q[block], db)
        out[block] = _block_ap(distances, relevance(ql[block], dl))
    return out


def hamming_map(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> float:
    """Mean of :func:`hamming_average_precision` over all queries (in [0, 1])."""
    return float(hamming_average_precision(query_codes, db_codes, query_labels,
                                           db_labels).mean())


def hash_lookup_pr(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any,
                   max_radius: int | None = None) -> pd.DataFrame:
    """Pooled hash-lookup precision and recall for radius ``0..max_radius`` (default K).

    Columns ``radius`` (int), ``precision``, ``recall`` (floats, NaN where undefined).
    """
    q, db, ql, dl = _checked(query_codes, db_codes, query_labels, db_labels)
    n_bits = q.shape[1]
    if max_radius is None:
        max_radius = n_bits
    if isinstance(max_radius, bool) or not isinstance(max_radius, int | np.integer) \
            or max_radius < 0:
        raise ValueError(f"max_radius must be a non-negative integer or None, got "
                         f"{max_radius!r}")
    pairs = np.zeros(n_bits + 1, dtype=np.int64)
    relevant_pairs = np.zeros(n_bits + 1, dtype=np.int64)
    for block in _blocks(q.shape[0], db.shape[0]):
        distances = hamming_distances(q[block], db).ravel()
        relevant = relevance(ql[block], dl).ravel()
        pairs += np.bincount(distances, minlength=n_bits + 1)
        relevant_pairs += np.bincount(distances[relevant], minlength=n_bits + 1)
    radii = np.arange(int(max_radius) + 1)
    within = np.cumsum(pairs)[np.minimum(radii, n_bits)]
    relevant_within = np.cumsum(relevant_pairs)[np.minimum(radii, n_bits)]
    total_relevant = relevant_pairs.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(within > 0, relevant_within / np.maximum(within, 1), np.nan)
        recall = (relevant_within / total_relevant if total_relevant
                  else np.full(radii.shape, np.nan))
    return pd.DataFrame({"radius": radii, "precision": precision.astype(np.float64),
                         "recall": recall.astype(np.float64)})
