"""Experiment steps shared by the class-incremental chapters (5 and 6).

Open a dataset (synthetic in the official layout, or real), build the training configuration
from a chapter's parameters, run a set of methods over a task schedule once per seed, and turn
the results into long tables (averaged over the seeds) and per-query evidence for the claims.
The chapter modules (:mod:`irbook.chapters.ch05`, :mod:`irbook.chapters.ch06`) call these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..claims import Evidence
from ..constants import BACKBONE_NAMES
from ..data.errors import require
from ..data.finegrained import FOLDERS, HOW_TO_GET, ClassSplit, load_finegrained
from ..data.images import check_images
from ..data.synth.finegrained import ensure_finegrained
from ..data.tasks import incremental_schedule, thesis_old_fraction
from ..distributed import main_first
from ..metrics import RECALL_LEVELS
from ..params import Param
from ..paths import cache_dir, data_root
from ..progress import progress_bar
from ..protocol import describe_seeds
from .methods import make_method
from .runner import IncrementalConfig, IncrementalResult, run_incremental

MethodSpec = tuple[str, Mapping[str, Any]]
Seeded = dict[int, dict[str, IncrementalResult]]
"""seed → method label → result: what every experiment step returns."""

INCREMENTAL_PARAMS = (
    Param("dataset", str, "fine-grained dataset(s): both = CUB-200-2011 and Stanford Dogs",
          choices=("cub200", "dogs", "both")),
    Param("backbone", str, "network under the embedding head (googlenet stands in for "
          "BN-Inception)", choices=BACKBONE_NAMES),
    Param("pretrained", bool, "torchvision: ImageNet weights from the local torch cache; "
          "smallcnn: the stand-in pre-trained on disjoint synthetic classes"),
    Param("pretrain_epochs", int, "epochs of the smallcnn stand-in pre-training (shared with "
          "chapter 2)", low=1, high=500),
    Param("image_size", int, "training and test crop in pixels", low=16, high=512),
    Param("embedding_dim", int, "size of the L2-normalised embedding", low=8, high=2048),
    Param("epochs_first", int, "epochs on the old classes (first stage)", low=1, high=5000),
    Param("epochs_incremental", int, "epochs of every incremental stage", low=1, high=5000),
    Param("batches_per_epoch", int, "0: ceil(#classes / classes_per_batch), as in the "
          "reference code", low=0, high=100000),
    Param("lr", float, "Adam learning rate of the embedding head", low=1e-8, high=1.0),
    Param("backbone_lr_scale", float, "backbone learning rate = lr × this (thesis: 0.1)",
          low=0.0, high=1.0),
    Param("margin", float, "margin of the metric loss", low=0.0, high=2.0),
    Param("classes_per_batch", int, "P of the class-balanced P×K sampler", low=2, high=512),
    Param("samples_per_class", int, "K of the class-balanced P×K sampler", low=2, high=64),
    Param("experiments", str, "main: the one-step tables only; all: every table and figure",
          choices=("all", "main")),
    Param("experiment_datasets", str, "datasets of the experiments after the one-step tables: "
          "the first of dataset, or all", choices=("first", "all")),
)
"""Parameters of both incremental chapters (their profiles are in the chapter modules)."""


def synth_scale(profile: str) -> str:
    """Size of the synthetic data: the smoke profile gets the tiny preset."""
    return "smoke" if profile == "smoke" else "demo"


def datasets_of(choice: str) -> list[str]:
    """``both`` means CUB-200-2011 and Stanford Dogs, the two datasets of Chapters 5-6."""
    return ["cub200", "dogs"] if choice == "both" else [choice]


def experiment_datasets(params: Mapping[str, Any]) -> list[str]:
    """The datasets of the experiments after the one-step tables: the first one or all."""
    names = datasets_of(params["dataset"])
    return names if params["experiment_datasets"] == "all" else names[:1]


def preflight(params: Mapping[str, Any], extra: Iterable[str] = ()) -> None:
    """Fail before any work when a real dataset (``dataset`` and the ``extra`` ones), one of
    its images, or pretrained weights are missing or damaged."""
    from ..models import require_pretrained_weights

    if params["backbone"] != "smallcnn" and params["pretrained"]:
        require_pretrained_weights(params["backbone"])
    if params["synthetic"]:
        return
    root = data_root(False, params["data_root"])
    for name in [*datasets_of(params["dataset"]), *extra]:
        require(root / FOLDERS[name], name, HOW_TO_GET[name])
        split = load_finegrained(root, name)
        if not isinstance(split.train.items, np.ndarray):  # CIFAR holds arrays, not files
            check_images([*split.train.items, *split.test.items], name, sample=500)


def open_split(name: str, *, synthetic: bool, root: str | None, seed: int,
               profile: str) -> ClassSplit:
    """The thesis split of ``name``, writing the synthetic stand-in first when asked."""
    folder = data_root(synthetic, root)
    if synthetic:
        scale = synth_scale(profile)
        target = (folder if root else folder / scale) / "finegrained"
        # under torchrun rank 0 writes the data, then the others read it
        folder = main_first(lambda: ensure_finegrained(target, name, seed=seed, scale=scale))
    return load_finegrained(folder, name)  # real data: <root>/<official folder>/...


def open_splits(params: Mapping[str, Any], names: Iterable[str]) -> dict[str, ClassSplit]:
    return {name: open_split(name, synthetic=params["synthetic"], root=params["data_root"],
                             seed=params["seed"], profile=params["profile"]) for name in names}


def standin_weights(params: Mapping[str, Any], device: str) -> str | None:
    """With ``smallcnn`` and ``pretrained``: the cached stand-in pre-training (trained once, on
    synthetic classes disjoint from the fine-grained ones; shared with chapter 2)."""
    if params["backbone"] != "smallcnn" or not params["pretrained"]:
        return None
    from ..train.standin import standin_weights as cached

    # under torchrun every process trains it together (DDP) and rank 0 writes the cache
    return str(cached(seed=params["seed"], scale=synth_scale(params["profile"]),
                      epochs=params["pretrain_epochs"], device=device))


def describe_backbone(params: Mapping[str, Any]) -> str:
    """The backbone of a run in the words of the protocol tables."""
    if params["backbone"] == "smallcnn":
        return ("small CNN, stand-in pre-training on disjoint synthetic classes"
                if params["pretrained"] else "small CNN, random weights")
    name = "GoogLeNet Inception" if params["backbone"] == "googlenet" else params["backbone"]
    return f"{name}, ImageNet" if params["pretrained"] else f"{name}, random weights"


def common_protocol_values(params: Mapping[str, Any], datasets: str) -> dict[str, str]:
    """Protocol-table values shared by chapters 5 and 6 (``datasets``: how the chapter names
    its datasets, e.g. "CUB-200-2011, Stanford Dogs")."""
    p = params
    kind = "synthetic, in the official layouts" if p["synthetic"] else "real"
    return {
        "data": f"{datasets} ({kind})",
        "backbone": describe_backbone(p),
        "embedding": f"{p['embedding_dim']}-d, L2-normalised",
        "image size": f"{p['image_size']} px",
        "learning rates": f"head {p['lr']:g}, backbone {p['lr'] * p['backbone_lr_scale']:g}",
        "sampler": f"{p['classes_per_batch']} classes x {p['samples_per_class']} images",
        "evaluation": "query = gallery = test images of the evaluated classes, self excluded",
        "seeds": describe_seeds(p),
        "arithmetic": "fp32" if p["precision"] == "fp32" else "bf16 autocast in the training "
                      "step, fp32 weights and evaluation",
    }


CPU_BUDGET = "a 2-core CPU runs the profile in minutes"


def common_deviation_reasons(params: Mapping[str, Any]) -> dict[str, str]:
    """Reasons shared by chapters 5 and 6 for a profile's departures from the thesis."""
    return {
        "data": "the real datasets are not on this machine; the synthetic stand-ins are read "
                "by the same loaders",
        "backbone": f"{CPU_BUDGET}; ImageNet weights are not offline"
                    if params["backbone"] == "smallcnn"
                    else "set by the backbone / pretrained parameters",
        "embedding": CPU_BUDGET, "image size": CPU_BUDGET, "sampler": CPU_BUDGET,
        "epochs": f"{CPU_BUDGET}. The first stage is trained once per dataset and shared by every "
                  "method, each incremental stage once per method, so the budget buys a longer "
                  "first stage than the thesis' 1500 : 800 proportion would give",
        "learning rates": f"{CPU_BUDGET}: fewer steps need a larger rate (the thesis' 1 : 10 "
                          "ratio is kept)" if params["backbone_lr_scale"] == 0.1
                          else "set by the parameters",
        "reference": "the thesis trains the reference from ImageNet; here it continues from "
                     "the initial model so that every row shares the first stage",
        "metrics": "mAP is reported with the standard definition; the thesis' mAP may carry "
                   "the reference code's deflation",
        "seeds": "the thesis reports single runs without uncertainty",
        "arithmetic": "set by the precision parameter",
    }


