"""Chapter 5: method line-ups, protocol, preflight, and every claim on planted evidence."""

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from planted import NAN, OFFSETS, planted

from irbook.chapters import Session, ch05
from irbook.claims import Evidence, evaluate_claim
from irbook.data.errors import DatasetNotFoundError
from irbook.data.synth.finegrained import ensure_finegrained
from irbook.incremental import experiments as ex
from irbook.incremental.methods import METHODS, make_method

# --- line-ups --------------------------------------------------------------------------------

LINE_UPS = {"one step": ch05.one_step_specs(), "ablation": ch05.ablation_specs(),
            "grid": ch05.weight_grid_specs(), "sequential": ch05.sequential_specs(),
            "classification": ch05.classification_specs()}


@pytest.mark.parametrize("line_up", LINE_UPS)
def test_every_line_up_names_methods_that_accept_its_hyper_parameters(line_up):
    for label, (name, hparams) in LINE_UPS[line_up].items():
        assert name in METHODS, label
        assert make_method(name, **hparams).name == name


def test_the_line_ups_hold_the_thesis_rows():
    assert set(ch05.BASELINES) < set(ch05.one_step_specs())
    assert ch05.one_step_specs(2.0, 3.0)["ours"] == ("kd_mmd", {"alpha": 2.0, "beta": 3.0})
    assert list(ch05.classification_specs()) == ["L2 loss", "EWC", "LwF", "ours"]
    assert list(ch05.sequential_specs()) == ["fine-tuning", "LwF", "EWC", "L2 loss", "ours",
                                             "reference"]
    assert ch05.ablation_specs(4.0)["+ L_mmd"] == ("kd_mmd", {"alpha": 0.0, "beta": 4.0})
    grid = ch05.weight_grid_specs()
    assert list(grid) == ["α=0.1, β=0.1", "α=0.1, β=1", "α=0.1, β=10", "α=1, β=0.1",
                          "α=1, β=1", "α=1, β=10"]
    assert grid["α=0.1, β=10"] == ("kd_mmd", {"alpha": 0.1, "beta": 10.0})


@pytest.mark.parametrize("name, n_classes, expected", [
    ("cub200", 200, [25, 100]), ("dogs", 120, [5, 60]), ("cub200", 8, [1, 4]),
    ("dogs", 12, [1, 6]), ("dogs", 24, [1, 12]), ("cub200", 40, [5, 20])])
def test_counts_settings_give_the_thesis_shares(name, n_classes, expected):
    split = SimpleNamespace(name=name, n_classes=n_classes)
    assert ch05.counts_settings(split) == expected


def test_mean_drop_per_step_and_pr_area():
    curve = pd.DataFrame(dict(method=["ours", "ours", "L2 loss", "L2 loss", "ours"],
                              after_task=[0, 1, 0, 1, 2], value=[80.0, 70.0, 80.0, 60.0, 66.0]))
    drops = ch05.mean_drop_per_step(curve)
    assert drops["ours"] == pytest.approx(7.0) and drops["L2 loss"] == pytest.approx(20.0)
    curves = pd.DataFrame(dict(method="ours", classes="old", recall=[100.0, 0.0, 50.0],
                               precision=[50.0, 100.0, 100.0]))
    # trapezoids over recall fractions: 0.5 * 100 + 0.5 * (100 + 50) / 2 = 87.5
    assert ch05.pr_area(curves)[("ours", "old")] == pytest.approx(87.5)


# --- configuration, protocol, preflight ------------------------------------------------------

def session(profile, **overrides):
    return Session(ch05.CHAPTER, ch05.CHAPTER.resolve(profile, overrides), "cpu", None)


def test_config_trains_the_initial_model_with_cross_entropy_and_cifar_at_32_pixels():
    run = session("smoke", pretrained=False)  # no stand-in pre-training to read
    config = ch05.config(run, 3)
    assert config.first_stage_ce_weight == 1.0 and config.seed == 3
    assert config.margin == 0.5 and config.backbone_weights is None
    assert ch05.classification_config(run, 0).image_size == 32
    full = session("full")
    assert ch05.classification_config(full, 0).image_size == full.params["image_size"] == 224


