"""The run report: metrics, claim checks and the JSON the runner merges."""

import json

import numpy as np

from irbook.report import Report
from irbook.runner import write_results


def test_report_saves_metrics_and_claims_as_plain_json(tmp_path):
    report = Report("ch02", {"profile": "smoke", "seed": 1}, device="cpu (2 threads)")
    report.metric("map", np.float64(12.5), glue=False)
    report.metric("nan", float("nan"), glue=False)
    report.claim("whitening helps", "Table 2.2", np.bool_(True), "+1.0 points")
    path = report.save(tmp_path / "notebook_results.json")
    saved = json.loads(path.read_text())
    assert saved["metrics"] == {"map": 12.5, "nan": None}
    assert saved["claims"] == [{"claim": "whitening helps", "source": "Table 2.2",
                                "holds": True, "detail": "+1.0 points"}]
    assert saved["device"] == "cpu (2 threads)"
    assert list(report.claims_frame()["holds"]) == ["✓ supported"]


def test_runner_merges_report_with_parameters_and_environment(tmp_path):
    report = Report("ch02", {"profile": "smoke"}, device="cpu (1 threads)")
    report.claim("c", "s", False, "d")
    report.save(tmp_path / "notebook_results.json")
    results = json.loads(write_results(tmp_path, "ch02", {"profile": "smoke", "seed": 3},
                                       wall_time=1.234).read_text())
    assert results["seed"] == 3 and results["wall_time_s"] == 1.23
    assert results["claims"][0]["holds"] is False
    assert results["device"] == "cpu (1 threads)"
    assert results["environment"]["torch"]
