"""Chapter 6: line-ups, protocol, tables, Gram matrices, and every claim on planted evidence."""

import copy

import numpy as np
import pandas as pd
import pytest
from planted import NAN, OFFSETS, planted

from irbook.chapters import Session, ch06
from irbook.claims import Evidence, evaluate_claim
from irbook.incremental import experiments as ex
from irbook.incremental.methods import METHODS, make_method
from irbook.metrics import forgetting_curve

TWO = [np.arange(4), np.arange(4, 8)]
THREE = [np.arange(4), np.arange(4, 6), np.arange(6, 8)]
R1 = [[80, NAN, NAN], [70, 60, NAN], [65, 55, 75]]


# --- line-ups --------------------------------------------------------------------------------

ALL_LABELS = [*ch06.ONE_TASK_METHODS, *ch06.MULTI_TASK_LABELS, *ch06.LONG_RUN_LABELS,
              *ch06.ABLATION_CASES]


def test_every_line_up_builds_methods_with_the_pair_loss():
    specs = ch06.method_specs(ALL_LABELS, 7)
    for label, (name, hparams) in specs.items():
        assert name in METHODS, label
        method = make_method(name, **hparams)
        assert method.metric_loss == "pair", label
        assert getattr(method, "corr_weight", 7.0) == 7.0, label


def test_method_specs_pass_corr_weight_to_the_correlation_methods_only():
    specs = ch06.method_specs(["fine-tuning", "MMD loss", "ours", "ours w/o EST.",
                               "(b) previous model, larger weight",
                               "(d) every old model kept"], 7)
    assert specs == {
        "fine-tuning": ("finetune", {"metric_loss": "pair"}),
        "MMD loss": ("kd_mmd", {"alpha": 0.0, "beta": 1.0, "ce_weight": 0.0,
                                "metric_loss": "pair"}),
        "ours": ("corr_fe", {"corr_weight": 7.0, "metric_loss": "pair"}),
        "ours w/o EST.": ("corr", {"corr_weight": 7.0, "metric_loss": "pair"}),
        "(b) previous model, larger weight": ("corr_boost", {"corr_weight": 7.0,
                                                             "metric_loss": "pair"}),
        "(d) every old model kept": ("two_model", {"corr_weight": 7.0, "metric_loss": "pair"}),
    }
    with pytest.raises(KeyError):
        ch06.method_specs(["sgd"], 1.0)


def test_line_ups_hold_the_thesis_rows():
    assert set(ch06.PARAMETER_REGULARISERS) | set(ch06.FEATURE_REGULARISERS) < set(
        ch06.ONE_TASK_METHODS)
    assert set(ch06.MULTI_TASK_LABELS) == set(ch06.ONE_TASK_METHODS) | {ch06.OURS_NO_EST}
    assert ch06.REFERENCE not in ch06.INCREMENTAL_ONE_TASK
    assert ch06.ABLATION_CASES["(c) with feature estimation"] == "corr_fe"


# --- configuration and protocol --------------------------------------------------------------

def test_config_trains_the_initial_model_with_the_ranking_loss_alone():
    params = ch06.CHAPTER.resolve("smoke", {"pretrained": False})
    config = ch06.config(Session(ch06.CHAPTER, params, "cpu", None), 4)
    assert config.first_stage_ce_weight == 0.0 and config.seed == 4 and config.margin == 0.1


@pytest.mark.parametrize("profile", ["smoke", "demo", "full"])
def test_protocol_table_explains_every_deviation(profile):
    params = ch06.CHAPTER.resolve(profile)
    table = ch06.protocol_table(params).set_index("item")
    deviating = table[table.deviation != ""]
    assert (deviating["this run"] != deviating["thesis"]).all()
    assert "ranking loss" in deviating.index  # the pair loss, always
    assert table.loc["loss weights", "deviation"] == ""
    assert ("schedule" in deviating.index) == (params["n_tasks_long"] != 10)
    assert ("data" in deviating.index) == params["synthetic"]


