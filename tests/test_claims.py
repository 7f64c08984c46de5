"""Claim checks with uncertainty: verdicts, the paired hierarchical bootstrap, validation."""

import json

import numpy as np
import pytest
from scipy import stats

from irbook.claims import (
    VERDICTS,
    Claim,
    Comparison,
    Evidence,
    bootstrap_differences,
    evaluate_claim,
)

CLAIM_KEYS = {"id", "claim", "source", "verdict", "holds", "compared", "interval", "threshold",
              "seeds", "detail", "comparisons"}


def evidence(seed: int = 0, query_set: str | None = "q", **values) -> Evidence:
    ev = Evidence(seed)
    for name, value in values.items():
        ev.add(name, value, None if np.ndim(value) == 0 else query_set)
    return ev


def check(comparisons, ev, **kwargs) -> Claim:
    if isinstance(comparisons, Comparison):
        comparisons = [comparisons]
    return evaluate_claim("ch05.ours_keeps_old", "ours keeps old classes", "Table 5.2",
                          comparisons, ev, **kwargs)


def width(claim: Claim) -> float:
    return claim.interval[1] - claim.interval[0]


OURS_MINUS_EWC = Comparison("ours − EWC", plus=("ours",), minus=("ewc",))


# -- one claim per verdict ---------------------------------------------------------------------

def test_a_clear_gain_on_many_queries_is_supported():
    rng = np.random.default_rng(0)
    base = rng.normal(50, 10, 400)
    ours, ewc = base + 5 + rng.normal(0, 2, 400), base
    claim = check(OURS_MINUS_EWC, evidence(ours=ours, ewc=ewc))
    assert claim.verdict == "supported" and claim.holds is True
    assert claim.compared["ours − EWC"] == pytest.approx(ours.mean() - ewc.mean())
    low, high = claim.interval
    assert 0 < low < claim.compared["ours − EWC"] < high
    assert claim.comparisons[0]["interval"] == claim.interval
    assert claim.threshold == "difference > 0 points"


def test_a_clear_loss_is_not_supported():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 10, 400)
    claim = check(OURS_MINUS_EWC, evidence(ours=base - 4 + rng.normal(0, 2, 400), ewc=base))
    assert claim.verdict == "not supported" and claim.holds is False
    assert claim.interval[1] <= 0


def test_a_tiny_difference_on_few_noisy_queries_is_inconclusive():
    rng = np.random.default_rng(2)
    ours, ewc = rng.normal(0, 10, 8), rng.normal(0, 10, 8)
    ewc = ewc - ewc.mean() + ours.mean() - 0.1  # difference of exactly +0.1
    claim = check(OURS_MINUS_EWC, evidence(ours=ours, ewc=ewc))
    assert claim.compared["ours − EWC"] == pytest.approx(0.1)
    assert claim.verdict == "inconclusive" and claim.holds is None
    assert claim.interval[0] < 0 < claim.interval[1]
    assert "(inconclusive)" in claim.detail


# -- the one-seed bootstrap --------------------------------------------------------------------

def test_one_seed_interval_matches_scipy_paired_percentile_bootstrap():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 5, 30)
    ours, ewc = base + 1 + rng.normal(0, 1, 30), base + rng.normal(0, 1, 30)
    reference = stats.bootstrap(
        (ours, ewc), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
        vectorized=True, n_resamples=20000, method="percentile", confidence_level=0.95,
        rng=np.random.default_rng(1)).confidence_interval
    claim = check(OURS_MINUS_EWC, evidence(ours=ours, ewc=ewc), resamples=20000)
    tolerance = 0.03 * (reference.high - reference.low)
    assert claim.interval[0] == pytest.approx(reference.low, abs=tolerance)
    assert claim.interval[1] == pytest.approx(reference.high, abs=tolerance)


def test_pairing_narrows_the_interval_of_correlated_measurements():
    rng = np.random.default_rng(4)
    base = rng.normal(50, 10, 300)
    ours, ewc = base + 0.5 + rng.normal(0, 1, 300), base + rng.normal(0, 1, 300)
    paired = check(OURS_MINUS_EWC, evidence(ours=ours, ewc=ewc))
    shuffled = check(OURS_MINUS_EWC, evidence(ours=ours, ewc=rng.permutation(ewc)))
    separate = Evidence(0)
    separate.add("ours", ours, "q")
    separate.add("ewc", ewc, "other queries")  # other query set: resampled independently
    unpaired = check(OURS_MINUS_EWC, separate)
    assert paired.compared["ours − EWC"] == pytest.approx(shuffled.compared["ours − EWC"])
    assert width(paired) < 0.2 * width(shuffled)
    assert width(paired) < 0.2 * width(unpaired)
    assert paired.verdict == "supported" and shuffled.verdict == "inconclusive"


def test_same_random_state_gives_the_same_interval():
    rng = np.random.default_rng(5)
    ev = evidence(ours=rng.normal(1, 3, 50), ewc=rng.normal(0, 3, 50))
    assert check(OURS_MINUS_EWC, ev).interval == check(OURS_MINUS_EWC, ev).interval
    assert check(OURS_MINUS_EWC, ev).interval != check(OURS_MINUS_EWC, ev, random_state=1).interval


