"""Shared steps of chapters 5-6: schedules, tables over seeds, thesis tables, evidence."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from planted import NAN, OFFSETS, planted

from irbook.claims import Evidence
from irbook.data.errors import DatasetNotFoundError
from irbook.data.finegrained import ClassSplit, LabelledSet
from irbook.data.synth.finegrained import ensure_finegrained
from irbook.data.tasks import incremental_schedule
from irbook.incremental import experiments as ex
from irbook.incremental.runner import IncrementalConfig
from irbook.metrics import forgetting_curve

TWO = [np.arange(4), np.arange(4, 8)]
THREE = [np.arange(4), np.arange(4, 6), np.arange(6, 8)]
R1 = [[80, NAN, NAN], [70, 60, NAN], [65, 55, 75]]


# --- schedules -------------------------------------------------------------------------------

def sizes(tasks):
    return [len(t) for t in tasks]


def test_incremental_schedule_gives_the_thesis_schedules():
    cub = incremental_schedule(200, 4, 0.5)
    assert sizes(cub) == [100, 25, 25, 25, 25]
    assert cub[1][0] == 100 and cub[-1][-1] == 199
    assert np.array_equal(np.concatenate(cub), np.arange(200))
    assert sizes(incremental_schedule(120, 4, 0.5)) == [60, 15, 15, 15, 15]
    assert sizes(incremental_schedule(100, 4, 0.2)) == [20] * 5
    assert sizes(incremental_schedule(200, 10, 0.5)) == [100] + [10] * 10
    assert sizes(incremental_schedule(16, 3, 0.5)) == [8, 3, 3, 2]
    assert sizes(incremental_schedule(200, None, 0.5)) == [100, 100]


@pytest.mark.parametrize("n_groups, message", [
    (0, "n_groups must be an integer >= 1"), (2.0, "n_groups must be an integer >= 1"),
    (True, "n_groups must be an integer >= 1"), (9, "n_groups must be from 1 to 8")])
def test_incremental_schedule_refuses_bad_group_counts(n_groups, message):
    with pytest.raises(ValueError, match=message):
        incremental_schedule(16, n_groups, 0.5)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_incremental_schedule_refuses_bad_old_fractions(fraction):
    with pytest.raises(ValueError, match="old_fraction must lie strictly between 0 and 1"):
        incremental_schedule(10, None, fraction)


SPLITS = {name: SimpleNamespace(name=name, n_classes=n)
          for name, n in (("cub200", 200), ("dogs", 120), ("cifar100", 100))}


def test_one_step_and_group_tasks_use_each_dataset_s_share_of_old_classes():
    assert sizes(ex.one_step_tasks(SPLITS["cub200"])) == [100, 100]
    assert sizes(ex.one_step_tasks(SPLITS["dogs"])) == [60, 60]
    assert sizes(ex.one_step_tasks(SPLITS["cifar100"])) == [20, 80]
    fewer = ex.one_step_tasks(SPLITS["cub200"], 25)
    assert fewer[1].tolist() == list(range(100, 125))
    assert sizes(ex.group_tasks(SPLITS["cub200"], 4)) == [100, 25, 25, 25, 25]
    assert sizes(ex.group_tasks(SPLITS["dogs"], 4)) == [60, 15, 15, 15, 15]
    assert sizes(ex.group_tasks(SPLITS["cifar100"], 4)) == [20] * 5
    with pytest.raises(ValueError, match="n_groups must be from 1 to 60"):
        ex.group_tasks(SPLITS["dogs"], 61)
    with pytest.raises(ValueError, match="name must be one of"):
        ex.group_tasks(SimpleNamespace(name="cars196", n_classes=196), 4)


def test_small_helpers():
    assert ex.class_range(np.arange(100, 125)) == "101-125"
    assert [ex.tracking_interval(e) for e in (1, 5, 10, 800)] == [1, 1, 1, 80]
    assert ex.datasets_of("both") == ["cub200", "dogs"] and ex.datasets_of("dogs") == ["dogs"]
    params = {"dataset": "both", "experiment_datasets": "first"}
    assert ex.experiment_datasets(params) == ["cub200"]
    assert ex.experiment_datasets({**params, "experiment_datasets": "all"}) == ["cub200", "dogs"]


def test_scaled_stages_shrink_the_incremental_epochs_only_with_fixed_batches():
    config = IncrementalConfig(epochs_first=10, epochs_incremental=6, device="cpu")
    assert ex.scaled_stages(config, 1 / 4, batches_fixed=False) is config
    quarter = ex.scaled_stages(config, 1 / 4, batches_fixed=True)
    assert quarter.epochs_incremental == 2 and quarter.epochs_first == 10  # round(1.5)
    assert ex.scaled_stages(config, 1 / 10, batches_fixed=True).epochs_incremental == 1
    assert config.epochs_incremental == 6


def test_split_counts_follow_the_layout_of_table_5_1():
    train = LabelledSet(np.zeros((7, 2, 2, 3), np.uint8), np.array([0, 0, 1, 2, 2, 2, 3]))
    test = LabelledSet(np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 2, 3]))
    split = ClassSplit("tiny", list("abcd"), train, test, "thesis")
    table = ex.split_counts(split, [np.array([0, 1]), np.array([2]), np.array([3])])
    table = table.set_index(["split", "classes"])
    assert table.loc[("train", "old"), "images"] == 3
    assert table.loc[("train", "new"), "images"] == 4
    assert table.loc[("test", "all"), "images"] == 4
    assert table.loc[("test", "new"), "n_classes"] == 2


# --- tables ----------------------------------------------------------------------------------

def test_mean_over_seeds_averages_each_row_in_the_first_seed_s_order():
    def table(results):
        return pd.DataFrame(dict(method=["b", "a"], metric="R@1", value=results))

    mean = ex.mean_over_seeds({0: [10.0, 1.0], 5: [20.0, 3.0]}, table)
    assert mean.method.tolist() == ["b", "a"]
    assert mean.value.tolist() == pytest.approx([15.0, 2.0])


def one_step_results():
    initial_new = {"R@1": np.array([NAN, 40.0]), "mAP": np.array([NAN, 20.0])}
    return {label: planted(TWO, {"R@1": [[80, NAN], [old, new]],
                                 "mAP": [[60, NAN], [old - 20, new - 20]]}, initial_new)
            for label, (old, new) in {"fine-tuning": (50, 78), "ours": (74, 70)}.items()}


def test_old_new_table_starts_with_the_initial_model():
    table = ex.old_new_table(one_step_results())
    assert list(table.columns) == ["method", "classes", "metric", "value"]
    assert table.method.unique().tolist() == ["initial model", "fine-tuning", "ours"]
    assert ex.value(table, "initial model", "old") == 80
    assert ex.value(table, "initial model", "new") == 40
    assert ex.value(table, "initial model", "average", "mAP") == pytest.approx(40)
    assert ex.value(table, "ours", "new", "mAP") == 50
    assert ex.value(table, "fine-tuning", "average") == pytest.approx(64)
    bare = ex.old_new_table(one_step_results(), ("R@1",), initial=False)
    assert bare.method.unique().tolist() == ["fine-tuning", "ours"]
    with pytest.raises(KeyError, match="no R@4 for 'ours' on old"):
        ex.value(table, "ours", "old", "R@4")


def test_group_and_first_task_tables_read_the_accuracy_matrix():
    results = {"x": planted(THREE, {"R@1": R1})}
    groups = ex.group_table(results)
    final = groups[groups.after_task == 2]
    assert final.value.tolist() == [65, 55, 75]
    assert final.classes.tolist() == ["1-4", "5-6", "7-8"]
    assert len(groups) == 6
    assert ex.first_task_curve(results).value.tolist() == [80, 70, 65]


def test_forgetting_table_gives_eq_6_12_and_the_average_accuracy():
    table = ex.forgetting_table({"x": planted(THREE, {"R@1": R1})})
    forgetting = table[table.measure == "forgetting"].value.tolist()
    average = table[table.measure == "average accuracy"].value.tolist()
    # after 1: 80 - 70; after 2: ((80 - 65) + (60 - 55)) / 2
    assert forgetting == pytest.approx([10.0, 10.0])
    assert forgetting == pytest.approx(forgetting_curve(np.array(R1))[1:].tolist())
    assert average == pytest.approx([65.0, 65.0])
    assert table.after_task.tolist() == [1, 1, 2, 2]


# --- thesis tables ---------------------------------------------------------------------------

def test_thesis_pivot_reads_a_table_and_filters_rows():
    grid = ex.thesis_pivot("5.8", index=["alpha", "beta"], columns="classes", method="ours")
    assert grid.loc[(1.0, 1.0), "old"] == pytest.approx(74.41)
    assert grid.loc[(0.1, 10.0), "new"] == pytest.approx(49.50)
    curve = ex.thesis_pivot("5.9", index="method", columns="step", classes="old",
                            class_range="1-100")
    assert curve.loc["fine-tuning", 4] == pytest.approx(35.68)
    every = ex.thesis_pivot("6.1", index="method", columns=["metric", "classes"], metric=None,
                            dataset="CUB-200")
    assert every.loc["ours", ("mAP", "old")] == pytest.approx(52.25)
    with pytest.raises(ValueError, match="'colour' is not a column"):
        ex.thesis_pivot("5.9", index="method", columns="step", colour="red")


def test_thesis_beside_sets_the_thesis_table_next_to_the_run():
    run = pd.DataFrame([dict(dataset="cub200", method="ours", classes=c, metric="R@1", value=v)
                        for c, v in (("old", 41.0), ("new", 23.0), ("average", 32.0))])
    side = ex.thesis_beside(run, {"cub200": "6.1"}, "demo")["cub200"]
    thesis, mine = side["Table 6.1 (thesis)"], side["this run (demo)"]
    assert thesis.loc["ours", ("R@1", "old")] == pytest.approx(77.7)
    assert thesis.loc["fine-tuning", ("R@1", "old")] == pytest.approx(70.2)
    assert ("mAP", "old") in thesis.columns
    assert mine.loc["ours", ("R@1", "old")] == pytest.approx(41.0)
    assert np.isnan(mine.loc["fine-tuning", ("R@1", "old")])


# --- evidence --------------------------------------------------------------------------------

def test_add_finite_drops_nan_queries():
    evidence = Evidence(0)
    ex.add_finite(evidence, "x", [1.0, NAN, 3.0], "q")
    assert evidence.values("x").tolist() == [1.0, 3.0]
    assert evidence.query_set("x") == "q"


def test_add_old_new_names_every_final_and_initial_evaluation():
    results = one_step_results()
    evidence = Evidence(0)
    ex.add_old_new(evidence, "p", results, ("R@1", "mAP"))
    assert set(evidence.names) == {f"p/{label}/{subset}/{metric}"
                                   for label in ("initial model", "fine-tuning", "ours")
                                   for subset in ("old", "new") for metric in ("R@1", "mAP")}
    assert evidence.mean("p/initial model/new/R@1") == pytest.approx(40.0)  # before task 1
    assert evidence.mean("p/ours/old/mAP") == pytest.approx(54.0)
    ours = results["ours"]
    assert evidence.query_set("p/initial model/new/R@1") == ours.query_set(subset="new")
    assert evidence.query_set("p/ours/old/R@1") == ours.query_set(task=0)
    bare = Evidence(0)
    ex.add_old_new(bare, "p", results, initial=False)
    assert not any("initial" in name for name in bare.names)


def test_add_after_reads_one_task_after_the_last_or_a_given_step():
    results = {"x": planted(THREE, {"R@1": R1})}
    evidence = Evidence(0)
    ex.add_after(evidence, "seq", results, task=0)
    ex.add_after(evidence, "one", results, task=1, after_task=1)
    assert evidence.mean("seq/x/task0/R@1") == pytest.approx(65.0)
    assert evidence.mean("one/x/task1/R@1") == pytest.approx(60.0)
    assert evidence.values("seq/x/task0/R@1").tolist() == (65 + OFFSETS).tolist()


# --- real data -------------------------------------------------------------------------------

def test_real_data_is_read_from_the_official_folders_under_the_root(tmp_path):
    ensure_finegrained(tmp_path, "cub200", seed=0, scale="smoke")
    params = {"backbone": "smallcnn", "pretrained": True, "synthetic": False,
              "data_root": str(tmp_path), "dataset": "cub200"}
    ex.preflight(params)
    split = ex.open_split("cub200", synthetic=False, root=str(tmp_path), seed=0, profile="full")
    assert split.name == "cub200" and split.n_classes >= 4 and len(split.test) > 0
    with pytest.raises(DatasetNotFoundError, match="StanfordDogs"):
        ex.preflight({**params, "dataset": "both"})


@pytest.mark.parametrize("chapter", ["ch05", "ch06", "ch07"])
def test_num_workers_and_precision_are_chapter_parameters_checked_before_any_work(chapter):
    from irbook.chapters import get_chapter
    from irbook.params import ParameterError

    spec = get_chapter(chapter)
    assert spec.resolve("full")["num_workers"] == 8
    assert spec.resolve("smoke")["num_workers"] == 0
    assert spec.resolve("demo")["precision"] == "fp32"
    assert spec.resolve("smoke", {"precision": "bf16"})["precision"] == "bf16"
    with pytest.raises(ParameterError,
                       match="'precision' got 'fp16'; allowed: one of 'fp32', 'bf16'"):
        spec.resolve("smoke", {"precision": "fp16"})
    with pytest.raises(ParameterError, match="num_workers"):
        spec.resolve("smoke", {"num_workers": -1})
    with pytest.raises(ParameterError, match="num_workers"):
        spec.resolve("smoke", {"num_workers": float("nan")})


def test_the_loading_parameters_reach_the_training_configuration_and_the_protocol_table():
    from irbook.chapters import ch05, ch07

    params = ch05.CHAPTER.resolve("smoke", {"num_workers": 3, "precision": "bf16"})
    config = ex.make_config(params, "ch05")
    assert (config.num_workers, config.precision) == (3, "bf16")
    table = ch05.protocol_table(params).set_index("item")
    assert table.loc["arithmetic", "this run"].startswith("bf16 autocast")
    assert table.loc["arithmetic", "deviation"] == "set by the precision parameter"
    plain = ch07.protocol_table(ch07.CHAPTER.resolve("smoke")).set_index("item")
    assert plain.loc["arithmetic", "this run"] == "fp32"
    assert plain.loc["arithmetic", "deviation"] == ""
