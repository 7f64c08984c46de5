"""Tests of irbook.metrics.fast_map against a hand-computed AP, a naive per-query loop and
sklearn's average_precision_score (thesis Eqs. 2.20-2.21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from irbook.metrics import fast_map
from irbook.metrics.fast_map import MAP_METHODS, average_precision_rows, map_from_scores

METHODS = ["auto", "bucket", "sort"]


def naive_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Eq. 2.20 written out: rank by descending score (ties by index), sum P@k at the hits."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    hits, total = 0, 0.0
    for rank, j in enumerate(order, start=1):
        if relevant[j]:
            hits += 1
            total += hits / rank
    return total / hits if hits else math.nan


def random_case(seed: int, n_queries: int, n_items: int, rate: float, levels: int | None = None):
    rng = np.random.default_rng(seed)
    distinct = rng.permutation(n_queries * n_items).reshape(n_queries, n_items)
    scores = (distinct + 0.5) / distinct.size  # tie-free, in (0, 1)
    if levels is not None:  # many ties
        scores = np.floor(scores * levels) / levels
    relevance = rng.random((n_queries, n_items)) < rate
    return scores.astype(np.float32), relevance


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shift", [0.0, -1.0, -10.0])
def test_hand_computed_example(method, shift):
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]]) + shift
    relevance = np.array([[1, 0, 1, 0, 0]])
    expected = (1 / 1 + 2 / 3) / 2
    assert map_from_scores(scores, relevance, method=method) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.8333, abs=1e-4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tie_free_cases_match_sklearn_and_the_naive_loop(method, seed):
    scores, relevance = random_case(seed, 12, 400, rate=0.05 + 0.1 * seed)
    assert len(np.unique(scores)) == scores.size  # tie-free
    ap = average_precision_rows(scores, relevance, method=method).numpy()
    for q in range(scores.shape[0]):
        if relevance[q].any():
            assert ap[q] == pytest.approx(average_precision_score(relevance[q], scores[q]),
                                          abs=1e-9)
            assert ap[q] == pytest.approx(naive_ap(scores[q], relevance[q]), abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("levels", [2, 7, 50])
def test_ties_are_broken_by_database_index(method, levels):
    scores, relevance = random_case(3, 9, 300, rate=0.1, levels=levels)
    ap = average_precision_rows(torch.from_numpy(scores), torch.from_numpy(relevance),
                                method=method).numpy()
    expected = [naive_ap(s, r) for s, r in zip(scores, relevance, strict=True)]
    np.testing.assert_allclose(ap, expected, rtol=0, atol=1e-12)
    tied = average_precision_rows([[0.5, 0.5, 0.5]], [[0, 0, 1]], method=method)
    assert float(tied[0]) == pytest.approx(1 / 3)  # the relevant item comes last


def test_bucket_and_sort_agree_on_skewed_and_wide_scores():
    rng = np.random.default_rng(4)
    skewed = np.exp(rng.normal(0, 6, size=(20, 2000)))  # most scores crowd near 0
    skewed[:, 0] = 1e6  # an outlier stretches the cells
    wide = rng.normal(0, 1e30, size=(20, 2000))
    for scores in (skewed, wide, skewed.astype(np.float32)):
        relevance = rng.random(scores.shape) < 0.03
        bucket = average_precision_rows(scores, relevance, method="bucket")
        by_sort = average_precision_rows(scores, relevance, method="sort")
        torch.testing.assert_close(bucket, by_sort, rtol=0, atol=1e-12, equal_nan=True)


def test_queries_without_relevant_items_are_nan_and_skipped():
    scores = np.array([[0.9, 0.1, 0.5], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    relevance = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    ap = map_from_scores(scores, relevance, per_query=True)
    assert ap.dtype == torch.float64 and torch.isnan(ap[1])
    assert ap[0] == 1.0 and ap[2] == pytest.approx(1 / 3)
    assert map_from_scores(scores, relevance) == pytest.approx((1 + 1 / 3) / 2)
    assert math.isnan(map_from_scores(scores, np.zeros_like(relevance)))


def test_infinite_scores_use_the_sort_path():
    scores = np.array([[np.inf, 0.3, -np.inf, 0.7], [np.inf, np.inf, 1.0, 0.0]])
    relevance = np.array([[0, 1, 1, 0], [0, 1, 1, 0]], dtype=bool)
    expected = [naive_ap(s, r) for s, r in zip(scores, relevance, strict=True)]
    np.testing.assert_allclose(map_from_scores(scores, relevance, per_query=True), expected)
    with pytest.raises(ValueError, match="method='bucket' needs finite scores"):
        map_from_scores(scores, relevance, method="bucket")


def test_chunking_does_not_change_the_result(monkeypatch):
    scores, relevance = random_case(5, 30, 500, rate=0.05)
    whole = average_precision_rows(scores, relevance)
    monkeypatch.setattr(fast_map, "CHUNK_ELEMENTS", 1000)  # two queries per chunk
    torch.testing.assert_close(average_precision_rows(scores, relevance), whole, rtol=0, atol=0,
                               equal_nan=True)


def test_integer_and_float64_scores_are_exact():
    scores = np.array([[3, 1, 2, 2]], dtype=np.int64)
    relevance = np.array([[0, 1, 1, 0]])
    assert map_from_scores(scores, relevance) == pytest.approx(naive_ap(scores[0], relevance[0]))
    fine = np.array([[1.0, 1.0 + 1e-12, 0.5]])  # distinct in float64 only
    assert map_from_scores(fine, [[1, 0, 0]]) == pytest.approx(0.5)


def test_input_validation():
    with pytest.raises(ValueError, match="same shape"):
        map_from_scores(np.zeros((2, 3)), np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        map_from_scores(np.zeros(3), np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        map_from_scores([[0.1, math.nan]], [[1, 0]])
    with pytest.raises(ValueError, match="only 0 and 1"):
        map_from_scores([[0.1, 0.2]], [[2, 0]])
    with pytest.raises(ValueError, match="method must be one of"):
        map_from_scores([[0.1, 0.2]], [[1, 0]], method="heap")
    with pytest.raises(ValueError, match="at least one database item"):
        map_from_scores(np.zeros((2, 0)), np.zeros((2, 0), dtype=bool))
    assert set(METHODS) == set(MAP_METHODS)
