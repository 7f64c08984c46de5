"""The run report: metrics, claim checks and the JSON the runner merges."""

import json

import numpy as np
import pytest

import irbook.report as report_module
from irbook.claims import Comparison, Evidence, evaluate_claim
from irbook.report import Report


def scalar_claim(claim_id: str, values_by_seed: dict[int, float]):
    """A claim "gain > 0" on scalar measurements, one value per seed."""
    seeds = []
    for seed, gain in values_by_seed.items():
        ev = Evidence(seed)
        ev.add("gain", gain)
        seeds.append(ev)
    return evaluate_claim(claim_id, "whitening helps", "Table 2.2",
                          [Comparison("whitened − raw", ("gain",))], seeds)


@pytest.fixture
def glued(monkeypatch):
    calls = {}
    monkeypatch.setattr(report_module, "_glue", lambda name, value: calls.__setitem__(name, value))
    return calls


def test_report_saves_metrics_and_claims_as_plain_json(tmp_path, glued):
    report = Report("ch02", {"profile": "smoke", "seed": 1}, device="cpu (2 threads)")
    report.metric("map", np.float64(12.5), glue=False)
    report.metric("nan", float("nan"), glue=False)
    claim = report.add_claim(scalar_claim("ch02.whitening_helps", {1: 1.0}))
    report.skip_claim("ch02.pca_needs_data", "smoke profile")
    report.extra["curve"] = [np.float32(1.5), float("nan"), np.array([2.0, np.inf])]
    path = report.save(tmp_path / "notebook_results.json")
    saved = json.loads(path.read_text())
    assert saved["metrics"] == {"map": 12.5, "nan": None}
    assert saved["claims"] == [claim.to_dict()]
    assert saved["claims"][0]["holds"] is True
    assert saved["claims"][0]["compared"] == {"gain": 1.0, "whitened − raw": 1.0}
    assert saved["claims_skipped"] == {"ch02.pca_needs_data": "smoke profile"}
    assert saved["curve"] == [1.5, None, [2.0, None]]
    assert saved["device"] == "cpu (2 threads)"


def test_claims_are_glued_under_their_id_and_duplicates_refused(glued):
    report = Report("ch02", {"profile": "smoke"})
    report.add_claim(scalar_claim("ch02.whitening_helps", {0: 1.0}))
    report.add_claim(scalar_claim("ch02.whitening_hurts", {0: -1.0}))
    assert report.skip_claim("ch02.pca_needs_data", "needs 2 seeds") == \
        "not tested (needs 2 seeds)"
    assert glued == {"ch02.whitening_helps": "supported",
                     "ch02.whitening_hurts": "not supported",
                     "ch02.pca_needs_data": "not tested (needs 2 seeds)"}
    assert [c.id for c in report.claims] == ["ch02.whitening_helps", "ch02.whitening_hurts"]
    with pytest.raises(ValueError, match="already reported"):
        report.add_claim(scalar_claim("ch02.whitening_helps", {0: 2.0}))
    with pytest.raises(ValueError, match="already reported"):
        report.add_claim(scalar_claim("ch02.pca_needs_data", {0: 2.0}))
    with pytest.raises(ValueError, match="claim id"):
        report.skip_claim("pca", "no reason")
    with pytest.raises(TypeError, match="Claim"):
        report.add_claim({"id": "ch02.x"})


def test_claims_frame_shows_verdict_symbol_difference_and_threshold(glued):
    report = Report("ch02", {"profile": "smoke"})
    report.add_claim(scalar_claim("ch02.one_seed", {0: 0.6}))
    report.add_claim(scalar_claim("ch02.three_seeds", {1: 1.0, 2: 2.0, 3: 3.0}))
    report.add_claim(scalar_claim("ch02.spread", {1: -1.0, 2: 0.5, 3: 2.0}))
    frame = report.claims_frame()
    assert list(frame.columns) == ["id", "claim", "source", "verdict", "difference",
                                   "threshold", "detail"]
    assert list(frame["verdict"]) == ["✓ supported", "✓ supported", "? inconclusive"]
    assert list(frame["difference"]) == ["+0.60", "+2.0 [+1.0, +3.0]",
                                         "+0.5 [\u22121.0, +2.0]"]
    assert set(frame["threshold"]) == {"difference > 0 points"}
    assert frame["detail"][0] == "whitened − raw: +0.60 (no interval), needs > 0 (supported)."


def test_runner_merges_report_with_parameters_and_environment(tmp_path, glued):
    from irbook.runner import write_results  # imports every chapter: only this test needs it

    report = Report("ch02", {"profile": "smoke"}, device="cpu (1 threads)")
    report.add_claim(scalar_claim("ch02.whitening_hurts", {3: -0.5}))
    report.save(tmp_path / "notebook_results.json")
    results = json.loads(write_results(tmp_path, "ch02", {"profile": "smoke", "seed": 3},
                                       wall_time=1.234).read_text())
    assert results["seed"] == 3 and results["wall_time_s"] == 1.23
    assert results["claims"][0]["holds"] is False
    assert results["claims"][0]["seeds"] == [
        {"seed": 3, "compared": {"gain": -0.5, "whitened − raw": -0.5}}]
    assert results["device"] == "cpu (1 threads)"
    assert results["environment"]["torch"]
