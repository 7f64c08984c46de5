"""Tests of irbook.metrics: hand-computed AP values, junk handling, revisited protocol, N-S score,
Recall@K, and cross-checks against slow reference loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from irbook.metrics import (
    RULES,
    ap_code_faithful,
    ap_from_ranking,
    average_precision,
    drop_self,
    mean_average_precision,
    ns_score,
    precision_at_k,
    rankings_excluding_self,
    recall_at_k,
    revisited_map,
)

# Ranking [3, 0, 5, 1, 2, 4] with positives {0, 1}: hits at 0-based ranks 1 and 3.
#   rectangle:     (1/2 + 2/4) / 2                         = 0.5
#   trapezoid:     ((0/1 + 1/2)/2 + (1/3 + 2/4)/2) / 2      = (1/4 + 5/12) / 2 = 1/3
#   code_faithful: (0/2 + 1/4) / 2                         = 1/8
RANKING = [3, 0, 5, 1, 2, 4]
POSITIVES = [0, 1]


@pytest.mark.parametrize(
    ("rule", "expected"), [("rectangle", 0.5), ("trapezoid", 1 / 3), ("code_faithful", 1 / 8)]
)
def test_ap_by_hand(rule: str, expected: float) -> None:
    assert ap_from_ranking(RANKING, POSITIVES, rule=rule) == pytest.approx(expected)
    assert average_precision([1, 3], 2, rule=rule) == pytest.approx(expected)


def test_trapezoid_first_rank_counts_precision_one() -> None:
    # Hits at ranks 0 and 2: j=0, r=0 -> (1 + 1/1)/2 = 1; j=1, r=2 -> (1/2 + 2/3)/2 = 7/12.
    # trapezoid = (1 + 7/12) / 2 = 19/24; rectangle = (1/1 + 2/3) / 2 = 5/6.
    assert average_precision([0, 2], 2, rule="trapezoid") == pytest.approx(19 / 24)
    assert average_precision([0, 2], 2, rule="rectangle") == pytest.approx(5 / 6)
    # A perfect ranking scores 1 under the two standard rules.
    assert average_precision([0, 1, 2], 3, rule="trapezoid") == pytest.approx(1.0)
    assert average_precision([0, 1, 2], 3, rule="rectangle") == pytest.approx(1.0)


def test_code_faithful_is_deflated() -> None:
    # Perfect ranking of 3 positives: (0/1 + 1/2 + 2/3) / 3 = 7/18, far below 1.
    assert ap_code_faithful([0, 1, 2], 3) == pytest.approx(7 / 18)


def test_junk_removal_shifts_ranks() -> None:
    # [7, 9, 2, 8, 3], junk {7, 8} -> [9, 2, 3]: positives {2, 3} at ranks 1 and 2.
    #   rectangle: (1/2 + 2/3) / 2 = 7/12
    #   trapezoid: ((0 + 1/2)/2 + (1/2 + 2/3)/2) / 2 = (1/4 + 7/12) / 2 = 5/12
    ranking = [7, 9, 2, 8, 3]
    assert ap_from_ranking(ranking, [2, 3], junk=[7, 8], rule="rectangle") == pytest.approx(7 / 12)
    assert ap_from_ranking(ranking, [2, 3], junk=[7, 8]) == pytest.approx(5 / 12)
    # Without junk removal the hits sit at ranks 2 and 4: rectangle (1/3 + 2/5) / 2 = 11/30.
    assert ap_from_ranking(ranking, [2, 3], rule="rectangle") == pytest.approx(11 / 30)


def test_truncated_ranking_counts_missing_positives_as_not_retrieved() -> None:
    # Top-2 list [5, 1], positives {1, 4, 6}: one hit at rank 1, three positives in all.
    #   rectangle: (1/2) / 3 = 1/6;  trapezoid: ((0 + 1/2)/2) / 3 = 1/12
    assert ap_from_ranking([5, 1], [1, 4, 6], rule="rectangle") == pytest.approx(1 / 6)
    assert ap_from_ranking([5, 1], [1, 4, 6]) == pytest.approx(1 / 12)
    assert ap_from_ranking([5, 2], [1, 4, 6]) == 0.0


def test_no_positives_gives_nan_and_is_skipped_in_the_mean() -> None:
    assert math.isnan(ap_from_ranking(RANKING, []))
    rankings = np.array([RANKING, RANKING, [0, 1, 2, 3, 4, 5]])
    gnd = [{"ok": POSITIVES}, {"ok": np.array([], dtype=int), "junk": [2]}, {"ok": [0, 1]}]
    m, aps = mean_average_precision(rankings, gnd)
    assert math.isnan(aps[1])
    assert aps[0] == pytest.approx(1 / 3) and aps[2] == pytest.approx(1.0)
    assert m == pytest.approx((1 / 3 + 1.0) / 2)
    m_none, _ = mean_average_precision(rankings[:1], [{"ok": []}])
    assert math.isnan(m_none)


def test_bad_rule_and_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="rule must be one of .*trapezoid.*rectangle"):
        average_precision([0], 1, rule="area")
    with pytest.raises(ValueError, match="rule"):
        mean_average_precision(np.array([[0, 1]]), [{"ok": [0]}], rule="11-point")
    with pytest.raises(ValueError, match="rankings must be a 2-D"):
        mean_average_precision(np.array([0, 1]), [{"ok": [0]}])
    with pytest.raises(ValueError, match="gnd has 2 entries but rankings has 1 rows"):
        mean_average_precision(np.array([[0, 1]]), [{"ok": [0]}, {"ok": [1]}])
    with pytest.raises(ValueError, match="non-negative"):
        mean_average_precision(np.array([[0, -1]]), [{"ok": [0]}])


def _slow_ap(ranking: list[int], ok: set[int], junk: set[int], rule: str) -> float:
    """Literal reading of the AP definitions: walk the ranking, skip junk, count hits."""
    if not ok:
        return float("nan")
    total, hits, rank = 0.0, 0, 0
    for index in ranking:
        if index in junk and index not in ok:
            continue
        if index in ok:
            after = (hits + 1) / (rank + 1)
            if rule == "rectangle":
                total += after
            elif rule == "code_faithful":
                total += hits / (rank + 1)
            else:
                before = hits / rank if rank > 0 else 1.0
                total += (before + after) / 2
            hits += 1
        rank += 1
    return total / len(ok)


@pytest.mark.parametrize("rule", RULES)
def test_mean_average_precision_matches_slow_loop(rule: str) -> None:
    rng = np.random.default_rng(0)
    n_queries, n_db, depth = 25, 60, 40
    rankings = np.stack([rng.permutation(n_db)[:depth] for _ in range(n_queries)])
    gnd = []
    for q in range(n_queries):
        chosen = rng.permutation(n_db)
        n_ok = 0 if q % 7 == 3 else int(rng.integers(1, 10))
        gnd.append({"ok": chosen[:n_ok], "junk": chosen[n_ok : n_ok + int(rng.integers(0, 8))]})
    m, aps = mean_average_precision(rankings, gnd, rule=rule)
    slow = np.array(
        [
            _slow_ap(list(rankings[q]), set(g["ok"].tolist()), set(g["junk"].tolist()), rule)
            for q, g in enumerate(gnd)
        ]
    )
    np.testing.assert_allclose(aps, slow, rtol=1e-12, equal_nan=True)
    assert m == pytest.approx(np.nanmean(slow))


def test_rectangle_ap_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        scores = rng.random(80)
        relevant = rng.random(80) < 0.2
        relevant[0] = True
        ranking = np.argsort(-scores)
        ours = ap_from_ranking(ranking, np.flatnonzero(relevant), rule="rectangle")
        assert ours == pytest.approx(average_precision_score(relevant, scores))


# Revisited protocol, 8 database images, 2 queries.
#  q0: easy {0, 1}, hard {2}, junk {3}; ranking [2, 4, 0, 3, 1, 5, 6, 7]
#    easy   (ok {0,1}, junk {2,3}):  [4, 0, 1, ...] hits at 1, 2
#           AP = ((0 + 1/2)/2 + (1/2 + 2/3)/2) / 2 = 5/12
#           1-based ranks [2, 3]: P@1 k'=1 -> 0; P@5 k'=3 -> 2/3; P@10 -> 2/3
#    medium (ok {0,1,2}, junk {3}):   [2, 4, 0, 1, ...] hits at 0, 2, 3
#           AP = (1 + (1/2 + 2/3)/2 + (2/3 + 3/4)/2) / 3 = (24 + 14 + 17)/24/3 = 55/72
#           1-based [1, 3, 4]: P@1 -> 1; P@5 k'=4 -> 3/4; P@10 -> 3/4
#    hard   (ok {2}, junk {0,1,3}):   [2, 4, ...] hit at 0: AP 1, P@k 1
#  q1: easy {5}, hard {}, junk {}; ranking [0..7]: 5 at rank 5
#    easy = medium: AP = (0/5 + 1/6)/2 = 1/12; 1-based [6]: P@1 0, P@5 0/5 = 0, P@10 k'=6 -> 1/6
#    hard: no positives -> skipped
EXPECTED_REVISITED = {
    "easy": {"mAP": (5 / 12 + 1 / 12) / 2, "mP@1": 0.0, "mP@5": 1 / 3, "mP@10": 5 / 12},
    "medium": {"mAP": (55 / 72 + 1 / 12) / 2, "mP@1": 0.5, "mP@5": 3 / 8, "mP@10": 11 / 24},
    "hard": {"mAP": 1.0, "mP@1": 1.0, "mP@5": 1.0, "mP@10": 1.0},
}


def test_revisited_map_by_hand() -> None:
    rankings = np.array([[2, 4, 0, 3, 1, 5, 6, 7], list(range(8))])
    gnd = [
        {"easy": np.array([0, 1]), "hard": np.array([2]), "junk": np.array([3])},
        {"easy": np.array([5]), "hard": np.array([], dtype=int), "junk": np.array([], dtype=int)},
    ]
    result = revisited_map(rankings, gnd)
    assert set(result) == {"easy", "medium", "hard"}
    for setup, expected in EXPECTED_REVISITED.items():
        assert set(result[setup]) == set(expected)
        for key, value in expected.items():
            assert result[setup][key] == pytest.approx(value), (setup, key)
    medium_gnd = [{"ok": np.concatenate([g["easy"], g["hard"]]), "junk": g["junk"]} for g in gnd]
    assert result["medium"]["mAP"] == pytest.approx(mean_average_precision(rankings, medium_gnd)[0])


def test_revisited_rejects_bad_ks() -> None:
    gnd = [{"easy": [0], "hard": [], "junk": []}]
    with pytest.raises(ValueError, match="ks"):
        revisited_map(np.array([[0, 1]]), gnd, ks=(0,))


def test_ns_score_by_hand() -> None:
    groups = np.arange(12) // 4
    # q0 (group 0): top 4 [0, 1, 4, 2] -> 0, 1, 2 are group 0 -> 3 (the query itself counts)
    # q5 (group 1): top 4 [9, 4, 6, 0] -> 4, 6 -> 2;   N-S = (3 + 2) / 2 = 2.5
    rankings = np.array([[0, 1, 4, 2, 3, 5], [9, 4, 6, 0, 5, 7]])
    assert ns_score(rankings, groups, [0, 5]) == pytest.approx(2.5)
    perfect = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert ns_score(perfect, groups, [0, 5]) == 4.0
    with pytest.raises(ValueError, match="at least 4 columns"):
        ns_score(rankings[:, :3], groups, [0, 5])


# Query = database, labels [0, 0, 1, 1], similarity below. Self removed, rankings:
#   q0 [2, 1, 3] (labels 1, 0, 1) -> first same label at rank 2
#   q1 [3, 2, 0] (labels 1, 1, 0) -> rank 3
#   q2 [3, 0, 1] (labels 1, 0, 0) -> rank 1
#   q3 [2, 1, 0] (labels 1, 0, 0) -> rank 1
#   R@1 = 2/4, R@2 = 3/4, R@3 = 1;  P@2 = (1/2 + 0 + 1/2 + 1/2) / 4 = 3/8
SIMILARITY = np.array(
    [[1.0, 0.2, 0.5, 0.1], [0.2, 1.0, 0.3, 0.4], [0.5, 0.3, 1.0, 0.6], [0.1, 0.4, 0.6, 1.0]]
)
LABELS = np.array([0, 0, 1, 1])


def test_recall_at_k_with_self_exclusion() -> None:
    rankings = rankings_excluding_self(SIMILARITY)
    np.testing.assert_array_equal(rankings, [[2, 1, 3], [3, 2, 0], [3, 0, 1], [2, 1, 0]])
    recalls = recall_at_k(rankings, LABELS, LABELS, ks=(1, 2, 3))
    assert recalls == pytest.approx({1: 0.5, 2: 0.75, 3: 1.0})
    # Keeping the self-match would make every query a hit at rank 1.
    with_self = np.argsort(-SIMILARITY, axis=1)
    assert recall_at_k(with_self, LABELS, LABELS, ks=(1,)) == {1: 1.0}
    assert precision_at_k(rankings, LABELS, LABELS, ks=(1, 2)) == pytest.approx({1: 0.5, 2: 0.375})


def test_drop_self_handles_rows_without_the_query() -> None:
    rankings = np.array([[4, 0, 2], [1, 3, 2]])
    np.testing.assert_array_equal(drop_self(rankings, [0, 5]), [[4, 2], [1, 3]])


def test_recall_rejects_k_beyond_ranking() -> None:
    with pytest.raises(ValueError, match="ks must be <= the ranking length 3"):
        recall_at_k(np.array([[0, 1, 2]]), [0], LABELS, ks=(1, 4))
    with pytest.raises(ValueError, match="query_labels has 2 entries"):
        recall_at_k(np.array([[0, 1, 2]]), [0, 1], LABELS, ks=(1,))


# --- precision-recall curves (Figures 5.3a-b) -------------------------------------------------

def test_interpolated_precision_by_hand():
    from irbook.metrics import interpolated_precision

    # ranks: R N R N with 2 relevant -> precision 1, 1/2, 2/3, 1/2 at recall .5, .5, 1, 1
    curve = interpolated_precision(np.array([1, 0, 1, 0], bool), 2, np.array([0, 0.5, 0.75, 1]))
    np.testing.assert_allclose(curve, [1.0, 1.0, 2 / 3, 2 / 3])
    # one of three relevant items found, at rank 2: recall never passes 1/3
    curve = interpolated_precision(np.array([0, 1, 0], bool), 3, np.array([0, 0.3, 0.5, 1]))
    np.testing.assert_allclose(curve, [0.5, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="n_relevant"):
        interpolated_precision(np.array([1, 1], bool), 1)


def test_mean_precision_recall_averages_queries_and_skips_those_without_relevant_items():
    from irbook.metrics import mean_precision_recall

    db_labels = np.array([0, 0, 1, 2])
    rankings = np.array([[1, 2, 3], [2, 3, 1], [0, 1, 3]])
    query_labels = np.array([0, 0, 1])
    levels = np.array([0.0, 1.0])
    curve = mean_precision_recall(rankings, query_labels, db_labels, levels)
    # q0: its one relevant item at rank 1 -> [1, 1]; q1: at rank 3 -> [1/3, 1/3];
    # q2 (label 1): the only item of class 1 (index 2) is not in its ranking -> skipped
    np.testing.assert_allclose(curve, [(1 + 1 / 3) / 2, (1 + 1 / 3) / 2])
    with pytest.raises(ValueError, match="no query"):
        mean_precision_recall(rankings[2:], query_labels[2:], db_labels, levels)
