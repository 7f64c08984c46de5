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
    assert available_tables() == [
        "2.1", "2.2", "2.3",
        "3.1", "3.2", "3.3",
        "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8",
        "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.9", "5.10",
        "6.1", "6.2", "6.3",
        "7.1", "7.2", "7.3", "7.4", "7.5", "7.6",
        "8.2", "8.3", "8.4",
    ]


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


# Chapters 5 and 6: long (tidy) tables, one row per printed number.

LONG = ["dataset", "method", "setting", "step", "classes", "class_range", "metric", "value"]
LONG_COLUMNS = {
    **{t: LONG for t in ["5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.9", "5.10", "6.1", "6.2"]},
    "5.8": LONG + ["alpha", "beta"],
    "6.3": LONG + ["case", "loss"],
}
METHODS = {
    "initial model", "fine-tuning", "LwF", "EWC", "ALASSO", "L2 loss", "NCE_EWC", "MMD loss",
    "ours", "reference",
}
KEY = ["dataset", "method", "setting", "classes", "class_range", "metric"]


def cell(table: str, **where) -> float:
    """The one value of a long table matching every column=value given."""
    frame = load_thesis_table(table)
    for column, wanted in where.items():
        frame = frame[frame[column] == wanted]
    assert len(frame) == 1, f"{where} matches {len(frame)} rows of Table {table}"
    return float(frame.iloc[0]["value"])


def recall_row(table: str, method: str, setting: str, class_range: str) -> list[float]:
    return [
        cell(table, method=method, setting=setting, class_range=class_range, metric=m)
        for m in ("R@1", "R@2", "R@4")
    ]


@pytest.mark.parametrize("table", sorted(LONG_COLUMNS))
def test_long_tables_columns_types_and_vocabulary(table):
    frame = load_thesis_table(table)
    assert list(frame.columns) == LONG_COLUMNS[table]
    assert pd.api.types.is_float_dtype(frame["value"])
    assert frame["value"].between(0, 100, inclusive="right").all()
    assert str(frame["step"].dtype) == "Int64"
    assert (frame["step"].isna() == (frame["method"] == "reference")).all()
    assert set(frame["metric"]) <= {"R@1", "R@2", "R@4", "mAP", "accuracy"}
    assert set(frame["classes"]) <= {"old", "new", "average", "seen"}
    assert set(frame["dataset"]) <= {"CUB-200", "Stanford-Dogs", "CIFAR-100"}
    assert frame["class_range"].str.fullmatch(r"\d+-\d+").all()
    assert not frame.duplicated(KEY + LONG_COLUMNS[table][8:]).any()
    if table not in ("5.7", "6.3"):
        assert set(frame["method"]) <= METHODS


def test_table_5_1_split_sizes_add_up():
    frame = load_thesis_table("5.1")
    assert list(frame.columns) == ["dataset", "split", "classes", "images", "n_classes"]
    stats = {tuple(row[:3]): (row[3], row[4]) for row in frame.itertuples(index=False)}
    assert stats[("CUB-200", "train", "all")] == (7048, 200)
    assert stats[("CUB-200", "test", "all")] == (4740, 200)
    assert stats[("Stanford-Dogs", "test", "old")] == (4651, 60)
    for dataset in ("CUB-200", "Stanford-Dogs"):
        for split in ("train", "test"):
            old, new, total = (stats[(dataset, split, c)] for c in ("old", "new", "all"))
            assert (old[0] + new[0], old[1] + new[1]) == total


def test_chapter_5_one_step_values_quoted_in_the_prose():
    cub, dogs = "1-100 → 101-200", "1-60 → 61-120"
    assert cell("5.2", method="L2 loss", setting=cub, classes="old", metric="R@1") == 66.48
    assert cell("5.2", method="L2 loss", setting=cub, classes="new", metric="R@1") == 77.44
    assert cell("5.2", method="ours", setting=cub, classes="old", metric="R@1") == 74.41
    assert cell("5.2", method="ours", setting=cub, classes="new", metric="R@1") == 73.11
    assert cell("5.2", method="reference", classes="new", metric="R@1") == 76.64
    assert cell("5.3", method="initial model", classes="old", metric="R@1") == 80.67
    assert cell("5.3", method="ours", setting=dogs, classes="old", metric="R@1") == 76.67
    assert cell("5.3", method="ours", setting=dogs, classes="new", metric="R@1") == 81.88
    # "w feature extraction" = the initial model on the new classes, no other value there.
    assert recall_row("5.2", "initial model", "1-100", "101-200") == [47.02, 57.44, 67.86]
    assert cell("5.4", method="ours", setting="1-100 → 101-125", class_range="1-100",
                metric="R@1") == 76.65
    assert cell("5.5", method="ours", setting="1-60 → 61-65", class_range="1-60",
                metric="R@1") == 79.75
    assert cell("5.4", method="reference", setting="1-125 (joint)", classes="new",
                metric="R@1") == 79.25


