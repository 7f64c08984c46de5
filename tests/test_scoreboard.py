"""The reproduction scoreboard read from results.json files of fake runs."""

import json

import numpy as np
import pytest

from irbook import scoreboard
from irbook.chapters import CHAPTERS
from irbook.claims import Comparison, Evidence, evaluate_claim


def _claim(claim_id, gain):
    evidence = Evidence(0)
    evidence.add("new", 50.0 + gain + np.array([-1.0, 0.0, 1.0, 0.5, -0.5]), "q")
    evidence.add("old", 50.0 + np.array([1.0, 0.0, -1.0, -0.5, 0.5]), "q")
    return evaluate_claim(claim_id, "new beats old", "Table 5.2",
                          [Comparison("new − old", "new", "old")], [evidence]).to_dict()


def _run(root, profile, chapter, claims, library="lib-now", skipped=None, **extra):
    folder = root / profile / chapter
    folder.mkdir(parents=True)
    params = {**CHAPTERS[chapter].resolve(profile), **extra}
    results = {"chapter": chapter, "profile": profile, "parameters": params, "seed": 0,
               "claims": claims, "claims_skipped": skipped or {}, "device": "cpu (2 threads)",
               "git_revision": "abc1234", "wall_time_s": 12.5,
               "inputs": {"library": library, "data": "synthetic",
                          "packages": {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.4"}}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


@pytest.fixture
def runs(tmp_path):
    _run(tmp_path, "demo", "ch05", [_claim("ch05.a", 5.0), _claim("ch05.b", -5.0)],
         skipped={"ch05.c": "not run with these parameters"}, seed=3)
    _run(tmp_path, "smoke", "ch05", [_claim("ch05.a", 0.0)], library="lib-before")
    _run(tmp_path, "demo", "ch06", [_claim("ch06.a", 4.0)])
    (tmp_path / "demo" / "ch07.failed").mkdir()
    (tmp_path / "demo" / "ch07.failed" / "results.json").write_text("{}")
    (tmp_path / "demo" / "ch04").mkdir()
    (tmp_path / "demo" / "ch04" / "results.json").write_text("{damaged")
    return tmp_path


def test_runs_are_collected_by_chapter_then_profile(runs):
    records = scoreboard.collect_runs(runs)
    assert [(r.chapter, r.profile) for r in records] == [
        ("ch05", "smoke"), ("ch05", "demo"), ("ch06", "demo")]


def test_the_count_adds_up_every_verdict(runs):
    counts = scoreboard.claim_counts(scoreboard.collect_runs(runs)).set_index(
        ["chapter", "profile"])
    assert counts.loc[("ch05", "demo")].tolist() == [1, 1, 0, 1]
    assert counts.loc[("ch05", "smoke")].tolist() == [0, 0, 1, 0]
    assert counts.loc[("all", "")].tolist() == [2, 1, 1, 1]


def test_claims_show_their_interval_and_the_untested_ones_their_reason(runs):
    table = scoreboard.claims_table(scoreboard.collect_runs(runs))
    row = table[(table.id == "ch05.b") & (table.profile == "demo")].iloc[0]
    assert row.verdict == "not supported" and row.difference.startswith("−5.0 [")
    assert row.threshold == "difference > 0 points"
    untested = table[table.id == "ch05.c"].iloc[0]
    assert untested.verdict == "not tested (not run with these parameters)"


def test_provenance_names_changed_parameters_and_stale_runs(runs):
    table = scoreboard.provenance_table(scoreboard.collect_runs(runs), "lib-now").set_index(
        ["chapter", "profile"])
    assert table.loc[("ch05", "demo"), "changed parameters"] == "seed=3"
    assert table.loc[("ch06", "demo"), "changed parameters"] == "none"
    assert table.loc[("ch05", "smoke"), "stale"] == "yes"
    assert table.loc[("ch05", "demo"), "stale"] == "no"
    assert table.loc[("ch05", "demo"), "versions"] == "python 3.11.7, torch 2.14.1, numpy 2.4"
    assert table.loc[("ch05", "demo"), "seeds"] == "0"


def test_the_page_holds_the_three_tables(runs):
    page = scoreboard.scoreboard_markdown(runs, library="lib-now")
    assert page.index("## The count") < page.index("## Every claim") < page.index(
        "## Where the numbers came from")
    assert "3 runs, 1 of them stale" in page
    assert "| ch05.b" in page
    assert "*(no runs yet)*" in scoreboard.scoreboard_markdown(runs / "none", library="x")


def test_every_thesis_table_lists_the_runs_that_set_it_beside_their_numbers(tmp_path):
    folder = _run(tmp_path, "demo", "ch05", [_claim("ch05.a", 1.0)])
    results = json.loads((folder / "results.json").read_text())
    results["thesis_tables"] = {"5.2": "| | thesis · R@1 | this run · R@1 | difference · R@1 |"}
    (folder / "results.json").write_text(json.dumps(results))
    _run(tmp_path, "smoke", "ch05", [_claim("ch05.a", 1.0)])
    text = scoreboard.thesis_tables_markdown(scoreboard.collect_runs(tmp_path))
    assert "### Table 5.2\n\nch05, demo profile:\n\n| | thesis · R@1" in text
    assert "### Table 5.3" not in text
    assert "Tables without a run beside them here" in text and "2.1, 2.2" in text
    page = scoreboard.scoreboard_markdown(tmp_path, library="lib-now")
    assert page.index("## Every claim") < page.index("## The thesis tables beside the runs")
