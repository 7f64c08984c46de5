"""Precision-recall curves of a ranking (Figures 5.3a-b and 5.4a-b).

For one query, precision and recall are read after every rank; the curve is *interpolated*:
the precision at recall level r is the best precision reached at any recall >= r (the usual
PASCAL-style rule, which makes the curve monotone). The curve of a query set is the mean of
the queries' interpolated curves, over queries with at least one relevant item.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RECALL_LEVELS", "interpolated_precision", "mean_precision_recall"]

RECALL_LEVELS = np.linspace(0.0, 1.0, 21)


def interpolated_precision(relevant: np.ndarray, n_relevant: int,
                           levels: np.ndarray = RECALL_LEVELS) -> np.ndarray:
    """Interpolated precision at ``levels`` of one ranking.

    ``relevant`` is a boolean vector in rank order; ``n_relevant`` the number of relevant items
    in the whole database (those never ranked count as not retrieved, so recall may stay < 1;
    levels above the largest recall reached get precision 0).
    """
    relevant = np.asarray(relevant, dtype=bool)
    if n_relevant < 1:
        raise ValueError(f"n_relevant must be >= 1; got {n_relevant}")
    hits = np.cumsum(relevant)
    if len(hits) == 0:
        return np.zeros(len(levels))
    if hits[-1] > n_relevant:
        raise ValueError(f"the ranking holds {hits[-1]} relevant items, more than "
                         f"n_relevant={n_relevant}")
    precision = hits / np.arange(1, len(relevant) + 1)
    recall = hits / n_relevant
    # best precision at recall >= r: a running maximum from the end of the ranking
    best_from = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, np.asarray(levels) - 1e-12, side="left")
    reached = first < len(recall)
    out = np.zeros(len(levels))
    out[reached] = best_from[first[reached]]
    return out


def mean_precision_recall(rankings: np.ndarray, query_labels: np.ndarray,
                          db_labels: np.ndarray,
                          levels: np.ndarray = RECALL_LEVELS) -> np.ndarray:
    """Mean interpolated precision at ``levels`` over the queries (rows of ``rankings``, database
    indices in rank order); an item is relevant when it shares the query's label. Queries with
    no relevant item in ``rankings`` are skipped; the number of relevant items of a query is
    counted among the items of its ranking (so a query removed from its own ranking is not
    counted)."""
    rankings = np.asarray(rankings)
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    if rankings.ndim != 2 or len(rankings) != len(query_labels):
        raise ValueError(f"rankings must be (n_queries, n_ranked) with one row per query label;"
                         f" got {rankings.shape} and {len(query_labels)} labels")
    curves = []
    for row, label in zip(rankings, query_labels, strict=True):
        relevant = db_labels[row] == label
        if relevant.any():
            curves.append(interpolated_precision(relevant, int(relevant.sum()), levels))
    if not curves:
        raise ValueError("no query has a relevant item: the curve is undefined")
    return np.mean(curves, axis=0)
