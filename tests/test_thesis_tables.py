"""The thesis tables load with the documented columns and hold the values quoted in the prose."""

import math

import pandas as pd
import pytest

from irbook.thesis_tables import available_tables, load_thesis_table

SCORES = ["oxford5k_map", "oxford105k_map", "paris6k_map", "paris106k_map"]
METHOD_COLUMNS = [
    "type", "method", "ref", "backbone", "output_layer", "feature_enhancement", "dim",
    "holidays_map", "ukbench_value", "ukbench_metric", *SCORES,
]
EXPECTED_COLUMNS = {
    "2.1": [
        "ref", "oxford5k_map", "oxford105k_map", "oxford5k_time_ms", "oxford105k_time_ms",
        "paris6k_map", "paris106k_map", "paris6k_time_ms", "paris106k_time_ms",
        "holidays_map", "holidays_time_ms", "ukbench_ns", "ukbench_time_ms", "note",
    ],
    "2.2": METHOD_COLUMNS,
    "2.3": METHOD_COLUMNS[:6] + ["loss"] + METHOD_COLUMNS[6:],
}
TEXT_COLUMNS = {
    "type", "method", "backbone", "output_layer", "feature_enhancement", "loss",
    "ukbench_metric", "note",
}


def value(table: str, method: str, column: str) -> float:
    frame = load_thesis_table(table)
    row = frame[frame["method"] == method]
    assert len(row) == 1, f"{method!r} should appear once in Table {table}"
    return float(row.iloc[0][column])


def test_all_tables_available_in_thesis_order():
    assert available_tables() == ["2.1", "2.2", "2.3"]


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_columns_and_numeric_types(table):
    frame = load_thesis_table(table)
    assert list(frame.columns) == EXPECTED_COLUMNS[table]
    assert len(frame) > 0
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            continue
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert pd.api.types.is_integer_dtype(frame["ref"])


@pytest.mark.parametrize("table", ["2.2", "2.3"])
def test_map_values_are_percentages_and_metric_is_named(table):
    frame = load_thesis_table(table)
    scores = frame[SCORES + ["holidays_map"]].to_numpy(dtype=float)
    present = scores[~pd.isna(scores)]
    assert ((present > 0) & (present <= 100)).all()
    has_ukb = frame["ukbench_value"].notna()
    assert (frame["ukbench_metric"].notna() == has_ukb).all()
    assert set(frame.loc[has_ukb, "ukbench_metric"]) <= {"N-S", "mAP"}
    ns = frame.loc[frame["ukbench_metric"] == "N-S", "ukbench_value"]
    assert ((ns >= 0) & (ns <= 4)).all()


def test_groups_follow_the_prose():
    off_the_shelf = load_thesis_table("2.2").set_index("method")["type"]
    fine_tuned = load_thesis_table("2.3").set_index("method")["type"]
    assert off_the_shelf.value_counts().to_dict() == {"multi_pass": 8, "single_pass": 6}
    assert fine_tuned.value_counts().to_dict() == {"supervised": 9, "unsupervised": 5}
    assert off_the_shelf["Deepindex"] == "multi_pass"
    assert fine_tuned["MoM"] == "unsupervised"


def test_values_quoted_in_the_thesis_prose():
    assert value("2.2", "R-MAC", "oxford5k_map") == 66.9
    assert value("2.2", "SPoC", "oxford5k_map") == 58.9
    assert value("2.2", "SPoC", "holidays_map") == 80.2
    assert value("2.2", "CroW", "holidays_map") == 85.1
    assert value("2.2", "Multi-layer CNN", "holidays_map") == 91.4
    assert value("2.2", "LDD", "paris6k_map") == 87.2
    assert value("2.3", "DELF", "oxford5k_map") == 83.8
    assert value("2.3", "Deep Retrieval", "paris6k_map") == 94.5
    assert value("2.3", "IME-CNN", "oxford5k_map") == 92.0


def test_misaligned_rows_read_in_the_right_columns():
    # R-MAC reports no Holidays / UKBench result, but Oxford and Paris with 100k distractors.
    assert math.isnan(value("2.2", "R-MAC", "holidays_map"))
    assert math.isnan(value("2.2", "R-MAC", "ukbench_value"))
    assert value("2.2", "R-MAC", "paris6k_map") == 83.0
    assert value("2.2", "R-MAC", "paris106k_map") == 75.7
    frame = load_thesis_table("2.2")
    multiscale = frame[frame["method"] == "Multi-scale CNN"].iloc[0]
    assert (multiscale["ukbench_value"], multiscale["ukbench_metric"]) == (95.1, "mAP")


def test_table_2_1_search_times():
    frame = load_thesis_table("2.1")
    song = frame[frame["ref"] == 153].iloc[0]
    assert (song["oxford105k_map"], song["oxford105k_time_ms"]) == (88.4, 809)
    assert frame.loc[frame["ref"] == 150, "oxford5k_time_ms"].tolist() == [20, 600]


def test_unknown_table_lists_available_ones():
    with pytest.raises(FileNotFoundError, match=r"2\.1, 2\.2, 2\.3"):
        load_thesis_table("9.9")


def test_malformed_table_name_is_rejected():
    with pytest.raises(ValueError, match="table"):
        load_thesis_table("Table 2.2")