def test_protocol_follows_the_parameters():
    params = ch06.CHAPTER.resolve("full", {"n_tasks": 3, "corr_weight": 5.0})
    table = ch06.protocol_table(params).set_index("item")
    assert table.loc["schedule", "this run"] == "half old, then 1 task, 3 tasks, and 10 tasks"
    assert table.loc["loss weights", "this run"] == "lambda1 1, lambda2 5"
    assert table.loc["loss weights", "deviation"] == "set by the corr_weight parameter"
    assert table.loc["epochs", "deviation"] == ""


# --- tables ----------------------------------------------------------------------------------

def test_forgetting_ratio_is_the_lost_share_of_the_starting_accuracy():
    curve = pd.DataFrame(dict(method=["ours"] * 3 + ["L2 loss"] * 3, after_task=[0, 1, 2] * 2,
                              value=[80.0, 60.0, 40.0, 50.0, 50.0, 25.0]))
    ratio = ch06.forgetting_ratio(curve)
    assert ratio.value.tolist() == pytest.approx([0.0, 25.0, 50.0, 0.0, 0.0, 50.0])


def test_ablation_table_reads_old_and_new_after_the_step():
    result = planted(THREE, {"R@1": R1, "mAP": np.array(R1) - 30})
    table = ch06.ablation_table({"(a)": result}, step=2)
    assert table.set_index(["classes", "metric"]).value.to_dict() == {
        ("old", "R@1"): 65, ("new", "R@1"): 75, ("old", "mAP"): 35, ("new", "mAP"): 45}
    assert ch06.ablation_table({"(a)": result}, step=1, metrics=("R@1",)).value.tolist() == [
        70, 60]
    with pytest.raises(ValueError, match="step 3 needs at least 4"):
        ch06.ablation_table({"(a)": result}, step=3)


def test_newest_group_curves_drop_the_original_classes():
    groups = ex.group_table({"x": planted(THREE, {"R@1": R1})})
    curves = ch06.newest_group_curves(groups)
    assert curves.value.tolist() == [60, 55, 75]
    assert curves.panel.tolist() == ["classes 5-6", "classes 5-6", "classes 7-8"]


# --- Gram matrices ---------------------------------------------------------------------------

def test_gram_batch_groups_items_by_class_in_the_given_order():
    labels = np.array([0, 1, 0, 2, 1, 0])
    assert ch06.gram_batch(labels, [1, 0], 2).tolist() == [1, 4, 0, 2]
    with pytest.raises(ValueError, match="class 2 has 1 items"):
        ch06.gram_batch(labels, [2], 2)
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        ch06.gram_batch(labels, [0], 0)


def test_gram_of_gap_and_block_contrast():
    emb = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    gram = ch06.gram_of(emb)
    assert gram == pytest.approx(unit @ unit.T, abs=1e-6)
    assert ch06.gram_gap(gram, np.eye(3)) == pytest.approx(4 * np.sqrt(0.5) / 9, abs=1e-6)
    g = np.array([[1.0, 0.8, 0.1, 0.3], [0.8, 1.0, 0.2, 0.0],
                  [0.1, 0.2, 1.0, 0.6], [0.3, 0.0, 0.6, 1.0]])
    assert ch06.block_contrast(g, [0, 0, 1, 1]) == pytest.approx(0.7 - 0.15)
    with pytest.raises(ValueError, match="differ in shape"):
        ch06.gram_gap(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="at least two classes"):
        ch06.block_contrast(np.eye(3), [0, 1, 2])


# --- forgetting as a statistic of the evidence -----------------------------------------------

