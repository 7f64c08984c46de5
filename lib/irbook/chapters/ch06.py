"""Chapter 6: correlation distillation with feature estimation.

The method line-ups, the experiment steps (one task, several tasks, the long sequence, the
Table 6.3 ablation; each runs every seed of the run), the Gram matrices of Fig. 6.6b, the
galleries of Figs. 6.12-6.16, and the claim checks. Labels follow the thesis tables
("fine-tuning", "EWC", ..., "ours", "reference").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import losses, protocol
from ..claims import Comparison, Evidence, evaluate_claim
from ..incremental import experiments as ex
from ..incremental import gallery
from ..incremental.evaluation import embed_items
from ..incremental.experiments import MethodSpec, Seeded
from ..incremental.runner import IncrementalConfig, IncrementalResult
from ..params import Param, ParamSpec
from . import (
    COMMON_DEFAULTS,
    COMMON_PARAMS,
    TRAINING_PARAMS,
    Chapter,
    Session,
    start,
    with_training_defaults,
)

INITIAL, REFERENCE = "initial model", "reference"
OURS, OURS_NO_EST = "ours", "ours w/o EST."
METRIC_LOSS = "pair"
"""Every method learns with the pair loss of the author's code (the page explains why)."""

ONE_TASK_METHODS = {"fine-tuning": ("finetune", {}), "EWC": ("ewc", {}),
                    "ALASSO": ("alasso", {}), "NCE_EWC": ("nce_ewc", {}),
                    "L2 loss": ("l2", {}),
                    "MMD loss": ("kd_mmd", {"alpha": 0.0, "beta": 1.0, "ce_weight": 0.0}),
                    OURS: ("corr_fe", {}), REFERENCE: ("joint", {})}
"""Rows of Tables 6.1-6.2: label → (method, hyper-parameters besides the shared ones)."""

MULTI_TASK_LABELS = ("fine-tuning", "EWC", "ALASSO", "NCE_EWC", "L2 loss", "MMD loss",
                     OURS_NO_EST, OURS, REFERENCE)
"""Curves of Figs. 6.7-6.9: every one-task method, ours without estimation, the joint bound."""

LONG_RUN_LABELS = ("L2 loss", "MMD loss", OURS)
"""Fig. 6.10: the activation regularisers over the long (10-task) sequence."""

PARAMETER_REGULARISERS = ("EWC", "ALASSO", "NCE_EWC")
FEATURE_REGULARISERS = ("L2 loss", "MMD loss", OURS)

ABLATION_CASES = {"(a) previous model only": "corr", "(b) previous model, larger weight":
                  "corr_boost", "(c) with feature estimation": "corr_fe",
                  "(d) every old model kept": "two_model"}
"""Table 6.3 (case → method)."""


def preflight(params: dict) -> None:
    ex.preflight(params)


_PROFILES = {
    "smoke": dict(COMMON_DEFAULTS["smoke"], dataset="both", backbone="smallcnn",
                  pretrained=True, pretrain_epochs=2, image_size=32, embedding_dim=32,
                  epochs_first=2, epochs_incremental=1, batches_per_epoch=3, lr=1e-3,
                  backbone_lr_scale=0.1, margin=0.1, classes_per_batch=4, samples_per_class=3,
                  experiments="all", experiment_datasets="all", n_tasks=4, corr_weight=10.0,
                  n_tasks_long=4),
    "demo": dict(COMMON_DEFAULTS["demo"], dataset="both", backbone="smallcnn",
                 pretrained=True, pretrain_epochs=12, image_size=48, embedding_dim=128,
                 epochs_first=20, epochs_incremental=5, batches_per_epoch=8, lr=3e-3,
                 backbone_lr_scale=0.1, margin=0.1, classes_per_batch=8, samples_per_class=4,
                 experiments="all", experiment_datasets="first", n_tasks=4, corr_weight=10.0,
                 n_tasks_long=10),
    "full": dict(COMMON_DEFAULTS["full"], dataset="both", backbone="googlenet",
                 pretrained=True, pretrain_epochs=1, image_size=224, embedding_dim=512,
                 epochs_first=1500, epochs_incremental=800, batches_per_epoch=0, lr=1e-5,
                 backbone_lr_scale=0.1, margin=0.1, classes_per_batch=16, samples_per_class=5,
                 experiments="all", experiment_datasets="all", n_tasks=4, corr_weight=10.0,
                 n_tasks_long=10),
}