def make_config(params: Mapping[str, Any], chapter: str, seed: int | None = None,
                **overrides: Any) -> IncrementalConfig:
    """The training configuration of a chapter run (``seed`` overrides the parameter, for the
    repeated runs); checkpoints live under ``data/cache``."""
    values = dict(
        image_size=params["image_size"], embedding_dim=params["embedding_dim"],
        epochs_first=params["epochs_first"], epochs_incremental=params["epochs_incremental"],
        batches_per_epoch=params["batches_per_epoch"] or None, lr=params["lr"],
        backbone_lr_scale=params["backbone_lr_scale"], margin=params["margin"],
        classes_per_batch=params["classes_per_batch"],
        samples_per_class=params["samples_per_class"],
        seed=params["seed"] if seed is None else seed,
        device=params["device"], backbone=params["backbone"],
        pretrained=params["pretrained"] and params["backbone"] != "smallcnn",
        num_workers=params["num_workers"], precision=params["precision"],
        checkpoint_dir=str(cache_dir() / "incremental" / chapter / params["profile"]),
    )
    values.update(overrides)
    return IncrementalConfig(**values)


def scaled_stages(config: IncrementalConfig, fraction: float,
                  batches_fixed: bool) -> IncrementalConfig:
    """``config`` for stages that see ``fraction`` of the new classes: with a fixed number of
    batches per epoch the incremental epochs shrink in proportion (each group gets as many
    updates per image as the one-step run); with the reference rule (``batches_per_epoch`` 0)
    the epochs already scale with the classes. The shared first stage is unchanged."""
    if not batches_fixed:
        return config
    from dataclasses import replace

    return replace(config, epochs_incremental=max(1, round(config.epochs_incremental * fraction)))


