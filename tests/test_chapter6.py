"""Chapter-6 helpers: method variants, schedules, tables, Gram matrices, galleries, claims."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from irbook.data.finegrained import LabelledSet
from irbook.incremental import chapter6 as ch6
from irbook.incremental.methods import Correlation, CorrelationFE, Finetune, TaskContext


class FakeResult:
    """The parts of IncrementalResult the helpers read: tasks, matrix(metric), before."""

    def __init__(self, tasks, matrices, before=None):
        self.tasks = [np.asarray(t) for t in tasks]
        self._matrices = {k: np.asarray(v, dtype=float) for k, v in matrices.items()}
        self.before = pd.DataFrame(before or [], columns=["task", "metric", "value"])

    def matrix(self, metric="R@1"):
        return self._matrices[metric]


NAN = float("nan")


# --------------------------------------------------------------------------- methods


def test_build_method_replaces_only_the_metric_loss_and_records_it():
    pair = ch6.build_method("finetune", "pair")
    assert isinstance(pair, Finetune) and pair.metric_loss == "pair"
    assert pair.name == "finetune" and Finetune.metric_loss == "triplet"
    assert pair.hparams["metric_loss"] == "pair"
    own = ch6.build_method("finetune")
    assert own.metric_loss == "triplet" and "metric_loss" not in own.hparams
    corr = ch6.build_method("corr", "pair")  # already the pair loss: nothing to record
    assert isinstance(corr, Correlation) and "metric_loss" not in corr.hparams
    assert ch6.build_method("corr", "triplet").hparams["metric_loss"] == "triplet"


def test_build_method_refuses_unknown_names_losses_and_hyper_parameters():
    with pytest.raises(ValueError, match="method must be one of .*corr_boost"):
        ch6.build_method("sgd")
    with pytest.raises(ValueError, match="metric_loss must be one of"):
        ch6.build_method("finetune", "contrastive")
    with pytest.raises(ValueError, match="no hyper-parameter weight"):
        ch6.build_method("corr", weight=3.0)


def test_method_specs_pass_corr_weight_only_where_accepted():
    specs = ch6.method_specs({"fine-tuning": "finetune", "ours": "corr_fe",
                              "b": "corr_boost"}, 7)
    assert specs == {"fine-tuning": ("finetune", {}), "ours": ("corr_fe", {"corr_weight": 7.0}),
                     "b": ("corr_boost", {"corr_weight": 7.0})}


class FixedTeacher(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward_with_logits(self, images):
        return self.features, None


def test_boosted_correlation_weighs_the_kept_model_like_eq_6_11_in_total():
    boosted = ch6.build_method("corr_boost", corr_weight=1.0)
    assert [boosted.teacher_weights(SimpleNamespace(task=t))[0] for t in (1, 2, 3)] == \
        pytest.approx([1.0, 2.0, 1.6])
    torch.manual_seed(0)
    student = nn.functional.normalize(torch.randn(6, 4), dim=1)
    teacher = nn.functional.normalize(torch.randn(6, 4), dim=1)
    ctx = TaskContext(task=2, tasks=[np.arange(2)] * 3, margin=0.1, device=torch.device("cpu"),
                      teacher=FixedTeacher(teacher))
    plain = Correlation(corr_weight=1.0).stability(None, None, student, None, ctx)[0]
    assert boosted.stability(None, None, student, None, ctx)[0] == pytest.approx(2 * plain)


def test_ablation_cases_name_existing_methods():
    for name in ch6.ABLATION_CASES.values():
        ch6.build_method(name)
    assert ch6.ABLATION_CASES["(c) with feature estimation"] == CorrelationFE.name


# --------------------------------------------------------------------------- schedules


def test_multi_task_schedule_cuts_the_new_classes_into_n_groups():
    split = SimpleNamespace(n_classes=16)
    tasks = ch6.multi_task_schedule(split, 4)
    assert [t.tolist() for t in tasks] == [list(range(8)), [8, 9], [10, 11], [12, 13], [14, 15]]
    assert [len(t) for t in ch6.multi_task_schedule(split, 3)] == [8, 3, 3, 2]
    for bad in (0, 9, 2.0):
        with pytest.raises(ValueError, match="n_tasks must be an integer from 1 to 8"):
            ch6.multi_task_schedule(split, bad)


def test_class_range_is_one_based():
    assert ch6.class_range(np.arange(100, 125)) == "101-125"


# --------------------------------------------------------------------------- tables


def three_task_result(r1, map_=None, before=None):
    tasks = [[0, 1], [2], [3]]
    return FakeResult(tasks, {"R@1": r1, "mAP": map_ if map_ is not None else r1}, before)


R1 = [[80, NAN, NAN], [70, 60, NAN], [65, 55, 75]]


def test_final_task_and_newest_task_tables():
    results = {"x": three_task_result(R1)}
    final = ch6.final_task_table(results)
    assert final.value.tolist() == [65, 55, 75]
    assert final.classes.tolist() == ["1-2", "3-3", "4-4"]
    assert ch6.newest_task_curve(results).value.tolist() == [60, 75]


def test_ablation_table_reads_old_and_new_after_the_step():
    table = ch6.ablation_table({"(a)": three_task_result(R1)}, step=2, metrics=("R@1",))
    assert table.set_index("classes").value.to_dict() == {"old": 65, "new": 75}
    with pytest.raises(ValueError, match="step 3 needs at least 4"):
        ch6.ablation_table({"(a)": three_task_result(R1)}, step=3)


def test_accuracy_change_follows_eq_6_6():
    before = [dict(task=1, metric="mAP", value=20.0), dict(task=2, metric="mAP", value=30.0)]
    result = three_task_result(R1, [[50, NAN, NAN], [40, 60, NAN], [30, 40, 45]], before)
    assert ch6.accuracy_change(result, 1) == pytest.approx((-0.2, 2.0))
    # stage 2: old = mean over tasks 0-1, (40 + 60) / 2 -> (30 + 40) / 2; new 30 -> 45
    assert ch6.accuracy_change(result, 2) == pytest.approx((-0.3, 0.5))
    with pytest.raises(ValueError, match="stage must be from 1 to 2"):
        ch6.accuracy_change(result, 0)


# --------------------------------------------------------------------------- Gram matrices


def test_gram_batch_groups_items_by_class_in_the_given_order():
    labels = np.array([0, 1, 0, 2, 1, 0])
    assert ch6.gram_batch(labels, [1, 0], 2).tolist() == [1, 4, 0, 2]
    with pytest.raises(ValueError, match="class 2 has 1 items"):
        ch6.gram_batch(labels, [2], 2)


def test_gram_of_gap_and_block_contrast():
    emb = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    gram = ch6.gram_of(emb)
    assert gram == pytest.approx(unit @ unit.T, abs=1e-6)
    assert ch6.gram_gap(gram, np.eye(3)) == pytest.approx(4 * np.sqrt(0.5) / 9, abs=1e-6)
    g = np.array([[1.0, 0.8, 0.1, 0.3], [0.8, 1.0, 0.2, 0.0],
                  [0.1, 0.2, 1.0, 0.6], [0.3, 0.0, 0.6, 1.0]])
    assert ch6.block_contrast(g, [0, 0, 1, 1]) == pytest.approx(0.7 - 0.15)
    with pytest.raises(ValueError, match="differ in shape"):
        ch6.gram_gap(np.eye(2), np.eye(3))


class MeanColour(nn.Module):
    def forward(self, images):
        return images.mean(dim=(2, 3))


def tiny_set():
    colours = np.array([[250, 0, 0], [240, 10, 0], [0, 0, 250], [0, 10, 240]], dtype=np.uint8)
    images = np.broadcast_to(colours[:, None, None, :], (4, 8, 8, 3)).copy()
    return LabelledSet(images, np.array([0, 0, 1, 1]))


def test_embed_items_keeps_the_requested_order():
    labelled = tiny_set()
    emb = ch6.embed_items(MeanColour(), labelled, [2, 0], image_size=8)
    assert emb.shape == (2, 3) and emb[0, 2] > emb[0, 0] and emb[1, 0] > emb[1, 2]


def test_ranked_results_gallery_rows_and_precision():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    labels = np.array([0, 0, 1, 1])
    order, marks = ch6.ranked_results(emb, labels, 0, k=2)
    assert order.tolist() == [1, 3] and marks == ["positive", "negative"]
    assert ch6.ranked_results(emb, labels, 0, k=10)[0].tolist() == [1, 3, 2]
    rows = ch6.gallery_rows(emb, tiny_set(), [2], k=3)
    assert rows[0].labels == ["positive", "negative", "negative"]
    assert rows[0].query_image.size == (8, 8) and len(rows[0].result_images) == 3
    assert ch6.precision_at(emb, labels, [0, 2], k=2) == pytest.approx(50.0)


def test_plots_return_one_axes_per_panel():
    fig = ch6.plot_grams({"a": np.eye(4), "b": -np.eye(4)}, per_class=2)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2


# --------------------------------------------------------------------------- claims


def old_new(values):
    """Long table from {(dataset, method): (old R@1, new R@1)}."""
    rows = []
    for (dataset, method), (old, new) in values.items():
        for classes, v in (("old", old), ("new", new), ("average", (old + new) / 2)):
            rows.append(dict(dataset=dataset, method=method, classes=classes, metric="R@1",
                             value=v))
    return pd.DataFrame(rows)


TABLE = old_new({("cub", "initial model"): (90, 10), ("cub", "fine-tuning"): (50, 80),
                 ("cub", "EWC"): (60, 70), ("cub", "ALASSO"): (61, 70),
                 ("cub", "NCE_EWC"): (62, 70), ("cub", "L2 loss"): (70, 71),
                 ("cub", "MMD loss"): (72, 72), ("cub", "ours"): (75, 74),
                 ("cub", "reference"): (95, 95)})


def test_one_task_claims_on_a_table_that_follows_the_thesis():
    assert ch6.check_finetune_extremes(TABLE)[0]
    holds, detail = ch6.check_ours_keeps_old_best(TABLE)
    assert holds and "best other MMD loss 72.0" in detail
    holds, detail = ch6.check_features_beat_parameters(TABLE)
    assert holds and "features 72.3, parameters 61.0" in detail
    assert ch6.check_ours_best_average(TABLE)[0]


def test_one_task_claims_fail_when_the_ordering_breaks():
    broken = TABLE.copy()
    broken.loc[(broken.method == "EWC") & (broken.classes == "old"), "value"] = 99.0
    assert not ch6.check_ours_keeps_old_best(broken)[0]
    assert not ch6.check_finetune_extremes(broken.assign(
        value=np.where((broken.method == "ours") & (broken.classes == "new"), 99.0,
                       broken.value)))[0]
    assert ch6.check_finetune_extremes(TABLE[TABLE.method != "ours"]) is None


def test_gram_forgetting_original_and_change_claims():
    assert ch6.check_gram_closer({"ours": 0.1, "EWC": 0.3, "L2 loss": 0.2})[0]
    assert not ch6.check_gram_closer({"ours": 0.25, "EWC": 0.3, "L2 loss": 0.2})[0]
    forgetting = pd.DataFrame(dict(dataset="cub", after_task=[1, 2, 2, 2],
                                   method=["ours", "ours", "ours w/o EST.", "L2 loss"],
                                   forgetting=[9.0, 3.0, 4.0, 6.0]))
    holds, detail = ch6.check_least_forgetting(forgetting)
    assert holds and "least other ours w/o EST. 4.0" in detail
    curve = pd.DataFrame(dict(dataset="cub", after_task=[0, 2, 2, 2],
                              method=["ours", "ours", "L2 loss", "reference"],
                              value=[90.0, 70.0, 60.0, 88.0]))
    assert ch6.check_keeps_original_best(curve)[0]
    assert ch6.check_accuracy_change((-0.03, 0.75))[0]
    assert not ch6.check_accuracy_change((0.01, 0.75))[0]


def test_estimation_claim_reads_the_four_cases():
    values = {"(a)": (60, 80), "(b)": (70, 70), "(c)": (68, 78), "(d)": (69, 77)}
    rows = [dict(case=f"{c} text", classes=k, metric="R@1", value=v)
            for c, (old, new) in values.items() for k, v in (("old", old), ("new", new))]
    holds, detail = ch6.check_estimation_not_weight(pd.DataFrame(rows))
    assert holds and "(c) 1.0, (a) 9.0" in detail
    rows[5]["value"] = 65.0  # (c) new below (b) new
    assert not ch6.check_estimation_not_weight(pd.DataFrame(rows))[0]


def test_forgetting_ratio_is_the_lost_share_of_the_starting_accuracy():
    curve = pd.DataFrame(dict(method=["ours"] * 3 + ["L2 loss"] * 3, after_task=[0, 1, 2] * 2,
                              value=[80.0, 60.0, 40.0, 50.0, 50.0, 25.0]))
    ratio = ch6.forgetting_ratio(curve)
    assert ratio.value.tolist() == pytest.approx([0.0, 25.0, 50.0, 0.0, 0.0, 50.0])
    assert set(ch6.LONG_RUN_METHODS) == {"L2 loss", "MMD loss", "ours"}


def test_long_run_config_shares_the_first_stage_and_scales_the_stage_epochs():
    from irbook.chapters import CH06
    from irbook.incremental import experiments as ex

    params = CH06.resolve("demo")
    base = ex.make_config(params, "ch06", first_stage_ce_weight=1.0)
    long = ex.group_config(params, "ch06", 1 / 10, first_stage_ce_weight=1.0)
    assert long.epochs_incremental == 1 and long.epochs_first == base.epochs_first
    assert long.first_stage_ce_weight == 1.0 and long.checkpoint_dir == base.checkpoint_dir
    assert ex.group_config(params, "ch06", 1 / 2).epochs_incremental == 2  # round(2.5)
