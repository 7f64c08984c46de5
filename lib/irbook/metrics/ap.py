"""Average precision (AP) and mean average precision (mAP) over rankings.

A *ranking* is a 1-D array of database indices, best match first. It may be truncated (a top-k
list): positives that do not appear in it count as not retrieved. *Junk* images are removed from
the ranking before the ranks of the positives are read, as in the Oxford/Paris protocol
(cnnimageretrieval-pytorch, revisitop).

Three ways to turn the 0-based ranks ``r_0 < r_1 < ...`` of the positives (after junk removal)
into an AP, with ``n`` the number of positives and ``j`` the 0-based hit counter:

- ``"trapezoid"`` (Oxford rule): mean over hits of ``(j / r_j + (j + 1) / (r_j + 1)) / 2``, where
  ``j / r_j`` is taken as 1 when ``r_j = 0``; the area under the precision-recall curve by the
  trapezoid rule.
- ``"rectangle"`` (standard AP, thesis Eq. 2.20): mean over hits of ``(j + 1) / (r_j + 1)``.
- ``"code_faithful"``: mean over hits of ``j / (r_j + 1)``, i.e. the precision at each hit counts
  only the hits *before* it. This reproduces the mAP of the public code of the thesis's
  chapter-6 method (its precision at a hit sums the matches strictly above that hit); it is
  deflated, the first hit always contributing 0. Use it only to explain differences.

In all three rules the sum is divided by the number of positives, so positives that are never
retrieved contribute 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RULES = ("trapezoid", "rectangle", "code_faithful")


def check_rule(rule: str) -> str:
    """Return ``rule`` if it is one of :data:`RULES`, else raise ``ValueError``."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return rule


def average_precision(
    positive_ranks: Sequence[int] | np.ndarray, n_positives: int, rule: str = "trapezoid"
) -> float:
    """AP from the sorted 0-based ranks of the retrieved positives (junk already removed).

    ``n_positives`` is the total number of positives of the query; ranks of positives that were
    not retrieved are simply absent. Returns NaN when ``n_positives`` is 0.
    """
    check_rule(rule)
    if n_positives < 0:
        raise ValueError(f"n_positives must be >= 0, got {n_positives}")
    if n_positives == 0:
        return float("nan")
    ranks = np.asarray(positive_ranks, dtype=np.float64)
    if ranks.size > n_positives:
        raise ValueError(
            f"positive_ranks has {ranks.size} entries but n_positives is {n_positives}"
        )
    hits_before = np.arange(ranks.size, dtype=np.float64)  # j, 0-based
    precision_after = (hits_before + 1.0) / (ranks + 1.0)  # (j + 1) / (r + 1)
    if rule == "rectangle":
        per_hit = precision_after
    elif rule == "code_faithful":
        per_hit = hits_before / (ranks + 1.0)
    else:
        safe_ranks = np.where(ranks > 0, ranks, 1.0)
        precision_before = np.where(ranks > 0, hits_before / safe_ranks, 1.0)
        per_hit = (precision_before + precision_after) / 2.0
    return float(per_hit.sum() / n_positives)


def ap_code_faithful(positive_ranks: Sequence[int] | np.ndarray, n_positives: int) -> float:
    """Deflated AP of the chapter-6 reference code: mean over hits of ``j / (r_j + 1)``.

    ``j`` is the 0-based hit counter (the number of positives ranked above this hit) and ``r_j``
    the 0-based rank. Same as ``average_precision(..., rule="code_faithful")``. That code also
    kept each query in its own gallery (its similarity lowered by 1) and counted it as a
    positive; reproduce that by not removing the self-match from the ranking.
    """
    return average_precision(positive_ranks, n_positives, rule="code_faithful")


def as_index_array(values: Sequence[int] | np.ndarray | None, name: str) -> np.ndarray:
    """Convert to a 1-D int64 array of non-negative indices (``None`` -> empty)."""
    if values is None:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    array = array.reshape(-1)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{name} must hold non-negative indices, got {int(array.min())}")
    return array.astype(np.int64, copy=False)