# --- schedules -------------------------------------------------------------------------------

def one_step_tasks(split: ClassSplit, n_new: int | None = None) -> list[np.ndarray]:
    """Old = the thesis share of the classes (half on CUB and Dogs); the new ones at once
    (Tables 5.2-5.3, 6.1-6.2), or only the first ``n_new`` of them (Tables 5.4-5.5)."""
    old, new = incremental_schedule(split.n_classes, None, thesis_old_fraction(split.name))
    return [old, new if n_new is None else new[:n_new]]


def group_tasks(split: ClassSplit, n_groups: int) -> list[np.ndarray]:
    """Old = the thesis share of the classes; the rest in ``n_groups`` equal groups (Tables
    5.6, 5.9-5.10; Figs. 6.7-6.10)."""
    return incremental_schedule(split.n_classes, n_groups, thesis_old_fraction(split.name))


def class_range(classes: Iterable[int]) -> str:
    """1-based range of a task's classes, as the thesis writes them ("101-125")."""
    classes = np.asarray(list(classes))
    return f"{classes.min() + 1}-{classes.max() + 1}"


def tracking_interval(epochs: int, points: int = 10) -> int:
    """Epochs between two old-class evaluations during a stage (Figs. 5.3c, 6.6a): about
    ``points`` per stage, at least one epoch apart."""
    return max(1, epochs // points)


def split_counts(split: ClassSplit, tasks: list[np.ndarray]) -> pd.DataFrame:
    """Images and classes per part (train/test) and class group (old = task 0, new = the rest,
    all), laid out like Table 5.1."""
    groups = {"old": tasks[0], "new": np.concatenate(tasks[1:]) if len(tasks) > 1 else
              np.array([], dtype=np.int64), "all": np.concatenate(tasks)}
    rows = [dict(split=part, classes=name, images=int(np.isin(labelled.labels, members).sum()),
                 n_classes=len(members))
            for part, labelled in (("train", split.train), ("test", split.test))
            for name, members in groups.items()]
    return pd.DataFrame(rows)


# --- running ---------------------------------------------------------------------------------

def run_methods(split: ClassSplit, tasks: list[np.ndarray], specs: Mapping[str, MethodSpec],
                config: IncrementalConfig, desc: str = "methods",
                **options: Any) -> dict[str, IncrementalResult]:
    """Run every method of ``specs`` (label → (method name, hyper-parameters, which may hold
    ``metric_loss``)) on ``tasks``; ``options`` go to :func:`run_incremental` (``eval_top1``,
    ``track_every``, ...). The first stage is trained once and shared through the cache."""
    results = {}
    for label, (name, hparams) in progress_bar(specs.items(), enabled=config.progress,
                                               desc=desc, total=len(specs)):
        results[label] = run_incremental(split, tasks, make_method(name, **hparams), config,
                                         **options)
    return results


def run_seeds(seeds: Iterable[int], split: ClassSplit, tasks: list[np.ndarray],
              specs: Mapping[str, MethodSpec], configure: Callable[[int], IncrementalConfig],
              desc: str = "methods", **options: Any) -> Seeded:
    """:func:`run_methods` once per seed, ``configure(seed)`` giving that seed's config."""
    return {seed: run_methods(split, tasks, specs, configure(seed), f"{desc} (seed {seed})",
                              **options) for seed in seeds}


def initial_model(split: ClassSplit, tasks: list[np.ndarray],
                  config: IncrementalConfig) -> IncrementalResult:
    """The model after task 0 alone, as every method starts from it (read from the cache)."""
    return run_incremental(split, tasks[:1], make_method("finetune"), config)


# --- tables ----------------------------------------------------------------------------------

def mean_over_seeds(seeded: Mapping[int, Any], table: Callable[[Any], pd.DataFrame],
                    value: str = "value") -> pd.DataFrame:
    """``table(results)`` for each seed, averaged over the seeds (row order of the first)."""
    frames = [table(results) for results in seeded.values()]
    keys = [c for c in frames[0].columns if c != value]
    stacked = pd.concat(frames, ignore_index=True)
    return stacked.groupby(keys, sort=False, dropna=False)[value].mean().reset_index()


def old_new_table(results: Mapping[str, IncrementalResult],
                  metrics: tuple[str, ...] = ("R@1", "mAP"),
                  initial: bool = True) -> pd.DataFrame:
    """Old / new / average per method after the last task (Tables 5.2-5.3, 6.1-6.2), long form
    (method, classes, metric, value). With ``initial``, a first block gives the model after the
    old classes only, used unchanged on the new ones (the thesis' "initial model")."""
    rows = []
    if initial and results:
        first = next(iter(results.values()))
        for metric in metrics:
            rows += _old_new_rows("initial model", metric, first.matrix(metric)[0, 0],
                                  _before_new(first, metric))
    for label, result in results.items():
        summary = result.old_new_average()
        for metric in metrics:
            rows += _old_new_rows(label, metric, summary.loc[metric, "old"],
                                  summary.loc[metric, "new"])
    return pd.DataFrame(rows)


def _before_new(result: IncrementalResult, metric: str) -> float:
    """Mean over the new tasks of each one's accuracy before it was trained on (one task:
    the initial model on the new classes)."""
    return float(result.before.query("metric == @metric and task > 0").value.mean())


def _old_new_rows(method: str, metric: str, old: float, new: float) -> list[dict[str, Any]]:
    values = {"old": old, "new": new, "average": (old + new) / 2}
    return [dict(method=method, classes=c, metric=metric, value=float(v))
            for c, v in values.items()]


def wide(table: pd.DataFrame, index: str | list[str] = "method") -> pd.DataFrame:
    """Rows = methods, columns = (metric, classes), rounded for display."""
    out = table.pivot_table(index=index, columns=["metric", "classes"], values="value",
                            sort=False)
    return out.round(1)


def first_task_curve(results: Mapping[str, IncrementalResult],
                     metric: str = "R@1") -> pd.DataFrame:
    """Accuracy on the original (task 0) classes after every task, per method (Tables 5.9-5.10,
    Figs. 6.8, 6.10)."""
    rows = [dict(method=label, after_task=step, value=float(value))
            for label, result in results.items()
            for step, value in enumerate(result.matrix(metric)[:, 0])]
    return pd.DataFrame(rows)


def group_table(results: Mapping[str, IncrementalResult], metric: str = "R@1") -> pd.DataFrame:
    """Accuracy on every class group after every task (Tables 5.9-5.10 with their per-group
    columns): rows (method, after_task, task, classes, value)."""
    rows = [dict(method=label, after_task=int(r.after_task), task=int(r.task),
                 classes=class_range(result.tasks[int(r.task)]), value=float(r.value))
            for label, result in results.items()
            for r in result.accuracy[result.accuracy.metric == metric].itertuples()]
    return pd.DataFrame(rows)


def forgetting_table(results: Mapping[str, IncrementalResult],
                     metric: str = "R@1") -> pd.DataFrame:
    """Average forgetting (Eq. 6.12) and average incremental accuracy after every task, per
    method (Fig. 6.7): rows (method, after_task, measure, value)."""
    rows = []
    for label, result in results.items():
        curve, matrix = result.forgetting_curve(metric), result.matrix(metric)
        for step in range(1, len(result.tasks)):
            rows.append(dict(method=label, after_task=step, measure="forgetting",
                             value=float(curve[step])))
            rows.append(dict(method=label, after_task=step, measure="average accuracy",
                             value=float(np.nanmean(matrix[step, : step + 1]))))
    return pd.DataFrame(rows)


def training_curves(results: Mapping[str, IncrementalResult], metric: str = "mAP",
                    task: int = 1) -> pd.DataFrame:
    """Original-class ``metric`` during incremental stage ``task``, per method (Fig. 5.3c):
    rows (method, epoch, value); the runs need ``track_every`` > 0."""
    frames = []
    for label, result in results.items():
        curve = result.training_curve(metric)
        frames.append(curve[curve.task == task].drop(columns="task").assign(method=label))
    return pd.concat(frames, ignore_index=True)[["method", "epoch", "value"]]


def seen_accuracy(results: Mapping[str, IncrementalResult]) -> pd.DataFrame:
    """Top-1 accuracy (%) over all classes seen so far after every task, per method (Table
    5.6): rows (method, after_task, classes_seen, value); the runs need ``eval_top1``."""
    rows = []
    for label, result in results.items():
        if result.seen.empty:
            raise ValueError(f"{label!r} was run without eval_top1: no seen-class accuracy")
        sizes = np.cumsum([len(t) for t in result.tasks])
        rows += [dict(method=label, after_task=int(r.after_task),
                      classes_seen=int(sizes[int(r.after_task)]), value=float(r.value))
                 for r in result.seen.itertuples()]
    return pd.DataFrame(rows)


def time_table(results: Mapping[str, IncrementalResult]) -> pd.DataFrame:
    """Training seconds per epoch of the incremental stages per method (Fig. 5.3d)."""
    rows = [dict(method=label, value=float(sum(result.train_seconds[1:])) / max(
                 1, sum(len(h) for h in result.histories[1:])))
            for label, result in results.items()]
    return pd.DataFrame(rows)


# --- thesis tables ---------------------------------------------------------------------------

def thesis_pivot(table: str, index: str | list[str], columns: str | list[str],
                 metric: str | None = "R@1", **where: Any) -> pd.DataFrame:
    """Thesis table ``table`` (long CSV) as a wide frame of ``metric`` (None: every metric, as
    a column level): rows ``index``, columns ``columns``, rows whose columns equal ``where``."""
    from ..thesis_tables import load_thesis_table

    thesis = load_thesis_table(table)
    keep = thesis["metric"] == metric if metric else np.ones(len(thesis), dtype=bool)
    for column, wanted in where.items():
        if column not in thesis.columns:
            raise ValueError(f"{column!r} is not a column of Table {table}; columns: "
                             f"{list(thesis.columns)}")
        keep &= thesis[column] == wanted
    return thesis[keep].pivot_table(index=index, columns=columns, values="value", sort=False)


THESIS_DATASET_NAMES = {"cub200": "CUB-200", "dogs": "Stanford-Dogs"}


def thesis_beside(table: pd.DataFrame, sources: Mapping[str, str], profile: str,
                  report=None) -> dict[str, pd.DataFrame]:
    """Per dataset of ``sources`` (dataset → thesis table, e.g. ``{"cub200": "5.2"}``): the
    thesis table's every metric, this run's :func:`old_new_table` rows of that dataset
    (``table`` has a ``dataset`` column) and their difference, in one table
    (:func:`irbook.thesis_tables.beside`)."""
    from ..thesis_tables import beside

    out = {}
    for name, source in sources.items():
        thesis = thesis_pivot(source, index="method", columns=["metric", "classes"],
                              metric=None, dataset=THESIS_DATASET_NAMES[name])
        out[name] = beside(source, thesis, wide(table[table.dataset == name]), profile, report)
    return out


def value(table: pd.DataFrame, method: str, classes: str, metric: str = "R@1") -> float:
    """One number of an :func:`old_new_table`."""
    hit = table[(table.method == method) & (table.classes == classes) & (table.metric == metric)]
    if hit.empty:
        raise KeyError(f"no {metric} for {method!r} on {classes} classes")
    return float(hit.value.iloc[0])


# --- evidence for the claims -----------------------------------------------------------------

def add_old_new(evidence: Evidence, prefix: str, results: Mapping[str, IncrementalResult],
                metrics: Iterable[str] = ("R@1",), initial: bool = True) -> None:
    """Per-query values of the final old/new evaluations as ``<prefix>/<label>/<classes>/
    <metric>`` (and the initial model's, before any new class, as label "initial model")."""
    for metric in metrics:
        if initial and results:
            first = next(iter(results.values()))
            add_finite(evidence, f"{prefix}/initial model/old/{metric}",
                       first.query_values(metric, after_task=0, task=0), first.query_set(task=0))
            if len(first.tasks) == 2:
                add_finite(evidence, f"{prefix}/initial model/new/{metric}",
                           first.query_values(metric, task=1, before=True),
                           first.query_set(task=1))
        for label, result in results.items():
            for subset in ("old", "new"):
                add_finite(evidence, f"{prefix}/{label}/{subset}/{metric}",
                           result.query_values(metric, subset=subset),
                           result.query_set(subset=subset))


def add_finite(evidence: Evidence, name: str, values: np.ndarray, query_set: str) -> None:
    """Add per-query ``values`` without their NaN entries (a query alone in its class has no AP;
    which queries those are depends on the labels only, so the arrays still pair)."""
    values = np.asarray(values, dtype=float)
    evidence.add(name, values[~np.isnan(values)], query_set)


def add_after(evidence: Evidence, prefix: str, results: Mapping[str, IncrementalResult],
              task: int, after_task: int | None = None, metric: str = "R@1") -> None:
    """Per-query values on ``task`` after ``after_task`` (default: the last) as
    ``<prefix>/<label>/task<task>/<metric>``."""
    for label, result in results.items():
        step = len(result.tasks) - 1 if after_task is None else after_task
        add_finite(evidence, f"{prefix}/{label}/task{task}/{metric}",
                   result.query_values(metric, after_task=step, task=task),
                   result.query_set(task=task))


def pr_matrix(result: IncrementalResult, split: ClassSplit, classes: np.ndarray,
              config: IncrementalConfig) -> np.ndarray:
    """(N, levels) interpolated precision (percent) of every test query of ``classes``."""
    from ..data.torchsets import LabelledImageDataset
    from ..device import resolve_device
    from .evaluation import embed, per_query_precision_recall

    dataset = LabelledImageDataset(split.test.subset(classes), config.image_size, train=False)
    emb, labels = embed(result.model, dataset, resolve_device(config.device),
                        config.eval_batch_size)
    return 100 * per_query_precision_recall(emb, labels, RECALL_LEVELS)


def pr_curves(results: Mapping[str, IncrementalResult], split: ClassSplit,
              config: IncrementalConfig) -> tuple[pd.DataFrame, dict[tuple[str, str], Any]]:
    """Mean precision-recall curves of each final model on the old and the new classes (Figs.
    5.3a-b) as rows (method, classes, recall, precision), and the per-query areas under them
    ((label, classes) → array) for the claims."""
    rows, areas = [], {}
    for label, result in results.items():
        for classes, members in (("old", result.tasks[0]),
                                 ("new", np.concatenate(result.tasks[1:]))):
            precision = pr_matrix(result, split, members, config)
            precision = precision[~np.isnan(precision).any(axis=1)]  # queries alone in a class
            areas[(label, classes)] = np.trapezoid(precision, RECALL_LEVELS, axis=1)
            rows += [dict(method=label, classes=classes, recall=100 * r, precision=p)
                     for r, p in zip(RECALL_LEVELS, precision.mean(axis=0), strict=True)]
    return pd.DataFrame(rows), areas
