"""Revisited Oxford/Paris protocol (Radenović et al. 2018; revisitop ``compute_map``).

Each query has 0-based index arrays ``easy``, ``hard`` and ``junk``. Three setups decide which
images count as positives and which are removed from the ranking as junk:

============  =================  ====================
setup         positives ("ok")   removed ("junk")
============  =================  ====================
easy          easy               junk + hard
medium        easy + hard        junk
hard          hard               junk + easy
============  =================  ====================

AP uses the Oxford trapezoid rule. Queries without positives in a setup are skipped (left out of
both means). mP@k follows revisitop: with ``p_i`` the 1-based ranks of the positives after junk
removal and ``k' = min(k, max_i p_i)``, precision is ``#{p_i <= k'} / k'``; so a query whose
positives all lie above rank k is not penalised for having fewer than k of them. A query with
positives none of which were retrieved (truncated ranking) gets precision 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .ap import (
    RankFinder,
    as_index_array,
    average_precision,
    check_rankings,
    check_same_length,
    nanmean,
    table_size,
)

SETUPS = ("easy", "medium", "hard")


def setup_ground_truth(entry: Mapping[str, Sequence[int] | np.ndarray], setup: str) -> dict:
    """Positives (``"ok"``) and junk of one query under ``setup`` (easy, medium or hard)."""
    easy = as_index_array(entry["easy"], "gnd['easy']")
    hard = as_index_array(entry["hard"], "gnd['hard']")
    junk = as_index_array(entry.get("junk"), "gnd['junk']")
    if setup == "easy":
        return {"ok": np.unique(easy), "junk": np.concatenate([junk, hard])}
    if setup == "medium":
        return {"ok": np.unique(np.concatenate([easy, hard])), "junk": junk}
    if setup == "hard":
        return {"ok": np.unique(hard), "junk": np.concatenate([junk, easy])}
    raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")


def revisited_precision_at_k(positive_ranks: np.ndarray, k: int) -> float:
    """revisitop precision at ``k`` from 0-based positive ranks after junk removal."""
    if positive_ranks.size == 0:
        return 0.0
    one_based = positive_ranks + 1
    cutoff = min(k, int(one_based.max()))
    return float((one_based <= cutoff).sum() / cutoff)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}")
    return ks


def _evaluate_setup(
    rankings: np.ndarray, gnd: Sequence[Mapping], setup: str, ks: tuple[int, ...]
) -> dict[str, float]:
    """mAP and mP@k of one setup, over the queries that have positives in it."""
    truths = [setup_ground_truth(entry, setup) for entry in gnd]
    all_indices = [t["ok"] for t in truths] + [t["junk"] for t in truths]
    finder = RankFinder(table_size(rankings, *all_indices))
    aps = np.full(len(truths), np.nan)
    precisions = np.full((len(truths), len(ks)), np.nan)
    for q, truth in enumerate(truths):
        if truth["ok"].size == 0:
            continue
        ranks = finder.ranks(rankings[q], truth["ok"], truth["junk"])
        aps[q] = average_precision(ranks, truth["ok"].size, rule="trapezoid")
        precisions[q] = [revisited_precision_at_k(ranks, k) for k in ks]
    result = {"mAP": nanmean(aps)}
    for column, k in enumerate(ks):
        result[f"mP@{k}"] = nanmean(precisions[:, column])
    return result


def revisited_map(
    rankings: np.ndarray,
    gnd: Sequence[Mapping[str, Sequence[int] | np.ndarray]],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """Easy/Medium/Hard mAP and mP@k (fractions in [0, 1]) of ``rankings`` (Q, N).

    ``gnd`` holds one dict per query with ``"easy"``, ``"hard"`` and ``"junk"`` index arrays, as
    in ``gnd_roxford5k.pkl``. Returns ``{"easy": {"mAP": .., "mP@1": .., ...}, "medium": ..,
    "hard": ..}``; a setup in which no query has positives gives NaN.
    """
    rankings_arr = check_rankings(rankings)
    check_same_length(gnd, rankings_arr, "gnd")
    ks = _check_ks(ks)
    return {setup: _evaluate_setup(rankings_arr, gnd, setup, ks) for setup in SETUPS}