CHAPTER = Chapter(
    key="ch06",
    title="Correlation distillation with feature estimation",
    notebook="notebooks/ch06_correlation_distillation.ipynb",
    preflight=preflight,
    thesis_tables=("6.1", "6.2", "6.3"),
    spec=ParamSpec(
        params=(
            *COMMON_PARAMS, *ex.INCREMENTAL_PARAMS,
            Param("n_tasks", int, "tasks of the multi-step run (the thesis: 4; see n_tasks_long)",
                  low=2, high=50),
            Param("corr_weight", float, "weight λ2 of the correlation distillation (Eq. 6.3)",
                  low=0.0, high=1000.0),
            Param("n_tasks_long", int, "tasks of the long run of Fig. 6.10 (the thesis uses "
                  "10); 0 skips it", low=0, high=100),
            *TRAINING_PARAMS,
        ),
        profiles=with_training_defaults(_PROFILES),
    ),
)


NOT_RUN = {"multi": ("forget_ours", "forget_ours_noest", "forget_mmd", "forget_l2",
                     "forget_ewc", "forget_finetune", "final_old_r1_ours",
                     "final_old_r1_best_other", "final_old_r1_best_other_method",
                     "final_new_r1_spread", "ablation_new_queries", "ablation_query_step",
                     *(f"case_{c}_{k}_r1" for c in "abcd" for k in ("old", "new"))),
           "long": ("long_ours_old_r1", "long_l2_old_r1", "long_mmd_old_r1")}
"""Numbers the prose quotes from the optional experiments."""


def setup(namespace: Mapping[str, Any]) -> Session:
    """The first code cell of chapter 6: ``run = ch06.setup(globals())``. The schedules are
    built here, so an impossible ``n_tasks`` stops before any training. The numbers of the
    experiments this run skips are glued as "not run"."""
    run = start(CHAPTER.key, namespace)
    p = run.params
    run.report.metric("n_tasks", p["n_tasks"])
    run.report.metric("n_tasks_long", p["n_tasks_long"])
    skipped = [] if p["experiments"] == "all" else ["multi", "long"]
    skipped += ["long"] if not p["n_tasks_long"] and "long" not in skipped else []
    for key in (k for part in skipped for k in NOT_RUN[part]):
        run.report.metric(key, "not run")
    splits = ex.open_splits(p, ex.datasets_of(p["dataset"]))
    first = next(iter(splits))
    run.state.update(
        splits=splits, first=first, extra=ex.experiment_datasets(p),
        all=p["experiments"] == "all", evidence={s: Evidence(s) for s in run.seeds},
        one_task={n: ex.one_step_tasks(s) for n, s in splits.items()},
        multi_task={n: ex.group_tasks(s, p["n_tasks"]) for n, s in splits.items()},
        long_tasks=ex.group_tasks(splits[first], p["n_tasks_long"]) if p["n_tasks_long"]
        else None)
    run.report.extra["deviations"] = protocol.deviations(protocol_table(p))
    return run


def config(run: Session, seed: int, **overrides: Any) -> IncrementalConfig:
    """One seed's training configuration; f_0 is trained with the ranking loss alone (Eq.
    6.2; the pair loss of the author's code, as every later stage), from the stand-in
    pre-training on the CPU profiles."""
    return ex.make_config(run.params, CHAPTER.key, seed,
                          backbone_weights=ex.standin_weights(run.params, run.device),
                          first_stage_ce_weight=0.0, first_stage_metric_loss=METRIC_LOSS,
                          **overrides)


def method_specs(labels: Sequence[str], corr_weight: float) -> dict[str, MethodSpec]:
    """``label → (method, hyper-parameters)`` with the pair loss for every method and λ2 =
    ``corr_weight`` for the correlation methods."""
    table = {**ONE_TASK_METHODS, OURS_NO_EST: ("corr", {}),
             **{case: (name, {}) for case, name in ABLATION_CASES.items()}}
    specs = {}
    for label in labels:
        name, hparams = table[label]
        extra = {"corr_weight": float(corr_weight)} if name.startswith(("corr", "two")) else {}
        specs[label] = (name, {**hparams, **extra, "metric_loss": METRIC_LOSS})
    return specs


# --- protocol: thesis vs this run ------------------------------------------------------------

def protocol_values(p: Mapping[str, Any]) -> dict[str, str]:
    """This run's value of every item of ``data/thesis_protocols/ch06.csv``."""
    return {
        **ex.common_protocol_values(p, "CUB-200-2011, Stanford Dogs"),
        "ranking loss": f"pair loss with hard mining, margin {p['margin']:g}, every method",
        "loss weights": f"lambda1 1, lambda2 {p['corr_weight']:g}",
        "epochs": f"first stage {p['epochs_first']}, each incremental stage "
                  f"{p['epochs_incremental']}",
        "schedule": f"half old, then 1 task, {p['n_tasks']} tasks, and {p['n_tasks_long']} tasks",
        "initial model": "ranking loss only on the old classes",
        "reference": "joint training on the classes seen so far, continued from f_0",
        "metrics": "Recall@1, standard mAP, forgetting (Eq. 6.12)",
    }