@pytest.mark.parametrize("profile", ["smoke", "demo", "full"])
def test_protocol_table_explains_every_deviation(profile):
    params = ch05.CHAPTER.resolve(profile)
    table = ch05.protocol_table(params).set_index("item")
    deviating = table[table.deviation != ""]
    assert (deviating["this run"] != deviating["thesis"]).all()
    assert table.loc["triplet margin", "deviation"] == ""
    assert table.loc["loss weights", "deviation"] == ""
    assert table.loc["split", "deviation"] == ""
    assert ("data" in deviating.index) == params["synthetic"]
    assert ("embedding" in deviating.index) == (params["embedding_dim"] != 512)


def test_protocol_follows_the_parameters():
    params = ch05.CHAPTER.resolve("full", {"margin": 0.3, "alpha": 2.0})
    table = ch05.protocol_table(params).set_index("item")
    assert table.loc["triplet margin", "this run"] == "0.3"
    assert table.loc["triplet margin", "deviation"] == "set by the margin parameter"
    assert table.loc["loss weights", "this run"] == "alpha 2, beta 1"
    assert table.loc["epochs", "deviation"] == ""  # 1500 / 800, ceil(classes / P) batches


def test_preflight_names_the_missing_cifar_folder(tmp_path):
    for name in ("cub200", "dogs"):
        ensure_finegrained(tmp_path, name, seed=0, scale="smoke")
    params = ch05.CHAPTER.resolve("smoke", {"synthetic": False, "data_root": str(tmp_path)})
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        ch05.preflight(params)
    ch05.preflight({**params, "experiments": "main"})  # CIFAR-100 is not needed then


# --- claims on planted evidence --------------------------------------------------------------

TWO = [np.arange(4), np.arange(4, 8)]
FIVE = [np.arange(4), *(np.array([c]) for c in range(4, 8))]
BETA = {0.1: (56, 77), 1.0: (73, 73), 10.0: (80, 49)}
THESIS_LIKE = {
    "initial": (79, 47),
    "one_step": {"fine-tuning": (54, 76), "LwF": (55, 76), "EWC": (62, 75), "ALASSO": (57, 75),
                 "L2 loss": (66, 77), "ours": (74, 73), "reference": (80, 80)},
    "pr": {("ours", "old"): 60.0, ("fine-tuning", "old"): 40.0, ("ours", "new"): 50.0,
           ("fine-tuning", "new"): 55.0},
    "ablation": {"L_ce + L_triplet": (54, 76), "+ L_dist": (60, 75), "+ L_mmd": (70, 74),
                 "+ L_dist + L_mmd": (74, 73)},
    "grid": {ch05.grid_label(a, b): BETA[b] for a in (0.1, 1.0) for b in BETA},
    "counts": {1: {"fine-tuning": (60, 80), "ours": (78, 80), "reference": (80, 80)},
               4: {"fine-tuning": (54, 76), "ours": (74, 73), "reference": (80, 80)}},
    "sequential": {"fine-tuning": 35, "LwF": 40, "EWC": 45, "L2 loss": 50, "ours": 60,
                   "reference": 80},
    "drift": {"with MMD": 0.1, "without MMD": 0.3},
    "cifar": {"L2 loss": 35, "EWC": 39, "LwF": 41, "ours": 43},
}
DATASETS = ("cub200", "dogs")


def one_step_results(initial, rows, tasks=TWO, split_id="toy"):
    return {label: planted(tasks, {"R@1": [[initial[0], NAN], [old, new]]},
                           {"R@1": [NAN, initial[1]]}, split_id=split_id)
            for label, (old, new) in rows.items()}


def final_column(value, metric="R@1"):
    """Five tasks whose task-0 accuracy falls from 80 to ``value`` (every other entry 50);
    for top-1, the whole last row is ``value``."""
    matrix = np.full((5, 5), 50.0)
    matrix[:, 0] = np.linspace(80, value, 5)
    if metric == "top-1":
        matrix[4] = value
    return planted(FIVE, {metric: matrix})