def test_chapter_5_ablation_and_grid_repeat_table_5_2():
    setting = "1-100 → 101-200"
    same = {
        "L_ce + L_triplet": "fine-tuning",
        "L_ce + L_triplet + L_dist": "LwF",
        "L_ce + L_triplet + L_dist + L_mmd": "ours",
    }
    for rng in ("1-100", "101-200"):
        for ablation, method in same.items():
            assert recall_row("5.7", ablation, setting, rng) == recall_row(
                "5.2", method, setting, rng
            )
        grid = load_thesis_table("5.8")
        default = grid[(grid["alpha"] == 1) & (grid["beta"] == 1) & (grid["class_range"] == rng)]
        assert default.set_index("metric")["value"].tolist() == recall_row(
            "5.2", "ours", setting, rng
        )
    grid = load_thesis_table("5.8").dropna(subset=["alpha"])
    assert sorted(set(zip(grid["alpha"], grid["beta"], strict=True))) == [
        (a, b) for a in (0.1, 1.0) for b in (0.1, 1.0, 10.0)
    ]


def test_table_5_6_cifar_first_task_shared_and_ours_ahead():
    frame = load_thesis_table("5.6")
    wide = frame.pivot_table(index="step", columns="method", values="value")
    assert wide.loc[0].tolist() == [77.3] * 4
    assert (wide.loc[1:, "ours"] > wide.loc[1:].drop(columns="ours").max(axis=1)).all()
    assert wide.loc[4].to_dict() == {"EWC": 39.5, "L2 loss": 32.8, "LwF": 41.0, "ours": 43.3}
    assert frame.loc[frame["step"] == 4, "class_range"].unique().tolist() == ["1-100"]


def old_class_curve(table: str, method: str) -> list[float]:
    frame = load_thesis_table(table)
    old = "1-100" if table == "5.9" else "1-60"
    rows = frame[
        frame["method"].isin([method, "initial model"])
        & (frame["class_range"] == old)
        & (frame["metric"] == "R@1")
    ]
    return rows.sort_values("step")["value"].tolist()


def test_table_5_9_block_reading_matches_the_prose():
    l2 = old_class_curve("5.9", "L2 loss")
    ours = old_class_curve("5.9", "ours")
    assert l2 == [79.41, 67.37, 58.14, 53.86, 45.85]
    assert ours == [79.41, 76.65, 73.77, 70.47, 66.40]
    assert round((l2[0] - l2[-1]) / 4, 2) == 8.39
    assert round((ours[0] - ours[-1]) / 4, 2) == 3.25
    final = "1-100 → 101-125 → 126-150 → 151-175 → 176-200"
    assert recall_row("5.9", "ours", final, "176-200") == [85.21, 89.92, 93.28]
    assert recall_row("5.9", "reference", "1-200 (joint)", "176-200") == [83.70, 90.25, 93.78]
    # The first step of the chapter's method is the 25-class experiment of Table 5.4.
    for rng in ("1-100", "101-125"):
        assert recall_row("5.9", "ours", "1-100 → 101-125", rng) == recall_row(
            "5.4", "ours", "1-100 → 101-125", rng
        )


@pytest.mark.parametrize("table", ["5.9", "5.10"])
def test_sequential_tables_are_complete_triangles(table):
    frame = load_thesis_table(table)
    incremental = frame[~frame["method"].isin(["initial model", "reference"])]
    counts = incremental.groupby(["method", "step"]).size()
    assert set(incremental["method"]) == {"fine-tuning", "LwF", "EWC", "L2 loss", "ours"}
    for (method, step), n in counts.items():
        assert n == 3 * (step + 1), (method, step)
    assert (incremental.groupby(["method", "step"])["classes"]
            .apply(lambda c: (c == "new").sum() == 3).all())
    # After four steps the chapter's method keeps the most Recall@1 on the original classes.
    finals = {m: old_class_curve(table, m)[-1] for m in incremental["method"].unique()}
    assert max(finals, key=finals.get) == "ours"


def test_table_5_10_reference_matches_table_5_3():
    assert recall_row("5.10", "reference", "1-120 (joint)", "1-60") == recall_row(
        "5.3", "reference", "1-120 (joint)", "1-60"
    )
    assert old_class_curve("5.10", "ours") == [80.67, 76.07, 70.67, 67.75, 65.47]


