"""Chapter 5: incremental fine-grained retrieval with knowledge distillation and MMD.

The experiment steps the notebook calls (each runs every seed of the run and returns
seed → method label → :class:`~irbook.incremental.IncrementalResult`), the tables beside the
thesis', and the claim checks. Method labels are those of the thesis tables, so the run's rows
line up with ``data/thesis_tables/table_5_*.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import protocol
from ..claims import Comparison, Evidence, evaluate_claim
from ..incremental import experiments as ex
from ..incremental.experiments import MethodSpec, Seeded
from ..incremental.runner import IncrementalConfig
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

BASELINES = ("fine-tuning", "LwF", "EWC", "ALASSO", "L2 loss")


def preflight(params: dict) -> None:
    """The fine-grained datasets, and CIFAR-100 when every experiment runs on real data."""
    ex.preflight(params, extra=("cifar100",) if params["experiments"] == "all" else ())


_PROFILES = {
    "smoke": dict(COMMON_DEFAULTS["smoke"], dataset="both", backbone="smallcnn",
                  pretrained=True, pretrain_epochs=2, image_size=32, embedding_dim=32,
                  epochs_first=2, epochs_incremental=1, batches_per_epoch=3, lr=1e-3,
                  backbone_lr_scale=0.1, margin=0.5, classes_per_batch=4, samples_per_class=3,
                  experiments="all", experiment_datasets="all", alpha=1.0, beta=1.0),
    "demo": dict(COMMON_DEFAULTS["demo"], dataset="both", backbone="smallcnn",
                 pretrained=True, pretrain_epochs=12, image_size=48, embedding_dim=128,
                 epochs_first=20, epochs_incremental=5, batches_per_epoch=8, lr=3e-3,
                 backbone_lr_scale=0.1, margin=0.5, classes_per_batch=8, samples_per_class=4,
                 experiments="all", experiment_datasets="first", alpha=1.0, beta=1.0),
    "full": dict(COMMON_DEFAULTS["full"], dataset="both", backbone="googlenet",
                 pretrained=True, pretrain_epochs=1, image_size=224, embedding_dim=512,
                 epochs_first=1500, epochs_incremental=800, batches_per_epoch=0, lr=1e-5,
                 backbone_lr_scale=0.1, margin=0.5, classes_per_batch=16, samples_per_class=5,
                 experiments="all", experiment_datasets="all", alpha=1.0, beta=1.0),
}

CHAPTER = Chapter(
    key="ch05",
    title="Incremental learning for fine-grained image retrieval",
    notebook="notebooks/ch05_incremental_fgir.ipynb",
    preflight=preflight,
    thesis_tables=tuple(f"5.{i}" for i in range(1, 11)),
    spec=ParamSpec(
        params=(
            *COMMON_PARAMS, *ex.INCREMENTAL_PARAMS,
            Param("alpha", float, "weight of the distillation term (Eq. 5.6)", low=0.0,
                  high=100.0),
            Param("beta", float, "weight of the MMD term (Eq. 5.6)", low=0.0, high=100.0),
            *TRAINING_PARAMS,
        ),
        profiles=with_training_defaults(_PROFILES),
    ),
)


def setup(namespace: Mapping[str, Any]) -> Session:
    """The first code cell of chapter 5: ``run = ch05.setup(globals())``."""
    run = start(CHAPTER.key, namespace)
    p = run.params
    splits = ex.open_splits(p, ex.datasets_of(p["dataset"]))
    run.state.update(splits=splits, first=next(iter(splits)), extra=ex.experiment_datasets(p),
                     all=p["experiments"] == "all", evidence={s: Evidence(s) for s in run.seeds})
    run.report.extra["deviations"] = protocol.deviations(protocol_table(p))
    return run


def config(run: Session, seed: int, **overrides: Any) -> IncrementalConfig:
    """The chapter's training configuration for one seed: the initial model is trained with
    L_ce + L_triplet (Section 5.3), from the stand-in pre-training on the CPU profiles."""
    return ex.make_config(run.params, CHAPTER.key, seed,
                          backbone_weights=ex.standin_weights(run.params, run.device),
                          first_stage_ce_weight=1.0, **overrides)


# --- protocol: thesis vs this run ------------------------------------------------------------

def protocol_values(p: Mapping[str, Any]) -> dict[str, str]:
    """This run's value of every item of ``data/thesis_protocols/ch05.csv``."""
    epoch = ("ceil(classes / P) batches" if not p["batches_per_epoch"]
             else f"{p['batches_per_epoch']} batches")
    return {
        **ex.common_protocol_values(p, "CUB-200-2011, Stanford Dogs, CIFAR-100"),
        "triplet margin": f"{p['margin']:g}",
        "loss weights": f"alpha {p['alpha']:g}, beta {p['beta']:g}",
        "epochs": f"first stage {p['epochs_first']}, each incremental stage "
                  f"{p['epochs_incremental']} ({epoch} per epoch)",
        "split": "CUB 60/40 within each class; Dogs official; CIFAR official",
        "initial model": "L_ce + L_triplet on the old classes",
        "reference": "joint training on the classes seen so far, continued from the initial "
                     "model",
        "metrics": "Recall@1/2/4, standard mAP, top-1 (CIFAR)",
    }