def add_one_step(evidence, numbers, d, shift):
    initial = tuple(v + shift for v in numbers["initial"])
    rows = {k: (o + shift, n + shift) for k, (o, n) in numbers["one_step"].items()}
    results = one_step_results(initial, rows, split_id=d)
    ex.add_old_new(evidence, f"one_step/{d}", results)
    for (label, classes), area in numbers["pr"].items():
        evidence.add(f"pr/{d}/{label}/{classes}", area + shift + OFFSETS,
                     results[label].query_set(subset=classes))
    for n, rows in numbers["counts"].items():
        tasks = [np.arange(4), np.arange(4, 4 + n)]
        ex.add_old_new(evidence, f"counts/{d}/{n}",
                       one_step_results(initial, rows, tasks, d), initial=False)
    ex.add_after(evidence, f"sequential/{d}", {k: final_column(v + shift) for k, v
                                                in numbers["sequential"].items()}, task=0)


def evidence_of(numbers, seed):
    """The evidence one seed of a chapter-5 run collects, from planted results."""
    evidence, initial = Evidence(seed), numbers["initial"]
    for d in DATASETS:
        add_one_step(evidence, numbers, d, seed)
    for step in ("ablation", "grid"):
        ex.add_old_new(evidence, f"{step}/cub200", one_step_results(initial, numbers[step]),
                       initial=False)
    for label, value in numbers["drift"].items():
        evidence.add(f"drift/cub200/{label}", value)
    for label, value in numbers["cifar"].items():
        ch05._add_seen_top1(evidence, f"cifar/{label}/top-1", final_column(value, "top-1"))
    return evidence


def verdicts(numbers, seeds=(0, 1)):
    evidence = [evidence_of(numbers, s) for s in seeds]
    specs = ch05.claim_specs(DATASETS, DATASETS, "cub200", True,
                             {d: (1, 4) for d in DATASETS})
    return {claim_id: evaluate_claim(claim_id, text, source, comparisons, evidence).verdict
            for claim_id, text, source, comparisons in specs}


CLAIM_IDS = ["ch05.finetune_forgets", "ch05.ours_keeps_old", "ch05.new_close",
             "ch05.learning_new_helps", "ch05.pr_above", *ch05.ALL_ONLY]


def test_every_claim_is_supported_by_thesis_like_numbers():
    assert verdicts(THESIS_LIKE) == dict.fromkeys(CLAIM_IDS, "supported")


def test_the_main_claims_alone_without_the_other_experiments():
    specs = ch05.claim_specs(["cub200"], [], "cub200", False, {})
    assert [spec[0] for spec in specs] == CLAIM_IDS[:5]
    assert len(specs[1][3]) == len(ch05.BASELINES)


def set_pair(table, key, index, value):
    pair = list(table[key])
    pair[index] = value
    table[key] = tuple(pair)


BREAKS = {
    "ch05.finetune_forgets": lambda n: n.update(initial=(50, 47)),
    "ch05.ours_keeps_old": lambda n: set_pair(n["one_step"], "EWC", 0, 80),
    "ch05.new_close": lambda n: set_pair(n["one_step"], "ours", 1, 68),  # 8 points behind
    "ch05.learning_new_helps": lambda n: n.update(initial=(79, 90)),
    "ch05.pr_above": lambda n: n["pr"].update({("ours", "old"): 30.0}),
    "ch05.mmd_matters": lambda n: set_pair(n["ablation"], "+ L_mmd", 0, 50),
    "ch05.beta_tradeoff": lambda n: set_pair(n["grid"], "α=1, β=10", 1, 90),
    "ch05.more_classes_more_forgetting": lambda n: set_pair(n["counts"][1], "ours", 0, 60),
    "ch05.sequential_best": lambda n: n["sequential"].update(ours=30),
    "ch05.mmd_closer_to_reference": lambda n: n["drift"].update({"with MMD": 0.5}),
    "ch05.cifar_best": lambda n: n["cifar"].update(ours=30),
}


@pytest.mark.parametrize("claim_id", BREAKS)
def test_breaking_the_ordering_a_claim_reads_breaks_that_claim_only(claim_id):
    numbers = copy.deepcopy(THESIS_LIKE)
    BREAKS[claim_id](numbers)
    found = verdicts(numbers, seeds=(0,))
    assert found.pop(claim_id) == "not supported"
    assert set(found.values()) == {"supported"}
