"""Vectorised mean average precision over full rankings, in torch (thesis Eqs. 2.20-2.21).

For a query ranking all N database items, ``AP = (1 / R) * sum_k P(k) rel(k)`` (Eq. 2.20) with R
the number of relevant items, ``P(k)`` the precision of the top k and ``rel(k)`` whether the
item at rank k is relevant; mAP is the mean over queries (Eq. 2.21). Items are ranked by
descending score, ties broken by increasing database index (a stable sort), so the value is
deterministic. Queries without relevant items get NaN and are left out of the mean.

Two exact ways to compute it, chunked over queries to bound memory, on the device of the input:

- ``"sort"``: stable sort of each row, relevance gathered into rank order, ``cumsum``.
- ``"bucket"`` (what ``"auto"`` uses for finite scores): only the ranks of the relevant items
  are needed. Each row's scores are cut into N equal-width cells (a monotone map, so a cell
  above holds only higher scores); one histogram gives, for every relevant item, the number of
  items in higher cells, and only the items sharing a cell with a relevant item are sorted
  exactly. Several times faster than the full sort when the relevant items are few.

torchmetrics' ``RetrievalMAP`` (1.9) gives wrong values when scores are <= 0
(REFERENCE_PROTOCOLS "Library pitfalls"); this module has no such restriction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MAP_METHODS", "average_precision_rows", "map_from_scores"]

MAP_METHODS = ("auto", "bucket", "sort")
CHUNK_ELEMENTS = 1 << 21  # score-matrix entries per chunk of queries (cache-sized)


def _as_tensor(array: Any, name: str) -> Any:
    import torch

    tensor = array.detach() if isinstance(array, torch.Tensor) else torch.as_tensor(
        np.asarray(array))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_queries, n_database) array, got shape "
                         f"{tuple(tensor.shape)}")
    return tensor


def _check_inputs(scores: Any, relevance: Any) -> tuple[Any, Any]:
    """Scores as float32/float64 and relevance as bool tensors of the same (Q, N) shape."""
    import torch

    scores, relevance = _as_tensor(scores, "scores"), _as_tensor(relevance, "relevance")
    if scores.shape != relevance.shape:
        raise ValueError(f"scores and relevance must have the same shape, got "
                         f"{tuple(scores.shape)} and {tuple(relevance.shape)}")
    if scores.shape[1] == 0:
        raise ValueError("scores must hold at least one database item per query")
    wide = scores.dtype == torch.float64 or not scores.is_floating_point()
    scores = scores.to(torch.float64 if wide else torch.float32)
    if relevance.dtype != torch.bool:
        if not ((relevance == 0) | (relevance == 1)).all():
            raise ValueError("relevance must be bool or hold only 0 and 1")
        relevance = relevance != 0
    return scores, relevance.to(scores.device)


def _ap_by_sort(scores: Any, relevance: Any) -> Any:
    """AP of each row by a full stable sort (Eq. 2.20): ``(Q,)`` float64, NaN without positives."""
    import torch

    order = torch.sort(-scores, dim=1, stable=True).indices  # descending, ties by index
    ranked = relevance.gather(1, order)
    hits = ranked.cumsum(dim=1, dtype=torch.float64)
    ranks = torch.arange(1, scores.shape[1] + 1, dtype=torch.float64, device=scores.device)
    precision_sum = (hits / ranks).mul_(ranked).sum(dim=1)
    return precision_sum / ranked.sum(dim=1)


def _cells(scores: Any, low: Any, high: Any) -> Any:
    """``(C, N)`` int64 equal-width cell of each score in its row's [low, high], N cells."""
    import torch

    n_cells = scores.shape[1]
    width = high - low
    scale = torch.where(width > 0, (n_cells - 1) / width, torch.zeros_like(width))
    return torch.sub(scores, low).mul_(scale).to(torch.int64).clamp_(0, n_cells - 1)


def _within_cell_order(scores: Any, rows: Any, cols: Any) -> Any:
    """Permutation of the (row, col) items: by row, then descending score, then column."""
    import torch

    by_score = torch.sort(-scores[rows, cols], stable=True).indices
    by_row = torch.sort(rows[by_score], stable=True).indices
    return by_score[by_row]