def deviation_reasons(p: Mapping[str, Any]) -> dict[str, str]:
    """Why each protocol item of this profile differs from the thesis."""
    return {**ex.common_deviation_reasons(p),
            "triplet margin": "set by the margin parameter",
            "loss weights": "set by the alpha / beta parameters"}


def protocol_table(p: Mapping[str, Any]) -> pd.DataFrame:
    """Table "protocol: thesis vs this run", with the reason of every deviation."""
    return protocol.protocol_table(CHAPTER.key, protocol_values(p), deviation_reasons(p))


# --- method line-ups -------------------------------------------------------------------------

def one_step_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Tables 5.2-5.3: every baseline keeps L_ce + L_triplet and adds its own regulariser."""
    return {
        "fine-tuning": ("finetune", {"ce_weight": 1.0}),
        "LwF": ("lwf", {}),
        "EWC": ("ewc", {}),
        "ALASSO": ("alasso", {}),
        "L2 loss": ("l2", {"ce_weight": 1.0}),
        "ours": ("kd_mmd", {"alpha": alpha, "beta": beta}),
        "reference": ("joint", {"ce_weight": 1.0}),
    }


def ablation_specs(beta: float = 1.0) -> dict[str, MethodSpec]:
    """Table 5.7: the loss terms added one at a time to L_ce + L_triplet."""
    return {
        "L_ce + L_triplet": ("finetune", {"ce_weight": 1.0}),
        "+ L_dist": ("kd_mmd", {"alpha": 1.0, "beta": 0.0}),
        "+ L_mmd": ("kd_mmd", {"alpha": 0.0, "beta": beta}),
        "+ L_dist + L_mmd": ("kd_mmd", {"alpha": 1.0, "beta": beta}),
    }


def grid_label(alpha: float, beta: float) -> str:
    return f"α={alpha:g}, β={beta:g}"


def weight_grid_specs(alphas=(0.1, 1.0), betas=(0.1, 1.0, 10.0)) -> dict[str, MethodSpec]:
    """Table 5.8: the α/β grid of Eq. 5.6 (all six cells)."""
    return {grid_label(a, b): ("kd_mmd", {"alpha": a, "beta": b}) for a in alphas for b in betas}


def sequential_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Tables 5.9-5.10: the methods compared when groups of classes arrive one by one, and the
    joint reference."""
    specs = one_step_specs(alpha, beta)
    return {k: specs[k] for k in ("fine-tuning", "LwF", "EWC", "L2 loss", "ours", "reference")}


