"""Chapter-5 helpers: method plans, claim checks on hand-made tables, Table 5.6 and PR areas."""

import numpy as np
import pandas as pd
import pytest

from irbook.chapters import CH05
from irbook.data.errors import DatasetNotFoundError
from irbook.incremental import chapter5 as ch5
from irbook.incremental import experiments as ex
from irbook.incremental.methods import METHODS


def old_new(rows):
    """An old_new_table from {method: (old R@1, new R@1)}."""
    return pd.DataFrame([dict(method=m, classes=c, metric="R@1", value=v)
                         for m, (old, new) in rows.items()
                         for c, v in (("old", old), ("new", new), ("average", (old + new) / 2))])


THESIS_LIKE = old_new({"initial model": (79.4, 47.0), "fine-tuning": (53.9, 76.2),
                       "LwF": (54.9, 75.8), "EWC": (62.0, 75.3), "ALASSO": (56.9, 75.0),
                       "L2 loss": (66.5, 77.4), "ours": (74.4, 73.1)})


def test_every_plan_names_existing_methods():
    for specs in (ch5.one_step_specs(), ch5.ablation_specs(), ch5.weight_grid_specs(),
                  ch5.sequential_specs(), ch5.classification_specs()):
        assert all(name in METHODS for name, _ in specs.values())
    assert list(ch5.classification_specs()) == ["L2 loss", "EWC", "LwF", "ours"]
    assert ch5.new_class_counts(100) == [25, 100] and ch5.new_class_counts(2) == [1, 2]


def test_one_step_claims_hold_on_the_thesis_numbers():
    assert ch5.check_finetuning_forgets(THESIS_LIKE)[0]
    assert ch5.check_ours_keeps_old(THESIS_LIKE)[0]
    assert ch5.check_new_close(THESIS_LIKE)[0]
    assert ch5.check_learning_new_helps(THESIS_LIKE)[0]


def test_one_step_claims_fail_when_the_ordering_breaks():
    broken = old_new({"initial model": (60.0, 70.0), "fine-tuning": (59.5, 80.0),
                      "EWC": (70.0, 75.0), "ours": (65.0, 60.0)})
    assert not ch5.check_finetuning_forgets(broken)[0]  # within the 1-point margin
    holds, detail = ch5.check_ours_keeps_old(broken)
    assert not holds and "EWC 70.0" in detail
    assert not ch5.check_new_close(broken)[0]  # 20 points behind fine-tuning
    assert not ch5.check_learning_new_helps(broken)[0]  # ours below the initial model


def test_beta_tradeoff_reads_the_grid_labels():
    grid = old_new({"α=1, β=0.1": (56.0, 77.0), "α=1, β=10": (80.0, 49.0)})
    assert ch5.check_beta_tradeoff(grid)[0]
    grid = old_new({"α=1, β=0.1": (56.0, 77.0), "α=1, β=10": (80.0, 78.0)})
    assert not ch5.check_beta_tradeoff(grid)[0]


def test_sequential_and_more_classes_claims():
    curve = pd.DataFrame(dict(method=["ours", "ours", "L2 loss", "L2 loss"],
                              after_task=[0, 1, 0, 1], value=[80.0, 70.0, 80.0, 60.0],
                              dataset="cub200"))
    assert ch5.check_sequential_best(curve)[0]
    np.testing.assert_allclose(ch5.mean_drop_per_step(curve), [10.0, 20.0])
    dogs = curve.assign(dataset="dogs", value=[80.0, 50.0, 80.0, 60.0])
    holds, detail = ch5.check_sequential_best(pd.concat([curve, dogs]))
    assert not holds and detail.startswith("cub200: ours 70.0") and "dogs: ours 50.0" in detail
    counts = pd.DataFrame(dict(method=["fine-tuning"] * 4, new_classes=[25, 100, 5, 60],
                               old_r1=[70.0, 54.0, 80.0, 70.0],
                               dataset=["cub200", "cub200", "dogs", "dogs"]))
    assert ch5.check_more_classes_more_forgetting(counts)[0]
    counts.loc[3, "old_r1"] = 85.0
    assert not ch5.check_more_classes_more_forgetting(counts)[0]