def deviation_reasons(p: Mapping[str, Any]) -> dict[str, str]:
    """Why each protocol item of this profile differs from the thesis."""
    reasons = {
        **ex.common_deviation_reasons(p),
        "ranking loss": "the batch-hard triplet loss collapsed the embedding of fine-tuning in "
                        "a demo test; every method shares the author's pair loss",
        "loss weights": "set by the corr_weight parameter",
        "schedule": "set by the n_tasks / n_tasks_long parameters",
    }
    if p["backbone"] == "googlenet":
        reasons["backbone"] = "no BN-Inception in torchvision (GoogLeNet stands in)"
    return reasons


def protocol_table(p: Mapping[str, Any]) -> pd.DataFrame:
    """Table "protocol: thesis vs this run", with the reason of every deviation."""
    return protocol.protocol_table(CHAPTER.key, protocol_values(p), deviation_reasons(p))


# --- one task (Tables 6.1-6.2, Fig. 6.6) -----------------------------------------------------

def one_task(run: Session) -> dict[str, Seeded]:
    """Every method of Tables 6.1-6.2 on every dataset (old-class mAP tracked on the first)."""
    specs = method_specs(ONE_TASK_METHODS, run.params["corr_weight"])
    track = {"track_every": ex.tracking_interval(run.params["epochs_incremental"])}
    out = {}
    for name, split in run.state["splits"].items():
        out[name] = ex.run_seeds(run.seeds, split, run.state["one_task"][name], specs,
                                 lambda s: config(run, s), desc=f"{name}: one task",
                                 **(track if name == run.state["first"] else {}))
        for seed, results in out[name].items():
            evidence = run.state["evidence"][seed]
            ex.add_old_new(evidence, f"one_task/{name}", results, ("R@1", "mAP"))
    run.state["one_results"] = out
    return out


def one_task_table(run: Session) -> pd.DataFrame:
    """Old/new/average R@1 and mAP per method and dataset (mean over the seeds)."""
    table = pd.concat([ex.mean_over_seeds(seeded, ex.old_new_table).assign(dataset=name)
                       for name, seeded in run.state["one_results"].items()], ignore_index=True)
    for row in table.itertuples():
        run.report.metric(f"one_task/{row.dataset}/{row.method}/{row.classes}/{row.metric}",
                          round(row.value, 2), glue=False)
    one = table[table.dataset == run.state["first"]]
    for key, method, classes, metric in [
            ("initial_old_r1", INITIAL, "old", "R@1"), ("initial_new_map", INITIAL, "new", "mAP"),
            ("finetune_old_map", "fine-tuning", "old", "mAP"),
            ("finetune_new_map", "fine-tuning", "new", "mAP"), ("ours_old_r1", OURS, "old", "R@1"),
            ("mmd_old_r1", "MMD loss", "old", "R@1"), ("l2_old_r1", "L2 loss", "old", "R@1"),
            ("ewc_old_r1", "EWC", "old", "R@1"), ("ours_avg_r1", OURS, "average", "R@1")]:
        run.report.metric(key, round(ex.value(one, method, classes, metric), 1))
    run.report.metric("first_dataset", run.state["first"])
    _glue_loss_terms(run)
    return table


def _glue_loss_terms(run: Session) -> None:
    """The size of the pair and correlation terms in the last epoch of ours (first seed)."""
    result = run.state["one_results"][run.state["first"]][run.seeds[0]][OURS]
    last_epoch = result.histories[1][-1]
    run.report.metric("pair_term", round(last_epoch["pair"], 3))
    run.report.metric("corr_weight", run.params["corr_weight"])
    run.report.metric("corr_term", round(run.params["corr_weight"] * last_epoch["corr"], 4))