def classification_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Table 5.6 (CIFAR-100): the thesis' four methods."""
    specs = one_step_specs(alpha, beta)
    return {k: specs[k] for k in ("L2 loss", "EWC", "LwF", "ours")}


def counts_settings(split) -> list[int]:
    """Tables 5.4-5.5: 25 and 100 new CUB classes; 5 and 60 new Dogs classes (scaled)."""
    n_new = len(ex.one_step_tasks(split)[1])
    share = 5 / 60 if split.name == "dogs" else 1 / 4
    return sorted({max(1, round(n_new * share)), n_new})


# --- experiments -----------------------------------------------------------------------------

def _a_b(run: Session) -> tuple[float, float]:
    return run.params["alpha"], run.params["beta"]


def one_step(run: Session) -> dict[str, Seeded]:
    """Tables 5.2-5.3: every method, all new classes at once, on every dataset; old-class mAP
    tracked during the stage on the first dataset (Fig. 5.3c)."""
    track = ex.tracking_interval(run.params["epochs_incremental"])
    out = {name: ex.run_seeds(run.seeds, split, ex.one_step_tasks(split),
                              one_step_specs(*_a_b(run)), lambda s: config(run, s),
                              desc=f"{name}: one step",
                              track_every=track if name == run.state["first"] else 0)
           for name, split in run.state["splits"].items()}
    for name, seeded in out.items():
        for seed, results in seeded.items():
            ex.add_old_new(run.state["evidence"][seed], f"one_step/{name}", results)
    run.state["one_step"] = out
    return out


ONE_STEP_METRICS = ("R@1", "R@2", "R@4", "mAP")


def one_step_table(run: Session) -> pd.DataFrame:
    """Old/new/average R@1, R@2, R@4 and mAP per method and dataset (mean over the seeds)."""
    frames = [ex.mean_over_seeds(seeded, lambda r: ex.old_new_table(r, ONE_STEP_METRICS))
              .assign(dataset=name) for name, seeded in run.state["one_step"].items()]
    table = pd.concat(frames, ignore_index=True)
    for row in table.itertuples():
        run.report.metric(f"one_step/{row.dataset}/{row.method}/{row.classes}/{row.metric}",
                          round(row.value, 2), glue=False)
    first = table[table.dataset == run.state["first"]]
    for label, key in [("initial model", "initial"), ("fine-tuning", "finetune"),
                       ("LwF", "lwf"), ("EWC", "ewc"), ("L2 loss", "l2"), ("ours", "ours"),
                       ("reference", "reference")]:
        for classes in ("old", "new"):
            run.report.metric(f"{key}_{classes}_r1", round(ex.value(first, label, classes), 1))
        run.report.metric(f"{key}_old_map", round(ex.value(first, label, "old", "mAP"), 1))
    run.report.metric("ours_old_drop_r1", round(ex.value(first, "initial model", "old")
                                                - ex.value(first, "ours", "old"), 1))
    return table


def before_after_gallery(run: Session, queries: int = 2, k: int = 8) -> list[tuple[str, list]]:
    """Fig. 5.1a: the same old-class queries answered by the initial model, by fine-tuning and
    by the method after the new classes were learned (first dataset, first seed): (title,
    gallery rows) per model. The queries are drawn with the run's seed, not picked."""
    from ..incremental import gallery
    from ..incremental.evaluation import embed_items

    name = run.state["first"]
    split, seed = run.state["splits"][name], run.seeds[0]
    results = run.state["one_step"][name][seed]
    old = ex.one_step_tasks(split)[0]
    members = split.test.subset(old)
    items = np.flatnonzero(np.isin(split.test.labels, old))
    picked = np.random.default_rng(run.params["seed"]).choice(len(members), size=queries,
                                                              replace=False)
    models = {"initial model": ex.initial_model(split, ex.one_step_tasks(split),
                                                config(run, seed)).model,
              "fine-tuning": results["fine-tuning"].model, "ours": results["ours"].model}
    out = []
    for label, model in models.items():
        emb = embed_items(model, split.test, items, run.params["image_size"], run.device)
        names = ", ".join(split.class_names[members.labels[q]] for q in picked)
        out.append((f"{label}: old-class queries ({names})",
                    gallery.gallery_rows(emb, members, picked, k)))
    return out