def test_classification_claim_compares_the_last_task_only():
    seen = pd.DataFrame(dict(method=["ours", "ours", "LwF", "LwF", "EWC", "EWC"],
                             after_task=[0, 4] * 3, value=[77.3, 43.3, 77.3, 41.0, 77.3, 39.5]))
    holds, detail = ch5.check_classification_best(seen)
    assert holds and "LwF 41.0" in detail
    seen.loc[3, "value"] = 50.0
    assert not ch5.check_classification_best(seen)[0]


def test_pr_area_is_the_trapezoid_under_precision_over_recall():
    curves = pd.DataFrame(dict(method="ours", classes="old", recall=[0.0, 50.0, 100.0],
                               precision=[100.0, 100.0, 50.0]))
    # trapezoids over recall fractions: 0.5 * 100 + 0.5 * (100 + 50) / 2 = 87.5
    assert ch5.pr_area(curves)[("ours", "old")] == pytest.approx(87.5)
    rival = curves.assign(method="fine-tuning", precision=[100.0, 50.0, 25.0])
    holds, detail = ch5.check_pr_above(pd.concat([curves, rival]))
    assert holds and "87.5" in detail


def test_tracking_interval_gives_about_ten_points_per_stage():
    assert [ex.tracking_interval(e) for e in (1, 5, 10, 800)] == [1, 1, 1, 80]


def test_classification_runs_at_cifar_size_for_the_small_network():
    params = CH05.resolve("smoke")
    assert ch5.classification_config(params).image_size == 32
    full = CH05.resolve("full")
    assert ch5.classification_config(full).image_size == full["image_size"]


def test_preflight_names_the_missing_cifar_folder(tmp_path):
    (tmp_path / "CUB_200_2011").mkdir()
    (tmp_path / "StanfordDogs").mkdir()
    params = CH05.resolve("smoke", {"synthetic": False, "data_root": str(tmp_path)})
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        ch5.preflight(params)
    ch5.preflight({**params, "experiments": "main"})  # CIFAR-100 is not needed then


def test_thesis_pivot_reads_a_table_and_filters_rows():
    grid = ex.thesis_pivot("5.8", index=["alpha", "beta"], columns="classes", method="ours")
    assert grid.loc[(1.0, 1.0), "old"] == pytest.approx(74.41)
    assert grid.loc[(0.1, 10.0), "new"] == pytest.approx(49.50)
    curve = ex.thesis_pivot("5.9", index="method", columns="step", classes="old",
                            class_range="1-100")
    assert curve.loc["fine-tuning", 4] == pytest.approx(35.68)
    with pytest.raises(ValueError, match="'colour' is not a column"):
        ex.thesis_pivot("5.9", index="method", columns="step", colour="red")


def test_experiment_datasets_is_the_first_or_all():
    params = {"dataset": "both", "experiment_datasets": "first"}
    assert ex.experiment_datasets(params) == ["cub200"]
    assert ex.experiment_datasets({**params, "experiment_datasets": "all"}) == ["cub200", "dogs"]


def test_thesis_tasks_scale_the_five_cifar_tasks():
    split = type("Split", (), {"name": "cifar100", "n_classes": 40})()
    assert [len(t) for t in ex.thesis_tasks(split)] == [8, 8, 8, 8, 8]


def test_split_counts_follow_the_layout_of_table_5_1():
    from irbook.data.finegrained import ClassSplit, LabelledSet

    train = LabelledSet(np.zeros((7, 2, 2, 3), np.uint8), np.array([0, 0, 1, 2, 2, 2, 3]))
    test = LabelledSet(np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 2, 3]))
    split = ClassSplit("tiny", list("abcd"), train, test, "thesis")
    counts = ex.split_counts(split, [np.array([0, 1]), np.array([2]), np.array([3])])
    table = counts.set_index(["split", "classes"])
    assert table.loc[("train", "old"), "images"] == 3 and table.loc[("train", "new"), "images"] == 4
    assert table.loc[("test", "all"), "images"] == 4
    assert table.loc[("test", "new"), "n_classes"] == 2