def test_forgetting_statistic_equals_eq_6_12_on_the_evidence_means():
    matrix = np.array([[80, NAN, NAN, NAN], [72, 70, NAN, NAN], [75, 60, 66, NAN],
                       [61, 64, 50, 77]])
    evidence = Evidence(0)
    ch06._add_matrix(evidence, "multi/x", {"m": planted([[0], [1], [2], [3]],
                                                        {"mAP": matrix})}, "mAP")
    names = ch06.forgetting_names("multi/x", "m", 3)
    assert len(names) == 4 + 3 + 2  # after 0-3 on task 0, 1-3 on task 1, 2-3 on task 2
    assert set(names) < set(evidence.names)
    means = {n: np.asarray(evidence.mean(n)) for n in names}
    statistic = ch06.forgetting_statistic("multi/x", "m", 3)
    # ((80 - 61) + (70 - 64) + (66 - 50)) / 3; task 0's best before step 3 is 80, not 75
    assert float(statistic(means)) == pytest.approx(41 / 3)
    assert float(statistic(means)) == pytest.approx(forgetting_curve(matrix)[3])
    scaled = {n: v * np.array([1.0, 2.0]) for n, v in means.items()}  # bootstrap shape (2,)
    assert statistic(scaled) == pytest.approx([41 / 3, 82 / 3])


# --- claims on planted evidence --------------------------------------------------------------

THESIS_LIKE = {
    "initial": (90, 30),
    "one_task": {"fine-tuning": (50, 80), "EWC": (60, 70), "ALASSO": (61, 70),
                 "NCE_EWC": (62, 70), "L2 loss": (70, 71), "MMD loss": (72, 72),
                 "ours": (75, 74), "reference": (95, 95)},
    "gram": {"initial model": 0.4, "reference": 0.0, "fine-tuning": 0.5, "EWC": 0.3,
             "L2 loss": 0.2, "ours": 0.1},
    "multi": {"fine-tuning": (0.6, 0.6), "EWC": (0.75, 0.75), "ALASSO": (0.78, 0.78),
              "NCE_EWC": (0.8, 0.8), "L2 loss": (0.85, 0.85), "MMD loss": (0.88, 0.88),
              "ours w/o EST.": (0.9, 0.9), "ours": (0.95, 0.95), "reference": (1.0, 1.0)},
    "long": {"L2 loss": 0.85, "MMD loss": 0.88, "ours": 0.95},
    "ablation": {"(a) previous model only": (60, 80), "(b) previous model, larger weight":
                 (70, 70), "(c) with feature estimation": (68, 78),
                 "(d) every old model kept": (69, 77)},
}
DATASETS = ("cub200", "dogs")


def retention(rho, base):
    """acc[i, j] = base * rho ** (i - j) over three tasks (old + 2 groups)."""
    i, j = np.indices((3, 3))
    return np.where(i >= j, base * rho ** (i - j), NAN)


def add_one_task(evidence, numbers, d, shift):
    init_old, init_new = (v + shift for v in numbers["initial"])
    results = {label: planted(TWO, {m: np.array([[init_old, NAN], [old + shift, new + shift]])
                                    - (20 if m == "mAP" else 0) for m in ("R@1", "mAP")},
                              {"R@1": [NAN, init_new], "mAP": [NAN, init_new - 20]}, split_id=d)
               for label, (old, new) in numbers["one_task"].items()}
    ex.add_old_new(evidence, f"one_task/{d}", results, ("R@1", "mAP"))


def add_multi(evidence, numbers, d):
    results = {label: planted(THREE, {"R@1": retention(r1, 80), "mAP": retention(ap, 60)},
                          split_id=d)
               for label, (r1, ap) in numbers["multi"].items()}
    ch06._add_matrix(evidence, f"multi/{d}", results, "mAP")
    ex.add_after(evidence, f"multi/{d}", results, task=0)


def evidence_of(numbers, seed):
    """The evidence one seed of a chapter-6 run collects, from planted results."""
    evidence = Evidence(seed)
    for d in DATASETS:
        add_one_task(evidence, numbers, d, seed)
        add_multi(evidence, numbers, d)
    for label, gap in numbers["gram"].items():
        evidence.add(f"gram/cub200/{label}", gap + OFFSETS / 100, "gram/cub200")
    ex.add_after(evidence, "long/cub200", {label: planted(THREE, {"R@1": retention(rho, 80)})
                                           for label, rho in numbers["long"].items()}, task=0)
    cases = {case: planted(THREE, {"R@1": [[80, NAN, NAN], [75, 75, NAN], [old, 70, new]]})
             for case, (old, new) in numbers["ablation"].items()}
    for task in (0, 2):
        ex.add_after(evidence, "ablation/cub200", cases, task=task)
    return evidence