@pytest.mark.parametrize("table", ["6.1", "6.2"])
def test_chapter_6_average_is_mean_of_old_and_new(table):
    wide = load_thesis_table(table).pivot_table(
        index="method", columns=["classes", "metric"], values="value"
    )
    assert len(wide) == 9
    for metric in ("R@1", "mAP"):
        mean = (wide[("old", metric)] + wide[("new", metric)]) / 2
        assert ((mean - wide[("average", metric)]).abs() <= 0.0051).all(), metric


def test_chapter_6_values_quoted_in_the_prose():
    def one(table, method, classes, metric):
        return cell(table, method=method, classes=classes, metric=metric)

    assert one("6.1", "initial model", "old", "mAP") == 55.78
    assert one("6.1", "initial model", "new", "mAP") == 19.54
    assert one("6.1", "fine-tuning", "old", "mAP") == 42.57
    assert one("6.1", "fine-tuning", "new", "mAP") == 48.90
    assert one("6.1", "L2 loss", "old", "R@1") == 75.93
    assert one("6.1", "L2 loss", "old", "mAP") == 50.23
    assert one("6.1", "initial model", "old", "R@1") == 79.24
    assert one("6.1", "ours", "old", "R@1") == 77.71
    assert one("6.1", "MMD loss", "old", "R@1") == 77.03
    assert one("6.2", "initial model", "old", "R@1") == 81.27
    assert one("6.2", "ours", "old", "R@1") == 79.92
    assert one("6.2", "MMD loss", "old", "R@1") == 79.49


def test_table_6_3_cases_quoted_in_the_prose():
    frame = load_thesis_table("6.3")
    assert frame["case"].unique().tolist() == ["a", "b", "c", "d"]
    assert (frame["setting"] == "1-100 → 101-125 → 126-150").all()
    assert (frame["step"] == 2).all()
    by_case = frame.set_index(["case", "classes", "metric"])["value"]
    assert by_case[("a", "new", "mAP")] == 52.45
    assert by_case[("a", "old", "mAP")] == 48.09
    assert by_case[("b", "old", "mAP")] == 50.71
    assert by_case[("b", "new", "R@1")] == 75.00
    assert by_case[("b", "new", "mAP")] == 50.87
    assert by_case[("c", "old", "R@1")] == 76.19
    assert by_case[("c", "new", "R@1")] == 76.33
    assert by_case[("a", "new", "R@1")] == 76.83
    # The prose quotes 76.91 for case (d); the table prints 76.61 (kept as printed).
    assert by_case[("d", "old", "R@1")] == 76.61


# Chapters 3 and 4: cross-modal tables, one row per printed number.

CROSS_MODAL = {
    "3.1": ["dataset", "method", "direction", "bits", "dim", "metric", "value"],
    "3.2": ["dataset", "method", "direction", "bits", "dim", "metric", "value"],
    "3.3": ["dataset", "method", "direction", "bits", "dim", "metric", "value"],
    "4.1": ["dataset", "method", "backbone", "direction", "metric", "value"],
    "4.2": ["dataset", "method", "backbone", "direction", "metric", "value"],
    "4.3": ["dataset", "method", "backbone", "direction", "metric", "value"],
    "4.4": ["dataset", "method", "backbone", "direction", "metric", "value"],
    "4.5": ["dataset", "tau", "backbone", "direction", "metric", "value"],
    "4.7": ["dataset", "sigma", "backbone", "direction", "metric", "value"],
    "4.8": ["dataset", "method", "backbone", "direction", "metric", "value"],
}


def xm(table: str, **where) -> float:
    return cell(table, **where)


@pytest.mark.parametrize("table", sorted(CROSS_MODAL))
def test_cross_modal_tables_columns_and_vocabulary(table):
    frame = load_thesis_table(table)
    assert list(frame.columns) == CROSS_MODAL[table]
    assert set(frame["direction"]) <= {"image-to-text", "text-to-image"}
    assert set(frame["metric"]) <= {"mAP", "R@1", "R@5", "R@10"}
    upper = 1.0 if table.startswith("3.") else 100.0
    assert frame["value"].between(0, upper, inclusive="right").all()
    keys = [c for c in frame.columns if c != "value"]
    assert not frame.duplicated(keys).any()


