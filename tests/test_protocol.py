"""The table "protocol: thesis vs this run": every item given, every deviation explained."""

import pandas as pd
import pytest

from irbook import protocol

THESIS = ("item,thesis,source\nbackbone,VGG16,Table 2.2\nimage size,1024 px,Sec. 2\n"
          "metric,mAP,Sec. 3\n")


@pytest.fixture
def protocols(tmp_path, monkeypatch):
    """A protocols folder holding ``toy.csv`` (three items)."""
    (tmp_path / "toy.csv").write_text(THESIS)
    monkeypatch.setattr(protocol, "PROTOCOLS_DIR", tmp_path)
    return tmp_path


RUN = {"backbone": "smallcnn", "image size": "1024 px", "metric": "mAP"}


def test_table_lists_every_item_in_file_order_with_the_reason_of_each_deviation(protocols):
    table = protocol.protocol_table("toy", RUN, {"backbone": "CPU only"})
    assert list(table.columns) == ["item", "thesis", "this run", "deviation"]
    assert table["item"].tolist() == ["backbone", "image size", "metric"]
    assert table["thesis"].tolist() == ["VGG16", "1024 px", "mAP"]
    assert table["this run"].tolist() == ["smallcnn", "1024 px", "mAP"]
    assert table["deviation"].tolist() == ["CPU only", "", ""]


def test_values_equal_up_to_case_and_spacing_are_no_deviation(protocols):
    run = {**RUN, "backbone": "  vgg16 ", "image size": "1024   PX"}
    table = protocol.protocol_table("toy", run, {"backbone": "never shown"})
    assert (table["deviation"] == "").all()
    assert protocol.deviations(table) == []


def test_a_missing_item_is_refused_with_its_name(protocols):
    run = {k: v for k, v in RUN.items() if k != "metric"}
    with pytest.raises(ValueError, match=r"toy: run protocol items do not match .*toy\.csv: "
                                         r"missing \['metric'\], unknown \[\]"):
        protocol.protocol_table("toy", run, {"backbone": "CPU only"})


def test_an_unknown_item_is_refused_with_its_name(protocols):
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['colour'\]"):
        protocol.protocol_table("toy", {**RUN, "colour": "red"}, {"backbone": "CPU only"})


@pytest.mark.parametrize("reasons", [{}, {"backbone": ""}, {"metric": "wrong item"}])
def test_a_deviation_without_a_reason_is_refused(protocols, reasons):
    with pytest.raises(ValueError, match=r"toy: protocol item 'backbone' differs from the "
                                         r"thesis \('smallcnn' vs 'VGG16'\) and no reason"):
        protocol.protocol_table("toy", RUN, reasons)


def test_deviations_are_exactly_the_differing_rows(protocols):
    run = {**RUN, "metric": "N-S"}
    table = protocol.protocol_table("toy", run, {"backbone": "CPU only", "metric": "UKBench",
                                                 "image size": "unused"})
    assert protocol.deviations(table) == [
        {"item": "backbone", "thesis": "VGG16", "run": "smallcnn", "reason": "CPU only"},
        {"item": "metric", "thesis": "mAP", "run": "N-S", "reason": "UKBench"},
    ]


def test_deviations_of_a_hand_made_table():
    table = pd.DataFrame({"item": ["a", "b"], "thesis": ["1", "2"], "this run": ["1", "3"],
                          "deviation": ["", "why"]})
    assert protocol.deviations(table) == [{"item": "b", "thesis": "2", "run": "3",
                                           "reason": "why"}]


def test_an_unknown_chapter_names_the_missing_file(protocols):
    with pytest.raises(FileNotFoundError, match=r"no thesis protocol for 'ch99'.*ch99\.csv"):
        protocol.load_thesis_protocol("ch99")


@pytest.mark.parametrize("chapter", ["ch02", "ch03", "ch04", "ch05", "ch06", "ch07"])
def test_the_thesis_files_have_unique_non_empty_items(chapter):
    thesis = protocol.load_thesis_protocol(chapter)
    assert list(thesis.columns) == ["item", "thesis", "source"]
    assert thesis["item"].is_unique
    assert (thesis[["item", "thesis", "source"]] != "").all().all()
