"""Hamming-ranking AP (DCMH calc_map) and pooled hash-lookup PR against hand computations."""

import math

import numpy as np
import pytest

from irbook.metrics import hashing as hm
from irbook.metrics.hashing import hamming_average_precision, hamming_map, hash_lookup_pr

# four database codes (K = 4) and their labels (c = 4)
DB = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, 1, 1], [-1, -1, -1, -1]])
DB_LABELS = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
# q0 ranks d0, d1, d2, d3 (distances 0, 1, 2, 4) and has label A: relevant d1, d3.
# q1 (label D, which no item has) has no relevant item.
Q = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]])
Q_LABELS = np.array([[1, 0, 0, 0], [0, 0, 0, 1]])


def test_two_queries_by_hand():
    ap = hamming_average_precision(Q, DB, Q_LABELS, DB_LABELS)
    # q0: hits at positions 2 and 4 -> (1/2 + 2/4) / 2 = 0.5; q1: no relevant item -> 0
    assert ap.tolist() == pytest.approx([0.5, 0.0])
    assert hamming_map(Q, DB, Q_LABELS, DB_LABELS) == pytest.approx(0.25)  # q1 still counts


def test_ties_are_broken_by_database_index():
    # q = [1, 1, -1, 1]: distances 1, 2, 3, 3; d2 and d3 tie; relevant only d2 (label C)
    ap = hamming_average_precision([[1, 1, -1, 1]], DB, [[0, 0, 1, 0]], DB_LABELS)
    assert ap[0] == pytest.approx(1 / 3)  # d2 before d3: position 3 (reversed would be 1/4)


def calc_map_loop(qb, rb, ql, rl):
    """DCMH calc_map written out per query (stable ties), for comparison."""
    k = qb.shape[1]
    aps = []
    for i in range(len(qb)):
        gnd = (rl @ ql[i]) > 0
        hamm = 0.5 * (k - rb @ qb[i])
        order = np.lexsort((np.arange(len(rb)), hamm))
        gnd = gnd[order]
        if gnd.sum() == 0:
            aps.append(0.0)
            continue
        positions = np.flatnonzero(gnd) + 1.0
        aps.append(float(np.mean(np.arange(1, gnd.sum() + 1) / positions)))
    return np.array(aps)


def test_random_codes_match_a_loop_over_queries(monkeypatch):
    rng = np.random.default_rng(0)
    qb = np.where(rng.random((23, 6)) < 0.5, 1, -1)
    rb = np.where(rng.random((57, 6)) < 0.5, 1, -1)
    ql = (rng.random((23, 5)) < 0.25).astype(np.float32)
    rl = (rng.random((57, 5)) < 0.25).astype(np.float32)
    expected = calc_map_loop(qb, rb, ql, rl)
    assert hamming_average_precision(qb, rb, ql, rl) == pytest.approx(expected)
    monkeypatch.setattr(hm, "CHUNK_PAIRS", 100)  # several query blocks: the same
    assert hamming_average_precision(qb, rb, ql, rl) == pytest.approx(expected)


def test_hash_lookup_pr_by_hand():
    pr = hash_lookup_pr(Q, DB, Q_LABELS, DB_LABELS)
    assert list(pr.columns) == ["radius", "precision", "recall"]
    assert pr.radius.tolist() == [0, 1, 2, 3, 4]
    # pooled pairs within r: r0 {q0d0, q1d3}; r1 + q0d1 (relevant); r2 + q0d2, q1d2;
    # r3 + q1d1; r4 + q0d3 (relevant), q1d0. Two relevant pairs in all.
    assert pr.precision.tolist() == pytest.approx([0 / 2, 1 / 3, 1 / 5, 1 / 6, 2 / 8])
    assert pr.recall.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.5, 1.0])
    assert len(hash_lookup_pr(Q, DB, Q_LABELS, DB_LABELS, max_radius=2)) == 3


def test_hash_lookup_precision_is_nan_where_nothing_is_retrieved():
    pr = hash_lookup_pr([[1, 1, 1, 1]], [[-1, -1, -1, 1]], [[1, 0]], [[1, 0]])
    assert math.isnan(pr.precision[0]) and pr.recall[0] == 0.0
    assert pr.precision[3] == 1.0 and pr.recall[3] == 1.0


def test_hash_lookup_matches_brute_force():
    rng = np.random.default_rng(3)
    qb = np.where(rng.random((9, 5)) < 0.5, 1, -1)
    rb = np.where(rng.random((31, 5)) < 0.5, 1, -1)
    ql = (rng.random((9, 3)) < 0.4).astype(np.float32)
    rl = (rng.random((31, 3)) < 0.4).astype(np.float32)
    pr = hash_lookup_pr(qb, rb, ql, rl)
    dist = np.array([[np.sum(a != b) for b in rb] for a in qb])
    rel = np.array([[bool(np.dot(a, b)) for b in rl] for a in ql])
    for r in range(6):
        within = dist <= r
        assert pr.recall[r] == pytest.approx((within & rel).sum() / rel.sum())
        if within.any():
            assert pr.precision[r] == pytest.approx((within & rel).sum() / within.sum())


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="query_labels"):
        hamming_average_precision(Q, DB, Q_LABELS[:1], DB_LABELS)
    with pytest.raises(ValueError, match="max_radius"):
        hash_lookup_pr(Q, DB, Q_LABELS, DB_LABELS, max_radius=-2)