def test_bootstrap_differences_returns_one_difference_per_resample():
    ev = evidence(ours=np.array([1.0, 1.0, 1.0]), ewc=np.array([0.0, 0.0, 0.0]))
    replicates = bootstrap_differences(OURS_MINUS_EWC, [ev], 250, np.random.default_rng(0))
    assert replicates.shape == (250,)
    np.testing.assert_allclose(replicates, 1.0)  # constant values: every resample gives 1


# -- several seeds -----------------------------------------------------------------------------

def test_several_seeds_average_per_seed_differences_and_keep_every_seed():
    seeds = [evidence(seed, ours=np.array([1.0, 2, 3, 4]) + 2 * i, ewc=np.array([0.0, 1, 0, 1]))
             for i, seed in enumerate((7, 8, 9))]
    claim = check(OURS_MINUS_EWC, seeds)
    assert claim.compared == pytest.approx({"ours": 4.5, "ewc": 0.5, "ours − EWC": 4.0})
    assert claim.seeds == [
        {"seed": 7, "compared": {"ours": 2.5, "ewc": 0.5, "ours − EWC": 2.0}},
        {"seed": 8, "compared": {"ours": 4.5, "ewc": 0.5, "ours − EWC": 4.0}},
        {"seed": 9, "compared": {"ours": 6.5, "ewc": 0.5, "ours − EWC": 6.0}},
    ]
    assert claim.comparisons[0]["per_seed"] == [2.0, 4.0, 6.0]
    assert "3 seeds from +2.0 to +6.0" in claim.detail


def test_spread_across_seeds_widens_the_interval():
    rng = np.random.default_rng(6)
    ours, ewc = rng.normal(10, 5, 200), rng.normal(8, 5, 200)
    one = check(OURS_MINUS_EWC, [evidence(0, ours=ours, ewc=ewc)])
    alike = check(OURS_MINUS_EWC, [evidence(s, ours=ours, ewc=ewc) for s in range(3)])
    spread = check(OURS_MINUS_EWC,
                   [evidence(s, ours=ours + 3 * s, ewc=ewc) for s in range(3)])
    assert spread.compared["ours − EWC"] == pytest.approx(ours.mean() - ewc.mean() + 3)
    assert width(alike) < 0.8 * width(one)  # three resampled seeds average out noise
    assert width(spread) > 2 * width(alike)


def test_scalars_over_seeds_are_bootstrapped_over_seeds_only():
    seeds = [evidence(s, ours=float(s), ewc=0.0) for s in (1, 2, 3)]
    claim = check(OURS_MINUS_EWC, seeds)
    # Means of three seeds drawn from {1, 2, 3}: P(all 1) = P(all 3) = 1/27 > 2.5 %.
    assert claim.compared["ours − EWC"] == pytest.approx(2.0)
    assert claim.interval == pytest.approx([1.0, 3.0])


# -- scalars, statistics, thresholds -----------------------------------------------------------

@pytest.mark.parametrize(("ours", "verdict"), [(0.6, "supported"), (0.5, "not supported"),
                                                (0.2, "not supported")])
def test_scalars_of_one_seed_have_no_interval_and_are_judged_by_the_threshold(ours, verdict):
    comparison = Comparison("ours − EWC", ("ours",), ("ewc",), threshold=0.5, unit="")
    claim = check(comparison, evidence(ours=ours, ewc=0.0))
    assert claim.interval is None and claim.comparisons[0]["interval"] is None
    assert claim.verdict == verdict
    assert claim.compared["ours − EWC"] == pytest.approx(ours)
    assert claim.threshold == "difference > 0.5"
    assert "(no interval)" in claim.detail


@pytest.mark.parametrize(("best", "verdict"), [(74.0, "supported"), (77.0, "not supported")])
def test_a_nonlinear_statistic_with_a_negative_threshold(best, verdict):
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 1, (3, 500))
    ev = evidence(ours=70 + noise[0], a=72 + noise[1], b=best + noise[2])
    within = Comparison("ours − best baseline", plus=("ours",), minus=("a", "b"), threshold=-5,
                        statistic=lambda m: m["ours"] - np.maximum(m["a"], m["b"]))
    claim = check(within, ev)
    means = {k: ev.mean(k) for k in ("ours", "a", "b")}
    assert claim.compared["ours − best baseline"] == pytest.approx(
        means["ours"] - max(means["a"], means["b"]))
    assert claim.verdict == verdict
    assert claim.threshold == "difference > −5 points"
    assert "needs > −5" in claim.detail


def test_a_statistic_that_is_not_vectorised_is_refused():
    comparison = Comparison("mean of ours", ("ours",),
                            statistic=lambda m: float(np.mean(m["ours"])))
    with pytest.raises(ValueError, match="vectorised"):
        check(comparison, evidence(ours=np.arange(5.0)))