def _ap_by_buckets(scores: Any, relevance: Any, low: Any, high: Any) -> Any:
    """AP of each row (Eq. 2.20) from the exact ranks of the relevant items only.

    ``low``/``high``: ``(C, 1)`` row minima and maxima of ``scores`` (finite).
    """
    import torch

    n_rows, n_cols = scores.shape
    cells = _cells(scores, low, high)
    pos_rows, pos_cols = relevance.nonzero(as_tuple=True)
    marked = torch.zeros((n_rows, n_cols), dtype=torch.bool, device=scores.device)
    marked[pos_rows, cells[pos_rows, pos_cols]] = True  # cells holding a relevant item
    shared = marked.gather(1, cells)  # items sharing a cell with a relevant item
    counts = torch.zeros((n_rows, n_cols), dtype=torch.int64, device=scores.device)
    counts.scatter_add_(1, cells, torch.ones_like(cells)).masked_fill_(marked, 0)
    cumulative = counts.cumsum_(dim=1)  # unshared items in this cell or below
    rows, cols = shared.nonzero(as_tuple=True)
    order = _within_cell_order(scores, rows, cols)
    rows, cols = rows[order], cols[order]
    per_row = torch.bincount(rows, minlength=n_rows)
    starts = per_row.cumsum(0) - per_row
    position = torch.arange(rows.numel(), device=scores.device) - starts[rows]
    is_relevant = relevance[rows, cols]
    hits_so_far = is_relevant.cumsum(0)
    hits_before_row = torch.cat([hits_so_far.new_zeros(1), hits_so_far])[starts]
    hits = (hits_so_far - hits_before_row[rows])[is_relevant]
    rows, cols, position = rows[is_relevant], cols[is_relevant], position[is_relevant]
    above = cumulative[:, -1][rows] - cumulative[rows, cells[rows, cols]]  # in higher cells
    rank = 1 + above + position
    precision_sum = torch.zeros(n_rows, dtype=torch.float64, device=scores.device)
    precision_sum.index_add_(0, rows, hits.double() / rank.double())
    return precision_sum / relevance.sum(dim=1)


def average_precision_rows(scores: Any, relevance: Any, method: str = "auto") -> Any:
    """AP (Eq. 2.20) of every query: ``(Q,)`` float64 tensor, NaN for queries without positives.

    ``scores`` (Q, N), larger = better; ``relevance`` (Q, N) bool (or 0/1); numpy or torch, the
    result on the device of ``scores``. ``method``: one of :data:`MAP_METHODS`; ``"auto"`` uses
    the bucket method for chunks with finite scores and the full sort otherwise.
    """
    import torch

    if method not in MAP_METHODS:
        raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")
    scores, relevance = _check_inputs(scores, relevance)
    chunk = max(1, CHUNK_ELEMENTS // scores.shape[1])
    parts = [torch.zeros(0, dtype=torch.float64, device=scores.device)]
    with torch.no_grad():
        for start in range(0, scores.shape[0], chunk):
            block, relevant = scores[start:start + chunk], relevance[start:start + chunk]
            low, high = torch.aminmax(block, dim=1, keepdim=True)  # NaN propagates
            if bool(low.isnan().any() or high.isnan().any()):
                raise ValueError("scores must not contain NaN")
            finite = bool((high - low).isfinite().all())
            if method == "sort" or (method == "auto" and not finite):
                parts.append(_ap_by_sort(block, relevant))
            elif not finite:
                raise ValueError("method='bucket' needs finite scores with a finite range")
            else:
                parts.append(_ap_by_buckets(block, relevant, low, high))
    return torch.cat(parts)


def map_from_scores(scores: Any, relevance: Any, *, per_query: bool = False,
                    method: str = "auto") -> Any:
    """mAP (Eq. 2.21) over full rankings; with ``per_query`` the ``(Q,)`` AP tensor instead.

    Queries without relevant items are NaN in the per-query values and skipped in the mean
    (NaN when no query has a relevant item). See :func:`average_precision_rows`.
    """
    ap = average_precision_rows(scores, relevance, method=method)
    if per_query:
        return ap
    valid = ap[~ap.isnan()]
    return float(valid.mean()) if valid.numel() else math.nan
