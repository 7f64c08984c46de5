"""Chapter 8: the survey's figures as data, the book's own points on them, the generated
protocol table, parameter validation and the claims of a smoke run."""

import json

import pandas as pd
import pytest
from matplotlib.figure import Figure

from irbook import viz
from irbook.chapters import ch08
from irbook.params import ParameterError
from irbook.runner import chapter_run_dir
from irbook.thesis_tables import available_figures, load_figure_data, load_thesis_table


def test_figure_8_4_holds_every_r1_of_table_4_1_with_a_year():
    progress = load_figure_data("8.4")
    table = load_thesis_table("4.1")
    r1 = table[(table.metric == "R@1")].dropna(subset=["value"])
    assert len(progress) == len(r1)
    assert progress.value.tolist() == r1.value.tolist()
    assert progress.year.between(2013, 2021).all()
    mine = progress[progress.method == "ITMeetsAL"]
    assert set(mine.year) == {2021} and set(mine.ref) == {35}


def test_figure_8_5_keeps_the_32_bit_codes_of_table_3_2():
    progress = ch08.progress("8.5")
    assert set(progress.bits) == {32} and set(progress.method) == {"DCMH", "SSAH",
                                                                   "Chapter 3 (ours)"}
    assert "8.5" in available_figures()
    with pytest.raises(FileNotFoundError, match="available: 8.4, 8.5"):
        load_figure_data("8.9")


def _fake_run(root, profile, chapter, metrics):
    folder = root / profile / chapter
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(
        {"chapter": chapter, "profile": profile, "params": {"synthetic": True},
         "metrics": metrics}))


def test_book_points_take_the_latest_chapter_runs_of_the_same_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("IRBOOK_RUNS", str(tmp_path))
    _fake_run(tmp_path, "smoke", "ch04", {"f30k_ours_i2t_r1": 1.0, "f30k_ours_t2i_r1": 2.0,
                                          "coco_ours_i2t_r1": "not run"})
    _fake_run(tmp_path, "demo", "ch04", {"f30k_ours_i2t_r1": 11.0, "f30k_ours_t2i_r1": 12.0,
                                         "coco_ours_i2t_r1": 13.0})

    class Run:
        profile = "smoke"

    points = ch08.book_points(Run(), "8.4")
    assert points.value.tolist() == [1.0, 2.0]  # "not run" is not a number
    assert points.label.iloc[0] == "book ch04 (smoke, synthetic)"
    assert ch08.book_points(Run(), "8.5").empty


def test_progress_and_survey_plots_draw():
    marks = pd.DataFrame({"panel": ["Flickr30K · image-to-text"], "value": [30.0],
                          "label": ["book"]})
    assert isinstance(viz.plot_progress(ch08.progress("8.4"), "value", "panel", marks),
                      Figure)
    bars = ch08.survey_table("8.2", "cider_c5", {"this run": 20.0})
    assert bars.method.iloc[-1] == "this run"
    assert isinstance(viz.plot_survey_bars(bars, "cider_c5", highlight=["this run"]), Figure)


def test_protocol_table_names_every_departure_with_a_reason():
    table = ch08.protocol_table(ch08.CHAPTER.resolve("demo"))
    assert len(table) == 10
    differing = table[table["this run"] != table["thesis"]]
    assert (differing["deviation"] != "").all()


@pytest.mark.parametrize("name, value, allowed", [("ae_image_size", 12, "16, 32, 64, 128"),
                                                   ("hops", 1, "2"),
                                                   ("lr", float("nan"), "lr")])
def test_bad_parameters_are_refused_by_name(name, value, allowed):
    with pytest.raises(ParameterError, match=name) as error:
        ch08.CHAPTER.resolve("smoke", {name: value})
    assert allowed in str(error.value)


def test_smoke_run_checks_the_four_claims(smoke_runs):
    folder = chapter_run_dir("ch08", "smoke", smoke_runs)
    results = json.loads((folder / "results.json").read_text())
    claims = {c["id"]: c for c in results["claims"]}
    assert set(claims) == {"ch08.attention_beats_global",
                           "ch08.verification_beats_reconstruction",
                           "ch08.attention_captions_better", "ch08.multi_hop_more_accurate"}
    assert all(c["verdict"] in ("supported", "not supported", "inconclusive")
               for c in claims.values())
    assert len(claims["ch08.attention_captions_better"]["comparisons"]) == 2
    assert {"rsum_global", "cider_attention"} <= set(results["metrics"])