def test_several_comparisons_combine_and_the_weakest_decides():
    rng = np.random.default_rng(8)
    base = rng.normal(50, 10, 300)
    ev = evidence(ours=base + 5 + rng.normal(0, 1, 300), ewc=base)
    ev.add("few", rng.normal(0, 10, 6), "few queries")
    ev.add("zero", np.zeros(6), "few queries")
    clear = OURS_MINUS_EWC
    doubtful = Comparison("few − zero", ("few",), ("zero",), threshold=float(ev.mean("few")))
    failing = Comparison("ewc − ours", ("ewc",), ("ours",))
    claim = check([clear, doubtful], ev)
    assert [c["verdict"] for c in claim.comparisons] == ["supported", "inconclusive"]
    assert claim.verdict == "inconclusive"
    assert claim.interval == claim.comparisons[1]["interval"]
    assert claim.deciding_comparison()["label"] == "few − zero"
    assert claim.detail.count("needs >") == 2
    assert set(claim.compared) == {"ours", "ewc", "few", "zero", "ours − EWC", "few − zero"}
    refuted = check([clear, doubtful, failing], ev)
    assert refuted.verdict == "not supported"
    # a refuted claim shows the interval of the comparison that refutes it, not the doubtful one
    assert refuted.deciding_comparison()["label"] == "ewc − ours"
    assert refuted.interval == refuted.comparisons[2]["interval"] and refuted.interval[1] <= 0
    assert check([clear], ev).verdict == "supported"


# -- the stored record and validation ----------------------------------------------------------

def test_to_dict_has_exactly_the_documented_keys_and_round_trips_through_json():
    rng = np.random.default_rng(9)
    seeds = [evidence(s, ours=rng.normal(1, 1, 20), ewc=rng.normal(0, 1, 20), lr=0.1)
             for s in (0, 1)]
    claim = check(OURS_MINUS_EWC, seeds)
    data = claim.to_dict()
    assert set(data) == CLAIM_KEYS
    assert data["verdict"] in VERDICTS
    assert set(data["comparisons"][0]) >= {"label", "difference", "interval", "threshold",
                                           "verdict", "per_seed"}
    text = json.dumps(data, allow_nan=False)
    assert Claim.from_dict(json.loads(text)) == claim


@pytest.mark.parametrize("bad", ["5.ours", "ch5.ours", "ch05.Ours", "ch05.ours-keeps", "ch05.",
                                 "ch05.ours__old", "ch05.ours_", "ch05.ours keeps"])
def test_bad_claim_ids_are_refused(bad):
    with pytest.raises(ValueError, match="claim id"):
        evaluate_claim(bad, "c", "book", [OURS_MINUS_EWC], evidence(ours=1.0, ewc=0.0))


def test_an_unknown_measurement_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown measurement\(s\) \['ewc'\]; known: ours, lwf"):
        check(OURS_MINUS_EWC, evidence(ours=1.0, lwf=0.0))


@pytest.mark.parametrize(("values", "query_set", "message"), [
    ([1.0, float("nan")], "q", "non-finite"),
    (float("inf"), None, "non-finite"),
    ([1.0, 2.0], None, "give its query_set"),
    (1.0, "q", "scalar"),
    ([[1.0, 2.0]], "q", "1-D"),
    ([], "q", "no values"),
    (["a"], "q", "not numeric"),
])
def test_evidence_refuses_bad_values(values, query_set, message):
    with pytest.raises(ValueError, match=message):
        Evidence(0).add("m", values, query_set)


def test_evidence_refuses_duplicates_and_unequal_query_set_lengths():
    ev = evidence(ours=np.ones(4))
    with pytest.raises(ValueError, match="already added"):
        ev.add("ours", np.ones(4), "q")
    with pytest.raises(ValueError, match="3 values but query set 'q' has 4"):
        ev.add("ewc", np.ones(3), "q")
    ev.add("ewc", np.ones(3), "other")
    assert ev.names == ("ours", "ewc") and ev.query_sets == {"q": 4, "other": 3}
    assert ev.mean("ours") == 1.0 and ev.seed == 0


def test_evaluate_claim_refuses_bad_evidence_and_comparisons():
    with pytest.raises(ValueError, match="no evidence"):
        check(OURS_MINUS_EWC, [])
    with pytest.raises(ValueError, match="same names"):
        check(OURS_MINUS_EWC, [evidence(0, ours=1.0, ewc=0.0), evidence(1, ours=1.0)])
    with pytest.raises(ValueError, match="repeats a seed"):
        check(OURS_MINUS_EWC, [evidence(0, ours=1.0, ewc=0.0), evidence(0, ours=1.0, ewc=0.0)])
    with pytest.raises(ValueError, match="labels must be unique"):
        check([OURS_MINUS_EWC, OURS_MINUS_EWC], evidence(ours=1.0, ewc=0.0))
    with pytest.raises(ValueError, match="at least one comparison"):
        check([], evidence(ours=1.0, ewc=0.0))
    with pytest.raises(ValueError, match="both sides"):
        Comparison("x", ("a",), ("a",))
    assert Comparison("x", "ours", "ewc").names == ("ours", "ewc")  # a single name is fine