def claims(numbers, seeds=(0, 1)):
    evidence = [evidence_of(numbers, s) for s in seeds]
    specs = [*ch06.one_task_claims(DATASETS), ch06.gram_claim("cub200"),
             *ch06.multi_task_claims(DATASETS, 2, "cub200", True)]
    return {claim_id: evaluate_claim(claim_id, text, source, comparisons, evidence)
            for claim_id, text, source, comparisons in specs}


CLAIM_IDS = ["ch06.finetune_extremes", "ch06.ours_keeps_old_best",
             "ch06.features_beat_parameters", "ch06.ours_best_average", "ch06.accuracy_change",
             "ch06.gram_closer", *ch06.ALL_ONLY]


def test_every_claim_is_supported_by_thesis_like_numbers():
    found = claims(THESIS_LIKE)
    assert {k: c.verdict for k, c in found.items()} == dict.fromkeys(CLAIM_IDS, "supported")
    table63 = {c["label"]: c["difference"] for c in found["ch06.estimation_not_weight"]
               .comparisons}
    assert table63 == pytest.approx({"(c) − (b), new-group R@1": 8.0,
                                     "|(a) − (d)| − |(c) − (d)|, old R@1": 8.0})
    forgetting = {c["label"]: c["difference"] for c in found["ch06.least_forgetting"]
                  .comparisons}

    def eq_6_12(rho):
        return 60 * (2 - rho - rho ** 2) / 2

    assert forgetting["L2 loss − ours, forgetting after task 2 (dogs)"] == pytest.approx(
        eq_6_12(0.85) - eq_6_12(0.95))


def test_the_long_run_claim_needs_the_long_run():
    ids = [spec[0] for spec in ch06.multi_task_claims(["cub200"], 4, "cub200", False)]
    assert ids == ["ch06.least_forgetting", "ch06.keeps_original_best",
                   "ch06.estimation_not_weight"]


def change(table, key, index, value):
    pair = list(table[key])
    pair[index] = value
    table[key] = tuple(pair)


BREAKS = {
    "ch06.finetune_extremes": lambda n: change(n["one_task"], "ours", 1, 85),
    "ch06.ours_keeps_old_best": lambda n: change(n["one_task"], "MMD loss", 0, 76),
    "ch06.features_beat_parameters": lambda n: [change(n["one_task"], m, 0, 74)
                                                for m in ("EWC", "ALASSO", "NCE_EWC")],
    "ch06.ours_best_average": lambda n: change(n["one_task"], "L2 loss", 1, 79.5),
    "ch06.accuracy_change": lambda n: n.update(initial=(74, 30)),
    "ch06.gram_closer": lambda n: n["gram"].update(ours=0.25),
    "ch06.least_forgetting": lambda n: change(n["multi"], "ours", 1, 0.5),  # mAP only
    "ch06.keeps_original_best": lambda n: change(n["multi"], "ours", 0, 0.5),  # R@1 only
    "ch06.estimation_not_weight": lambda n: change(
        n["ablation"], "(c) with feature estimation", 1, 65),
    "ch06.long_run_best": lambda n: n["long"].update(ours=0.5),
}


@pytest.mark.parametrize("claim_id", BREAKS)
def test_breaking_the_ordering_a_claim_reads_breaks_that_claim_only(claim_id):
    numbers = copy.deepcopy(THESIS_LIKE)
    BREAKS[claim_id](numbers)
    found = {k: c.verdict for k, c in claims(numbers, seeds=(0,)).items()}
    assert found.pop(claim_id) == "not supported"
    assert set(found.values()) == {"supported"}
