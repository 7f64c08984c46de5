"""tools/precision_effect.py: fp32 and bf16 stages side by side, on the smoke profile."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "precision_effect.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("precision_effect", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_differences_are_bf16_minus_fp32_per_seed(tool):
    report = {"profile": "smoke", "method": "ours", "device": "cpu", "seeds": 2,
              "runs": {"fp32": [{"seconds": 1.0, "metrics": {"old R@1": 10.0}},
                                {"seconds": 1.0, "metrics": {"old R@1": 20.0}}],
                       "bf16": [{"seconds": 3.0, "metrics": {"old R@1": 12.5}},
                                {"seconds": 3.0, "metrics": {"old R@1": 15.0}}]}}
    assert tool.differences(report) == {"old R@1": [2.5, -5.0]}
    table = tool.format_table(report)
    assert "| old R@1 | 15.00 | 13.75 | -1.25 (-5.00 .. +2.50) |" in table
    assert "fp32 2 s, bf16 6 s" in table


def test_a_smoke_run_trains_both_precisions(tool, tmp_path, capsys):
    out = tmp_path / "effect.json"
    assert tool.main(["--profile", "smoke", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"fp32", "bf16"}
    assert "old R@1" in report["differences"] and len(report["differences"]["old R@1"]) == 1
    assert "| metric | fp32 | bf16 |" in capsys.readouterr().out


def test_bad_seed_counts_exit_2(tool, capsys):
    with pytest.raises(SystemExit) as exited:
        tool.main(["--seeds", "0"])
    assert exited.value.code == 2 and "--seeds" in capsys.readouterr().err