def thesis_beside_one_step(run: Session, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset: thesis Table 5.2 / 5.3 (R@1, R@2, R@4) beside this run's numbers."""
    sources = {"cub200": "5.2", "dogs": "5.3"}
    return ex.thesis_beside(table, {n: sources[n] for n in run.state["splits"]}, run.profile,
                           run.report)


def pr_and_training_curves(run: Session) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figs. 5.3a-c / 5.4a-c: PR curves of the final models on the old and the new classes
    (mean over the seeds; per-query areas go to the evidence) on every dataset, and the
    old-class mAP during the incremental stage (first dataset, first seed)."""
    curves, during = [], []
    for name, seeded in run.state["one_step"].items():
        for seed, per_seed in seeded.items():
            results = {k: v for k, v in per_seed.items() if k != "reference"}
            rows, areas = ex.pr_curves(results, run.state["splits"][name], config(run, seed))
            curves.append(rows.assign(dataset=name, seed=seed))
            for (label, classes), values in areas.items():
                run.state["evidence"][seed].add(f"pr/{name}/{label}/{classes}", values,
                                                per_seed[label].query_set(subset=classes))
        if name == run.state["first"]:
            first = {k: v for k, v in seeded[run.seeds[0]].items() if k != "reference"}
            during.append(ex.training_curves(first, "mAP").assign(dataset=name))
    keys = ["dataset", "method", "classes", "recall"]
    mean = pd.concat(curves).groupby(keys, sort=False).precision.mean().reset_index()
    areas = pr_area(mean[mean.dataset == run.state["first"]])
    run.report.metric("pr_area_ours_old", round(areas[("ours", "old")], 1))
    run.report.metric("pr_area_finetune_old", round(areas[("fine-tuning", "old")], 1))
    return mean, pd.concat(during, ignore_index=True)


def pr_area(curves: pd.DataFrame) -> pd.Series:
    """Area under each mean interpolated precision-recall curve (percent × fraction of
    recall), by (method, classes): the trapezoid rule over the recall levels."""
    def area(rows: pd.DataFrame) -> float:
        rows = rows.sort_values("recall")
        return float(np.trapezoid(rows.precision, rows.recall / 100))

    return curves.groupby(["method", "classes"], sort=False)[["recall", "precision"]].apply(area)


def split_counts_table(run: Session) -> pd.DataFrame:
    """Images and classes per group of this run's data, laid out like Table 5.1."""
    counts = pd.concat({name: ex.split_counts(s, ex.one_step_tasks(s)).set_index(
        ["split", "classes"]) for name, s in run.state["splits"].items()}, axis=1)
    counts.columns.names = ["dataset", ""]
    return counts


def thesis_table_5_1() -> pd.DataFrame:
    """Thesis Table 5.1: images and classes per group of the real datasets."""
    from ..thesis_tables import load_thesis_table

    return (load_thesis_table("5.1").pivot_table(
        index=["split", "classes"], columns="dataset", values=["images", "n_classes"],
        sort=False).astype(int).swaplevel(axis=1).sort_index(axis=1)
        .rename_axis(columns=["Thesis Table 5.1: dataset", ""]))


def time_table(run: Session) -> pd.DataFrame:
    """Fig. 5.3d: seconds per incremental epoch of each method (first dataset, first seed)."""
    results = run.state["one_step"][run.state["first"]][run.seeds[0]]
    times = ex.time_table(results).set_index("method").rename(columns={"value": "s / epoch"})
    run.report.metric("time_ours_s", round(times.loc["ours"].iloc[0], 2))
    run.report.metric("time_joint_s", round(times.loc["reference"].iloc[0], 2))
    return times.round(2)


def class_counts(run: Session) -> pd.DataFrame:
    """Tables 5.4-5.5: fewer and all new classes at once, with the method, fine-tuning and the
    joint reference on the classes seen (the thesis' A(1-125) / A(1-65) rows)."""
    specs = {k: v for k, v in one_step_specs(*_a_b(run)).items()
             if k in ("fine-tuning", "ours", "reference")}
    frames = []
    for name in run.state["extra"]:
        split = run.state["splits"][name]
        for n in counts_settings(split):
            seeded = ex.run_seeds(run.seeds, split, ex.one_step_tasks(split, n), specs,
                                  lambda s: config(run, s), desc=f"{name}: {n} new classes")
            for seed, results in seeded.items():
                ex.add_old_new(run.state["evidence"][seed], f"counts/{name}/{n}", results,
                               initial=False)
            frames.append(ex.mean_over_seeds(seeded, lambda r: ex.old_new_table(
                r, ("R@1", "R@2", "R@4"))).assign(dataset=name, new_classes=n))
    table = pd.concat(frames, ignore_index=True)
    run.state["counts"] = table
    return table


def ablation(run: Session) -> pd.DataFrame:
    """Table 5.7: the loss terms one by one (first dataset)."""
    name = run.state["first"]
    split = run.state["splits"][name]
    seeded = ex.run_seeds(run.seeds, split, ex.one_step_tasks(split),
                          ablation_specs(run.params["beta"]), lambda s: config(run, s),
                          desc="Table 5.7")
    for seed, results in seeded.items():
        ex.add_old_new(run.state["evidence"][seed], f"ablation/{name}", results, initial=False)
    table = ex.mean_over_seeds(seeded, lambda r: ex.old_new_table(r, ("R@1", "R@2", "R@4"),
                                                                  initial=False))
    run.state["ablation_models"] = {label: result.model
                                    for label, result in seeded[run.seeds[0]].items()}
    run.report.metric("mmd_only_old_r1", round(ex.value(table, "+ L_mmd", "old"), 1))
    run.report.metric("dist_only_old_r1", round(ex.value(table, "+ L_dist", "old"), 1))
    return table


def weight_grid(run: Session) -> pd.DataFrame:
    """Table 5.8: all six (α, β) cells (first dataset)."""
    name = run.state["first"]
    split = run.state["splits"][name]
    seeded = ex.run_seeds(run.seeds, split, ex.one_step_tasks(split), weight_grid_specs(),
                          lambda s: config(run, s), desc="Table 5.8")
    for seed, results in seeded.items():
        ex.add_old_new(run.state["evidence"][seed], f"grid/{name}", results, initial=False)
    return ex.mean_over_seeds(seeded, lambda r: ex.old_new_table(r, ("R@1",), initial=False))


def sequential(run: Session) -> pd.DataFrame:
    """Tables 5.9-5.10: four groups one after another, every group's R@1 after every step,
    with the joint reference; stage epochs scaled to the group size."""
    frames, fixed = [], bool(run.params["batches_per_epoch"])
    for name in run.state["extra"]:
        split = run.state["splits"][name]
        tasks = ex.group_tasks(split, 4)
        seeded = ex.run_seeds(run.seeds, split, tasks, sequential_specs(*_a_b(run)),
                              lambda s: ex.scaled_stages(config(run, s), 1 / 4, fixed),
                              desc=f"{name}: groups")
        for seed, results in seeded.items():
            ex.add_after(run.state["evidence"][seed], f"sequential/{name}", results, task=0)
        frames.append(ex.mean_over_seeds(seeded, ex.group_table).assign(dataset=name))
    table = pd.concat(frames, ignore_index=True)
    run.state["sequential"] = table
    _glue_sequential(run, table[table.dataset == run.state["first"]])
    return table


def _glue_sequential(run: Session, table: pd.DataFrame) -> None:
    old = table[table.task == 0]
    last = old[old.after_task == old.after_task.max()].set_index("method").value
    run.report.metric("seq_steps", int(old.after_task.max()))
    for label, key in [("ours", "ours"), ("L2 loss", "l2"), ("fine-tuning", "finetune")]:
        run.report.metric(f"seq_{key}_old_r1_final", round(last[label], 1))
    drops = mean_drop_per_step(old.rename(columns={"value": "value"}))
    run.report.metric("seq_ours_mean_drop", round(drops["ours"], 2))
    run.report.metric("seq_l2_mean_drop", round(drops["L2 loss"], 2))


def mean_drop_per_step(curve: pd.DataFrame) -> pd.Series:
    """Average loss of original-class R@1 per step, per method (Tables 5.9-5.10 prose);
    ``curve`` rows (method, after_task, value) on task 0."""
    return curve.sort_values("after_task").groupby("method", sort=False).value.apply(
        lambda v: float(np.mean(-np.diff(v.to_numpy()))))


def classification_config(run: Session, seed: int) -> IncrementalConfig:
    """The CIFAR-100 run: the chapter's settings at CIFAR's own 32 x 32 pixels for the small
    CPU network (torchvision backbones keep the chapter's crop size); each of the four later
    tasks holds a quarter of the new classes, so its stage is scaled as the sequential groups'."""
    size = 32 if run.params["backbone"] == "smallcnn" else run.params["image_size"]
    return ex.scaled_stages(config(run, seed, image_size=size), 1 / 4,
                            bool(run.params["batches_per_epoch"]))


def classification(run: Session) -> pd.DataFrame:
    """Table 5.6: class-incremental top-1 on CIFAR-100 in five tasks."""
    p = run.params
    cifar = ex.open_split("cifar100", synthetic=p["synthetic"], root=p["data_root"],
                          seed=p["seed"], profile=p["profile"])
    tasks = ex.group_tasks(cifar, 4)
    seeded = ex.run_seeds(run.seeds, cifar, tasks, classification_specs(*_a_b(run)),
                          lambda s: classification_config(run, s), desc="CIFAR-100",
                          eval_top1=True)
    for seed, results in seeded.items():
        for label, result in results.items():
            _add_seen_top1(run.state["evidence"][seed], f"cifar/{label}/top-1", result)
    seen = ex.mean_over_seeds(seeded, ex.seen_accuracy)
    last = seen[seen.after_task == seen.after_task.max()].set_index("method").value
    run.report.metric("cifar_tasks", len(tasks))
    run.report.metric("cifar_first_top1", round(seen.value.iloc[0], 1))
    for label, key in [("ours", "ours"), ("LwF", "lwf"), ("EWC", "ewc"), ("L2 loss", "l2")]:
        run.report.metric(f"cifar_{key}_final_top1", round(last[label], 1))
    return seen


def _add_seen_top1(evidence: Evidence, name: str, result) -> None:
    """Per-query top-1 of the final model over every class seen (all tasks' test images)."""
    last = len(result.tasks) - 1
    values = [result.query_values("top-1", after_task=last, task=j) for j in range(last + 1)]
    query_set = "+".join(result.query_set(task=j) for j in range(last + 1))
    evidence.add(name, np.concatenate(values), query_set)


# --- Figure 5.5 ------------------------------------------------------------------------------

def old_class_embeddings(models: dict, split, classes, image_size: int, device: str):
    """Embeddings of the test images of ``classes`` under each model: label → (emb, labels)."""
    from ..data.torchsets import LabelledImageDataset
    from ..incremental.evaluation import embed

    dataset = LabelledImageDataset(split.test.subset(classes), image_size, train=False)
    return {label: embed(model, dataset, device) for label, model in models.items()}


def joint_tsne(embeddings: dict, seed: int = 0) -> pd.DataFrame:
    """One t-SNE map of all models' embeddings together, so that their positions compare."""
    from sklearn.manifold import TSNE

    stacked = np.concatenate([emb for emb, _ in embeddings.values()])
    perplexity = max(2.0, min(30.0, (len(stacked) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca",
                  random_state=seed).fit_transform(stacked)
    frames, start_at = [], 0
    for label, (emb, labels) in embeddings.items():
        part = points[start_at:start_at + len(emb)]
        frames.append(pd.DataFrame({"model": label, "x": part[:, 0], "y": part[:, 1],
                                    "class": labels.astype(str)}))
        start_at += len(emb)
    return pd.concat(frames, ignore_index=True)


def feature_drift(embeddings: dict, anchor: str) -> pd.Series:
    """MMD (Eq. 5.5) between the ``anchor`` model's embeddings and each other model's, on the
    same images."""
    import torch

    from ..losses import gaussian_mmd

    reference = torch.from_numpy(embeddings[anchor][0])
    return pd.Series({label: float(gaussian_mmd(reference, torch.from_numpy(emb),
                                                squared=False))
                      for label, (emb, _) in embeddings.items() if label != anchor})


def feature_maps(run: Session) -> tuple[pd.Series, pd.DataFrame]:
    """Fig. 5.5: old-class test features of the joint reference (the thesis' circles) and of
    the models trained with and without the MMD term (+ L_dist + L_mmd vs + L_dist), with the
    MMD distance of each to the reference; one t-SNE map for all of them."""
    name, seed = run.state["first"], run.seeds[0]
    split = run.state["splits"][name]
    classes = ex.one_step_tasks(split)[0][:6]
    ablated = run.state["ablation_models"]
    models = {"reference": run.state["one_step"][name][seed]["reference"].model,
              "without MMD": ablated["+ L_dist"], "with MMD": ablated["+ L_dist + L_mmd"]}
    embeddings = old_class_embeddings(models, split, classes, run.params["image_size"],
                                      run.device)
    drift = feature_drift(embeddings, anchor="reference")
    for s in run.seeds:
        run.state["evidence"][s].add(f"drift/{name}/with MMD", float(drift["with MMD"]))
        run.state["evidence"][s].add(f"drift/{name}/without MMD", float(drift["without MMD"]))
    return drift, joint_tsne(embeddings, run.params["seed"])


# --- claims ----------------------------------------------------------------------------------

def _diff(prefix: str, plus: str, minus: str, subset: str, metric: str = "R@1",
          threshold: float = 0.0) -> Comparison:
    """``plus − minus`` on ``subset`` ``metric`` of the evidence under ``prefix``."""
    return Comparison(f"{plus} − {minus}, {subset} {metric} ({prefix})",
                      (f"{prefix}/{plus}/{subset}/{metric}",),
                      (f"{prefix}/{minus}/{subset}/{metric}",), threshold)


def claim_specs(datasets: Sequence[str], extra: Sequence[str], first: str, run_all: bool,
                counts: Mapping[str, tuple[int, int]]
                ) -> list[tuple[str, str, str, list[Comparison]]]:
    """(id, statement, source, comparisons) of every claim this run can test; ``counts``:
    dataset → (fewer, all) new classes of Tables 5.4-5.5."""
    one = [f"one_step/{d}" for d in datasets]
    specs = [
        ("ch05.finetune_forgets", "Fine-tuning on the new classes forgets the old ones",
         "Tables 5.2, 5.3", [_diff(p, "initial model", "fine-tuning", "old") for p in one]),
        ("ch05.ours_keeps_old", "Distillation + MMD keeps more old-class Recall@1 than "
         "fine-tuning, LwF, EWC, ALASSO and the L2 loss", "Tables 5.2, 5.3",
         [_diff(p, "ours", b, "old") for p in one for b in BASELINES]),
        ("ch05.new_close", "Its new-class Recall@1 stays within 5 points of fine-tuning",
         "Tables 5.2, 5.3", [_diff(p, "ours", "fine-tuning", "new", threshold=-5.0)
                             for p in one]),
        ("ch05.learning_new_helps", "The unchanged initial model is worse on the new classes "
         "than the trained ones", "Tables 5.2, 5.3",
         [_diff(p, m, "initial model", "new") for p in one for m in ("fine-tuning", "ours")]),
        ("ch05.pr_above", "On the old classes the PR curve of ours encloses more area than "
         "fine-tuning's", "Figures 5.3a, 5.4a",
         [Comparison(f"ours − fine-tuning, old-class PR area ({d})", (f"pr/{d}/ours/old",),
                     (f"pr/{d}/fine-tuning/old",)) for d in datasets]),
    ]
    if run_all:
        specs += _claim_specs_all(extra, first, counts)
    return specs


def _claim_specs_all(extra: Sequence[str], first: str,
                     counts: Mapping[str, tuple[int, int]]) -> list:
    grid = f"grid/{first}"
    return [
        ("ch05.mmd_matters", "Adding L_mmd preserves the old classes more than adding L_dist",
         "Table 5.7", [_diff(f"ablation/{first}", "+ L_mmd", "+ L_dist", "old")]),
        ("ch05.beta_tradeoff", "A larger β raises old-class and lowers new-class Recall@1",
         "Table 5.8",
         [c for a in (0.1, 1.0) for c in (
             _diff(grid, grid_label(a, 10), grid_label(a, 0.1), "old"),
             _diff(grid, grid_label(a, 0.1), grid_label(a, 10), "new"))]),
        ("ch05.more_classes_more_forgetting", "Adding more classes at once makes the method "
         "forget more", "Tables 5.4, 5.5", [_counts_comparison(d, *counts[d]) for d in extra]),
        ("ch05.sequential_best", "With groups arriving one by one, ours ends best on the "
         "original classes", "Tables 5.9, 5.10",
         [_diff(f"sequential/{d}", "ours", b, "task0") for d in extra
          for b in ("fine-tuning", "LwF", "EWC", "L2 loss")]),
        ("ch05.mmd_closer_to_reference", "With the MMD term the old-class features stay "
         "closer to the reference model's", "Figure 5.5",
         [Comparison(f"drift without − with MMD ({first})", (f"drift/{first}/without MMD",),
                     (f"drift/{first}/with MMD",), unit="MMD")]),
        ("ch05.cifar_best", "On CIFAR-100 ours ends with the best top-1 accuracy over all seen "
         "classes", "Table 5.6",
         [Comparison(f"ours − {r}, top-1 over seen classes", ("cifar/ours/top-1",),
                     (f"cifar/{r}/top-1",)) for r in ("L2 loss", "EWC", "LwF")]),
    ]


def _counts_comparison(dataset: str, few: int, every: int) -> Comparison:
    prefix = f"counts/{dataset}"
    return Comparison(f"ours with {few} − with {every} new classes, old R@1 ({dataset})",
                      (f"{prefix}/{few}/ours/old/R@1",), (f"{prefix}/{every}/ours/old/R@1",))


def check_claims(run: Session) -> pd.DataFrame:
    """Evaluate every claim on the run's evidence (all seeds), record them, save the report."""
    counts = {name: (min(n), max(n)) for name in run.state["extra"]
              for n in [counts_settings(run.state["splits"][name])]}
    evidence = [run.state["evidence"][s] for s in run.seeds]
    specs = claim_specs(list(run.state["splits"]), run.state["extra"], run.state["first"],
                        run.state["all"], counts)
    for claim_id, statement, source, comparisons in specs:
        run.report.add_claim(evaluate_claim(claim_id, statement, source, comparisons, evidence))
    if not run.state["all"]:
        for claim_id in ALL_ONLY:
            run.report.skip_claim(claim_id, "experiments = 'main'")
    run.report.save()
    return run.report.claims_frame()


ALL_ONLY = ("ch05.mmd_matters", "ch05.beta_tradeoff", "ch05.more_classes_more_forgetting",
            "ch05.sequential_best", "ch05.mmd_closer_to_reference", "ch05.cifar_best")