def _positive_ranks(ranking: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """0-based ranks of positives after junk removal; ``lookup`` maps index -> 0/1 pos/2 junk."""
    labels = lookup[ranking]
    positive_positions = np.flatnonzero(labels == 1)
    junk_positions = np.flatnonzero(labels == 2)
    junk_above = np.searchsorted(junk_positions, positive_positions)
    return positive_positions - junk_above


class RankFinder:
    """Reusable index -> {0 other, 1 positive, 2 junk} table, reset after each query."""

    def __init__(self, size: int) -> None:
        self.table = np.zeros(size, dtype=np.int8)

    def ranks(self, ranking: np.ndarray, positives: np.ndarray, junk: np.ndarray) -> np.ndarray:
        """Ranks of ``positives`` in ``ranking`` after removing ``junk`` (positives win ties)."""
        self.table[junk] = 2
        self.table[positives] = 1
        try:
            return _positive_ranks(ranking, self.table)
        finally:
            self.table[junk] = 0
            self.table[positives] = 0


def table_size(ranking: np.ndarray, *index_arrays: np.ndarray) -> int:
    """Length of a lookup table that can hold every index in the given arrays."""
    return 1 + max([int(a.max()) for a in (ranking, *index_arrays) if a.size] + [0])


def ap_from_ranking(
    ranking: Sequence[int] | np.ndarray,
    positives: Sequence[int] | np.ndarray,
    junk: Sequence[int] | np.ndarray = (),
    rule: str = "trapezoid",
) -> float:
    """AP of one ranking (1-D database indices, best first); NaN when there are no positives.

    Junk indices are removed from the ranking first. An index listed both as positive and as
    junk counts as positive. Positives missing from a truncated ranking count as not retrieved.
    """
    check_rule(rule)
    ranking_arr = as_index_array(ranking, "ranking")
    positives_arr = np.unique(as_index_array(positives, "positives"))
    junk_arr = as_index_array(junk, "junk")
    if positives_arr.size == 0:
        return float("nan")
    lookup = RankFinder(table_size(ranking_arr, positives_arr, junk_arr))
    ranks = lookup.ranks(ranking_arr, positives_arr, junk_arr)
    return average_precision(ranks, positives_arr.size, rule=rule)


def check_rankings(rankings: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Return ``rankings`` as a 2-D int64 array of non-negative indices, or raise."""
    array = np.asarray(rankings)
    if array.ndim != 2:
        raise ValueError(f"rankings must be a 2-D (queries, ranked items) array, got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"rankings must hold integer indices, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError("rankings must hold non-negative indices (pad-free, k clipped to N)")
    return array.astype(np.int64, copy=False)


def check_same_length(per_query: Sequence, rankings: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless ``per_query`` has one entry per row of ``rankings``."""
    if len(per_query) != rankings.shape[0]:
        raise ValueError(
            f"{name} has {len(per_query)} entries but rankings has {rankings.shape[0]} rows"
        )


def mean_average_precision(
    rankings: np.ndarray,
    gnd: Sequence[Mapping[str, Sequence[int] | np.ndarray]],
    rule: str = "trapezoid",
) -> tuple[float, np.ndarray]:
    """mAP of ``rankings`` (Q, N) against ``gnd`` (Q dicts with ``"ok"`` and optional ``"junk"``).

    Returns ``(mAP, per_query_ap)``; queries without positives get NaN and are left out of the
    mean (mAP is NaN when no query has positives).
    """
    check_rule(rule)
    rankings_arr = check_rankings(rankings)
    check_same_length(gnd, rankings_arr, "gnd")
    positives = [np.unique(as_index_array(g["ok"], "gnd['ok']")) for g in gnd]
    junk = [as_index_array(g.get("junk"), "gnd['junk']") for g in gnd]
    lookup = RankFinder(table_size(rankings_arr, *positives, *junk))
    aps = np.full(rankings_arr.shape[0], np.nan)
    for q, (pos_q, junk_q) in enumerate(zip(positives, junk, strict=True)):
        if pos_q.size:
            ranks = lookup.ranks(rankings_arr[q], pos_q, junk_q)
            aps[q] = average_precision(ranks, pos_q.size, rule=rule)
    return nanmean(aps), aps


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