def test_chapter_3_values_quoted_in_the_prose():
    assert xm("3.1", dim=512, direction="text-to-image") == 0.859
    mir32 = dict(dataset="MIRFlickr-25K", bits=32)
    # "improved by 5.4% and 8.1% ... compared to SSAH" at 32 bits (relative gains)
    ours = xm("3.2", method="ours", direction="image-to-text", **mir32)
    ssah = xm("3.2", method="SSAH", direction="image-to-text", **mir32)
    assert round(100 * (ours - ssah) / ssah, 1) == 5.4
    ours_t = xm("3.2", method="ours", direction="text-to-image", **mir32)
    ssah_t = xm("3.2", method="SSAH", direction="text-to-image", **mir32)
    assert round(100 * (ours_t - ssah_t) / ssah_t, 1) == 8.1
    assert xm("3.3", method="ours", direction="image-to-text") == 0.834
    assert xm("3.3", method="baseline1", direction="text-to-image") == 0.792


def test_chapter_4_values_quoted_in_the_prose():
    assert xm("4.1", dataset="Flickr30K", method="ITMeetsAL", backbone="ResNet-152",
              direction="image-to-text", metric="R@1") == 56.5
    assert xm("4.1", dataset="MS-COCO 1K", method="ITMeetsAL", backbone="ResNet-152",
              direction="text-to-image", metric="R@1") == 48.3
    assert xm("4.1", dataset="Flickr30K", method="CMPM+CMPC", backbone="MobileNet",
              direction="image-to-text", metric="R@1") == 40.3
    assert xm("4.2", method="ITMeetsAL", backbone="ResNet-152", metric="R@1") == 55.72
    assert xm("4.3", method="Joint learning", metric="R@10") == 78.6
    assert xm("4.4", method="baseline2", direction="text-to-image", metric="R@1") == 32.5
    assert xm("4.5", tau=4, direction="image-to-text", metric="mAP") == 26.3
    assert xm("4.7", sigma=0.1, direction="text-to-image", metric="R@1") == 22.2
    assert xm("4.8", dataset="CUHK-PEDES", method="separate", metric="R@1") == 67.79
    complexity = load_thesis_table("4.6").set_index("backbone")
    assert complexity.loc["MobileNet", "params_million"] == 14.6
    assert complexity.loc["VGG", "flops"] == 3.1e10


def test_chapter_8_tables_hold_the_printed_numbers():
    captioning = load_thesis_table("8.2").set_index("method")
    assert len(captioning) == 18 and list(captioning.columns)[:3] == ["ref", "cider_c5",
                                                                       "cider_c40"]
    assert captioning.loc["SCST", "cider_c5"] == 114.7
    assert captioning.loc["SGAE", "bleu4_c40"] == 69.7
    assert math.isnan(captioning.loc["CGAN", "cider_c40"])  # printed "-"
    generation = load_thesis_table("8.3").set_index("method")
    assert generation.loc["StackGAN", "cub_is"] == 3.70
    assert generation.loc["StackGAN", "cub_is_std"] == 0.04
    assert generation.loc["Obj-GANs", "coco_fid"] == 25.85
    assert math.isnan(generation.loc["Obj-GANs", "coco_fid_std"])
    vqa = load_thesis_table("8.4").set_index("method")
    assert len(vqa) == 23 and vqa.loc["DCAF", "open_ended_test_std"] == 70.0
    assert vqa.loc["MCB", "mc_test_dev"] == 70.2 and vqa.loc["MCB", "ref"] == 335
    for frame in (captioning, generation, vqa.drop(columns="note")):
        assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns)


def test_beside_sets_thesis_run_and_difference_in_one_table():
    from irbook.report import Report
    from irbook.thesis_tables import beside

    thesis = pd.DataFrame({"R@1": [50.0, 40.0]}, index=["ours", "baseline"])
    ours = pd.DataFrame({"R@1": [42.5, 30.0], "R@5": [70.0, 60.0]}, index=["ours", "extra"])
    report = Report("ch02", {"profile": "demo"}, device="cpu")
    table = beside("9.9", thesis, ours, "demo", report)
    assert list(table.index) == ["ours", "baseline", "extra"]
    assert table.loc["ours", ("difference", "R@1")] == -7.5
    assert pd.isna(table.loc["baseline", ("difference", "R@1")])
    assert pd.isna(table.loc["ours", ("Table 9.9 (thesis)", "R@5")])
    assert "difference · R@1" in report.extra["thesis_tables"]["9.9"]
    stacked = beside("9.9", thesis, ours, "demo", layout="rows")
    assert list(stacked.loc["difference"].index) == ["ours"]
    with pytest.raises(ValueError, match="layout"):
        beside("9.9", thesis, ours, "demo", layout="diagonal")