def thesis_beside_one_task(run: Session, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset: thesis Table 6.1 / 6.2 (R@1 and mAP) beside this run's numbers."""
    sources = {"cub200": "6.1", "dogs": "6.2"}
    return ex.thesis_beside(table, {n: sources[n] for n in run.state["splits"]}, run.profile,
                           run.report)


def gram_figure_data(run: Session) -> tuple[dict[str, np.ndarray], pd.DataFrame, int]:
    """Fig. 6.6b: Gram matrices of a fixed batch of old-class test images (8 classes) under
    the initial model, the reference and four methods (first dataset, first seed), their
    distance to the reference's and class-block contrast; per-image distances of every seed
    go to the evidence."""
    name, split = run.state["first"], run.state["splits"][run.state["first"]]
    classes = run.state["one_task"][name][0][:8]
    labels = split.test.labels
    per_class = int(min(4, min((labels == c).sum() for c in classes)))
    batch = gram_batch(labels, classes, per_class)
    grams = {}
    for seed in run.seeds:
        per_seed = _grams_of_seed(run, seed, batch)
        rows = {label: np.abs(g - per_seed[REFERENCE]).mean(axis=1)
                for label, g in per_seed.items()}
        for label, values in rows.items():
            run.state["evidence"][seed].add(f"gram/{name}/{label}", values, f"gram/{name}")
        grams = grams or per_seed
    summary = pd.DataFrame({"distance to reference": {k: gram_gap(g, grams[REFERENCE])
                                                      for k, g in grams.items()},
                            "block contrast": {k: block_contrast(g, labels[batch])
                                               for k, g in grams.items()}}).round(3)
    for label, key in [(OURS, "ours"), ("L2 loss", "l2"), ("EWC", "ewc")]:
        run.report.metric(f"gram_gap_{key}", summary.loc[label, "distance to reference"])
        run.report.metric(f"gram_contrast_{key}", summary.loc[label, "block contrast"])
    return grams, summary, per_class


def _grams_of_seed(run: Session, seed: int, batch: np.ndarray) -> dict[str, np.ndarray]:
    name, split = run.state["first"], run.state["splits"][run.state["first"]]
    results = run.state["one_results"][name][seed]
    initial = ex.initial_model(split, run.state["one_task"][name], config(run, seed))
    models = {INITIAL: initial.model,
              **{k: results[k].model for k in (REFERENCE, "fine-tuning", "EWC", "L2 loss", OURS)}}
    return {label: gram_of(embed_items(model, split.test, batch, run.params["image_size"],
                                       run.device)) for label, model in models.items()}


def during_one_task(run: Session) -> pd.DataFrame:
    """Fig. 6.6a: old-class mAP during the one-task stage (first dataset, first seed)."""
    results = run.state["one_results"][run.state["first"]][run.seeds[0]]
    return ex.training_curves(results, "mAP").assign(dataset=run.state["first"])


# --- several tasks (Figs. 6.7-6.9) -----------------------------------------------------------

def multi_task(run: Session) -> dict[str, Seeded]:
    """The ``n_tasks`` schedule with every method of Figs. 6.7-6.9 on the experiment datasets;
    the stage epochs scale with the group size."""
    specs = method_specs(MULTI_TASK_LABELS, run.params["corr_weight"])
    fixed, out = bool(run.params["batches_per_epoch"]), {}
    fraction = 1 / run.params["n_tasks"]
    for name in run.state["extra"]:
        tasks = run.state["multi_task"][name]
        out[name] = ex.run_seeds(run.seeds, run.state["splits"][name], tasks, specs,
                                 lambda s: ex.scaled_stages(config(run, s), fraction, fixed),
                                 desc=f"{name}: {len(tasks) - 1} tasks")
        for seed, results in out[name].items():
            _add_matrix(run.state["evidence"][seed], f"multi/{name}", results, "mAP")
            ex.add_after(run.state["evidence"][seed], f"multi/{name}", results, task=0)
    run.state["multi_results"] = out
    return out


def _add_matrix(evidence: Evidence, prefix: str, results: Mapping[str, IncrementalResult],
                metric: str) -> None:
    """Per-query values of every (after_task, task) evaluation, for forgetting (Eq. 6.12)."""
    for label, result in results.items():
        for after in range(len(result.tasks)):
            for task in range(after + 1):
                ex.add_finite(evidence, f"{prefix}/{label}/after{after}/task{task}/{metric}",
                              result.query_values(metric, after_task=after, task=task),
                              result.query_set(task=task))


def multi_task_tables(run: Session) -> dict[str, pd.DataFrame]:
    """Forgetting and average incremental accuracy after every task (Fig. 6.7, mAP), R@1 of
    every group under the final model (Fig. 6.8) and of each group right after it was
    learned and later (Fig. 6.9), mean over the seeds, with a ``dataset`` column."""
    tables = {"forgetting": [], "groups": []}
    for name, seeded in run.state["multi_results"].items():
        tables["forgetting"].append(ex.mean_over_seeds(
            seeded, lambda r: ex.forgetting_table(r, "mAP")).assign(dataset=name))
        tables["groups"].append(ex.mean_over_seeds(seeded, ex.group_table).assign(dataset=name))
    out = {key: pd.concat(frames, ignore_index=True) for key, frames in tables.items()}
    _glue_multi(run, out)
    return out


def _glue_multi(run: Session, tables: dict[str, pd.DataFrame]) -> None:
    first = run.state["first"]
    forgetting = tables["forgetting"]
    final = forgetting[(forgetting.dataset == first) & (forgetting.measure == "forgetting")
                       & (forgetting.after_task == forgetting.after_task.max())]
    final = final.set_index("method").value
    for key, label in [("forget_ours", OURS), ("forget_ours_noest", OURS_NO_EST),
                       ("forget_mmd", "MMD loss"), ("forget_l2", "L2 loss"),
                       ("forget_ewc", "EWC"), ("forget_finetune", "fine-tuning")]:
        run.report.metric(key, round(final[label], 1))
    groups = tables["groups"]
    last = groups[(groups.dataset == first) & (groups.after_task == groups.after_task.max())]
    original = last[(last.task == 0) & (last.method != REFERENCE)].set_index("method").value
    rival = original.drop(OURS).idxmax()
    run.report.metric("final_old_r1_ours", round(original[OURS], 1))
    run.report.metric("final_old_r1_best_other", round(original[rival], 1))
    run.report.metric("final_old_r1_best_other_method", rival)
    newest = last[last.task == last.task.max()].value
    run.report.metric("final_new_r1_spread", round(newest.max() - newest.min(), 1))


def newest_group_curves(groups: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6.9: each group's R@1 from the step it was learned on, with a ``panel`` per group."""
    later = groups[groups.task > 0]
    return later.assign(panel="classes " + later.classes)


# --- the long sequence (Fig. 6.10) and the ablation (Table 6.3, Fig. 6.11) -------------------

def long_run(run: Session) -> pd.DataFrame:
    """Fig. 6.10: ``n_tasks_long`` groups on the first dataset with L2, MMD and ours: R@1 on
    the original classes after every task and the forgetting ratio (mean over the seeds)."""
    name = run.state["first"]
    specs = method_specs(LONG_RUN_LABELS, run.params["corr_weight"])
    fixed, fraction = bool(run.params["batches_per_epoch"]), 1 / run.params["n_tasks_long"]
    seeded = ex.run_seeds(run.seeds, run.state["splits"][name], run.state["long_tasks"], specs,
                          lambda s: ex.scaled_stages(config(run, s), fraction, fixed),
                          desc=f"{name}: {run.params['n_tasks_long']} tasks")
    for seed, results in seeded.items():
        ex.add_after(run.state["evidence"][seed], f"long/{name}", results, task=0)
    curve = ex.mean_over_seeds(seeded, ex.first_task_curve)
    last = curve[curve.after_task == curve.after_task.max()].set_index("method").value
    for label, key in [(OURS, "ours"), ("L2 loss", "l2"), ("MMD loss", "mmd")]:
        run.report.metric(f"long_{key}_old_r1", round(last[label], 1))
    return pd.concat([curve.assign(panel="(a) Recall@1 on the original classes (%)"),
                      forgetting_ratio(curve).assign(panel="(b) forgetting ratio (%)")])


def forgetting_ratio(curve: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6.10b: the share (%) of the original classes' starting accuracy lost after each
    task, ``100 (a_0 - a_t) / a_0``, from :func:`first_task_curve` rows (the thesis does not
    define its "forgetting ratio"; this is the book's reading)."""
    start = curve[curve.after_task == 0].set_index("method").value
    ratio = 100 * (curve.method.map(start) - curve.value) / curve.method.map(start)
    return curve.assign(value=ratio)


def ablation(run: Session) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Table 6.3 and Fig. 6.11: the four cases over the first two groups of the multi-task
    schedule (first dataset): after step 2 the old (task 0) and newest (task 2) groups; the
    original classes' R@1 and mAP after every step; the final Gram matrices (first seed)."""
    name, split = run.state["first"], run.state["splits"][run.state["first"]]
    steps = run.state["multi_task"][name][:3]
    specs = method_specs(ABLATION_CASES, run.params["corr_weight"])
    fraction, fixed = 1 / run.params["n_tasks"], bool(run.params["batches_per_epoch"])
    seeded = ex.run_seeds(run.seeds, split, steps, specs,
                          lambda s: ex.scaled_stages(config(run, s), fraction, fixed),
                          desc="Table 6.3")
    for seed, results in seeded.items():
        for task in (0, 2):
            ex.add_after(run.state["evidence"][seed], f"ablation/{name}", results, task=task)
    table = ex.mean_over_seeds(seeded, lambda r: ablation_table(r, step=2))
    evolution = ex.mean_over_seeds(seeded, lambda r: pd.concat(
        [ex.first_task_curve(r, m).assign(metric=m) for m in ("R@1", "mAP")]))
    batch = gram_batch(split.test.labels, steps[0][:8], 4)
    grams = {case: gram_of(embed_items(result.model, split.test, batch,
                                       run.params["image_size"], run.device))
             for case, result in seeded[run.seeds[0]].items()}
    _glue_ablation(run, table, split, steps)
    return table, evolution, grams


def ablation_table(cases: Mapping[str, IncrementalResult], step: int = 2,
                   metrics: Sequence[str] = ("R@1", "mAP")) -> pd.DataFrame:
    """Table 6.3: after task ``step``, accuracy on task 0 ("old") and on task ``step``
    ("new"), per case, long form (case, classes, metric, value)."""
    rows = []
    for case, result in cases.items():
        if len(result.tasks) <= step:
            raise ValueError(f"case {case!r} has {len(result.tasks)} tasks; step {step} needs "
                             f"at least {step + 1}")
        for metric in metrics:
            matrix = result.matrix(metric)
            rows.append(dict(case=case, classes="old", metric=metric,
                             value=float(matrix[step, 0])))
            rows.append(dict(case=case, classes="new", metric=metric,
                             value=float(matrix[step, step])))
    return pd.DataFrame(rows)


def _glue_ablation(run: Session, table: pd.DataFrame, split, steps) -> None:
    new_queries = int(np.isin(split.test.labels, steps[2]).sum())
    run.report.metric("ablation_new_queries", new_queries)
    run.report.metric("ablation_query_step", round(100 / new_queries, 1))
    for row in table.itertuples():
        run.report.metric(f"case_{row.case[1]}_{row.classes}_{row.metric.replace('@', '')}"
                          .lower(), round(row.value, 1), glue=row.metric == "R@1")


def thesis_beside_ablation(run: Session, table: pd.DataFrame) -> pd.DataFrame:
    """Thesis Table 6.3, this run's and their difference."""
    from ..thesis_tables import beside, load_thesis_table

    thesis = load_thesis_table("6.3")
    thesis = thesis.assign(case=thesis["case"].map({case[1]: case for case in ABLATION_CASES}))
    return beside("6.3", thesis.pivot_table(index="case", columns=["classes", "metric"],
                                            values="value", sort=False),
                  table.pivot_table(index="case", columns=["classes", "metric"],
                                    values="value", sort=False), run.profile, run.report)


def accuracy_change(run: Session) -> tuple[float, float]:
    """(α_drop, α_gain) of Eq. 6.6 for the first stage of ours (one task, first dataset, first
    seed), as :class:`~irbook.incremental.methods.CorrelationFE` reads them."""
    result = run.state["one_results"][run.state["first"]][run.seeds[0]][OURS]
    drop, gain = result.accuracy_change(stage=1, metric="mAP")
    run.report.metric("alpha_drop_1", round(drop, 4))
    run.report.metric("alpha_gain_1", round(gain, 4))
    return drop, gain


# --- Gram matrices and galleries -------------------------------------------------------------

def gram_batch(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` items of each class in ``classes``, grouped by class
    in the given order (the fixed batch of Fig. 6.6b)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    labels = np.asarray(labels)
    picked = []
    for c in classes:
        found = np.flatnonzero(labels == c)[:per_class]
        if len(found) < per_class:
            raise ValueError(f"class {c} has {len(found)} items; per_class={per_class} asked")
        picked.append(found)
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def gram_of(embeddings: np.ndarray) -> np.ndarray:
    """Linear Gram matrix of the L2-normalised embeddings (Eq. 6.4): cosine similarities."""
    features = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    return losses.gram_matrix(features, normalize=True).numpy()


def gram_gap(gram: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference between two Gram matrices of the same batch."""
    gram, reference = np.asarray(gram), np.asarray(reference)
    if gram.shape != reference.shape:
        raise ValueError(f"Gram matrices differ in shape: {gram.shape} and {reference.shape}")
    return float(np.abs(gram - reference).mean())


def block_contrast(gram: np.ndarray, labels: Sequence[int]) -> float:
    """Mean similarity of same-class pairs minus that of different-class pairs (diagonal
    excluded): how visible the class blocks of Fig. 6.6b are."""
    gram, labels = np.asarray(gram), np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    if not (same & off).any() or not (~same).any():
        raise ValueError("labels must hold at least two classes with two items each")
    return float(gram[same & off].mean() - gram[~same].mean())


def group_galleries(run: Session, labels: Sequence[str] = ("fine-tuning", OURS),
                    queries_per_group: int = 1, k: int = 6) -> list[tuple[str, list]]:
    """Figs. 6.12-6.16: the final models of the multi-task run (first dataset, first seed; the
    one-task run when it was skipped) on each class group: top-``k`` results of a query, with
    the query's class name. Returns (title, gallery rows) per (group, method); glues P@10."""
    name, split = run.state["first"], run.state["splits"][run.state["first"]]
    seeded = (run.state.get("multi_results") or {}).get(name) or run.state["one_results"][name]
    finals = seeded[run.seeds[0]]
    rng = np.random.default_rng(run.params["seed"])
    figures = []
    for task, classes in enumerate(finals[labels[0]].tasks):
        members = split.test.subset(classes)
        queries = rng.choice(len(members), size=min(queries_per_group, len(members)),
                             replace=False)
        items = np.flatnonzero(np.isin(split.test.labels, classes))
        for label in labels:
            emb = embed_items(finals[label].model, split.test, items, run.params["image_size"],
                              run.device)
            class_names = ", ".join(split.class_names[members.labels[q]] for q in queries)
            title = f"{label}, classes {ex.class_range(classes)} (query: {class_names})"
            figures.append((title, gallery.gallery_rows(emb, members, queries, k)))
            if task == 0:
                key = "finetune" if label == "fine-tuning" else "ours"
                run.report.metric(f"p10_{key}", round(gallery.precision_at(
                    emb, members.labels, range(len(members)), k=10), 1))
    return figures


# --- claims ----------------------------------------------------------------------------------

def _diff(prefix: str, plus: str, minus: str, subset: str, metric: str = "R@1") -> Comparison:
    return Comparison(f"{plus} − {minus}, {subset} {metric} ({prefix})",
                      (f"{prefix}/{plus}/{subset}/{metric}",),
                      (f"{prefix}/{minus}/{subset}/{metric}",))


INCREMENTAL_ONE_TASK = tuple(k for k in ONE_TASK_METHODS if k != REFERENCE)


def one_task_claims(datasets: Sequence[str]) -> list[tuple[str, str, str, list[Comparison]]]:
    """The claims of Tables 6.1-6.2 and Eq. 6.6 on every dataset."""
    one = [f"one_task/{d}" for d in datasets]
    others = [m for m in INCREMENTAL_ONE_TASK if m != OURS]
    average = [Comparison(f"ours − {m}, average R@1 ({p})",
                          (f"{p}/{OURS}/old/R@1", f"{p}/{OURS}/new/R@1"),
                          (f"{p}/{m}/old/R@1", f"{p}/{m}/new/R@1")) for p in one for m in others]
    return [
        ("ch06.finetune_extremes", "Fine-tuning learns the new classes best and forgets the "
         "old ones most", "Tables 6.1, 6.2",
         [c for p in one for m in INCREMENTAL_ONE_TASK if m != "fine-tuning"
          for c in (_diff(p, "fine-tuning", m, "new"), _diff(p, m, "fine-tuning", "old"))]),
        ("ch06.ours_keeps_old_best", "Correlation distillation keeps the highest old-class "
         "Recall@1 after one task", "Tables 6.1, 6.2",
         [_diff(p, OURS, m, "old") for p in one for m in others]),
        ("ch06.features_beat_parameters", "Feature regularisers protect the old classes better "
         "than parameter regularisers", "Tables 6.1, 6.2",
         [Comparison(f"feature − parameter regularisers, mean old R@1 ({p})",
                     tuple(f"{p}/{m}/old/R@1" for m in FEATURE_REGULARISERS),
                     tuple(f"{p}/{m}/old/R@1" for m in PARAMETER_REGULARISERS)) for p in one]),
        ("ch06.ours_best_average", "The method has the best average of old- and new-class "
         "Recall@1", "Tables 6.1, 6.2", average),
        ("ch06.accuracy_change", "A stage lowers old-class and raises new-class mAP "
         "(α_drop < 0 < α_gain)", "Eq. 6.6",
         [c for p in one for c in (
             Comparison(f"old mAP before − after the stage ({p})",
                        (f"{p}/{INITIAL}/old/mAP",), (f"{p}/{OURS}/old/mAP",)),
             Comparison(f"new mAP after − before the stage ({p})",
                        (f"{p}/{OURS}/new/mAP",), (f"{p}/{INITIAL}/new/mAP",)))]),
    ]


def gram_claim(first: str) -> tuple[str, str, str, list[Comparison]]:
    return ("ch06.gram_closer", "The method's Gram matrix stays closer to the reference than "
            "EWC's and L2's", "Figure 6.6b",
            [Comparison(f"{m} − ours, per-image |G − G_reference| ({first})",
                        (f"gram/{first}/{m}",), (f"gram/{first}/{OURS}",), unit="")
             for m in ("EWC", "L2 loss")])


def forgetting_statistic(prefix: str, label: str, last: int):
    """Eq. 6.12 after task ``last`` as a statistic of the evidence's means (mAP): the mean over
    the earlier tasks j of (best accuracy on j before the last task − accuracy after it)."""
    def forgetting(means):
        def at(after, task):
            return means[f"{prefix}/{label}/after{after}/task{task}/mAP"]

        drops = [np.max(np.stack([at(a, j) for a in range(j, last)]), axis=0) - at(last, j)
                 for j in range(last)]
        return np.mean(np.stack(drops), axis=0)
    return forgetting


def forgetting_names(prefix: str, label: str, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}/{label}/after{a}/task{j}/mAP"
                 for j in range(last) for a in range(j, last + 1))


def multi_task_claims(extra: Sequence[str], n_tasks: int, first: str, long_run: bool) -> list:
    """The claims of Figs. 6.7, 6.8, 6.10 and Table 6.3."""
    rivals = [m for m in MULTI_TASK_LABELS if m not in (OURS, REFERENCE)]
    forgetting = []
    for d in extra:
        prefix = f"multi/{d}"
        for m in rivals:
            ours = forgetting_statistic(prefix, OURS, n_tasks)
            other = forgetting_statistic(prefix, m, n_tasks)
            forgetting.append(Comparison(
                f"{m} − ours, forgetting after task {n_tasks} ({d})",
                forgetting_names(prefix, OURS, n_tasks) + forgetting_names(prefix, m, n_tasks),
                statistic=lambda means, o=ours, r=other: r(means) - o(means)))
    claims = [
        ("ch06.least_forgetting", "With feature estimation the method forgets least over the "
         "task sequence", "Figure 6.7", forgetting),
        ("ch06.keeps_original_best", "After the last task the method keeps the original "
         "classes best", "Figure 6.8",
         [_diff(f"multi/{d}", OURS, m, "task0") for d in extra for m in rivals]),
        ("ch06.estimation_not_weight", "Feature estimation is not the same as a larger "
         "stability weight", "Table 6.3", _ablation_comparisons(f"ablation/{first}")),
    ]
    if long_run:
        claims.append(("ch06.long_run_best", "Over the long sequence the method keeps the "
                       "original classes better than the L2 and MMD losses", "Figure 6.10",
                       [_diff(f"long/{first}", OURS, m, "task0")
                        for m in ("L2 loss", "MMD loss")]))
    return claims


def _ablation_comparisons(prefix: str) -> list[Comparison]:
    """(c) above (b) on the new group; (c) closer to (d) than (a) on the old classes."""
    a, b, c, d = (f"{prefix}/{case}" for case in ABLATION_CASES)

    def closer(means):
        return (np.abs(means[f"{a}/task0/R@1"] - means[f"{d}/task0/R@1"])
                - np.abs(means[f"{c}/task0/R@1"] - means[f"{d}/task0/R@1"]))

    return [Comparison("(c) − (b), new-group R@1", (f"{c}/task2/R@1",), (f"{b}/task2/R@1",)),
            Comparison("|(a) − (d)| − |(c) − (d)|, old R@1",
                       (f"{a}/task0/R@1", f"{c}/task0/R@1", f"{d}/task0/R@1"),
                       statistic=closer)]


ALL_ONLY = ("ch06.least_forgetting", "ch06.keeps_original_best", "ch06.estimation_not_weight",
            "ch06.long_run_best")


def check_claims(run: Session) -> pd.DataFrame:
    """Evaluate every claim on the run's evidence (all seeds), record them, save the report."""
    evidence = [run.state["evidence"][s] for s in run.seeds]
    specs = [*one_task_claims(list(run.state["splits"])), gram_claim(run.state["first"])]
    if run.state["all"]:
        specs += multi_task_claims(run.state["extra"], run.params["n_tasks"], run.state["first"],
                                   bool(run.params["n_tasks_long"]))
    for claim_id, statement, source, comparisons in specs:
        run.report.add_claim(evaluate_claim(claim_id, statement, source, comparisons, evidence))
    for claim_id in set(ALL_ONLY) - {spec[0] for spec in specs}:
        run.report.skip_claim(claim_id, "not run with these parameters")
    run.report.save()
    return run.report.claims_frame()
