"""The experiments of Chapters 5 and 6, as the notebooks call them.

Each function is one step of a chapter: open a dataset (synthetic in the official layout, or
real), build the training configuration from the chapter's parameters, run a set of methods
over a task schedule, and turn the results into the tables that stand beside the thesis'.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.errors import require
from ..data.finegrained import FOLDERS, HOW_TO_GET, ClassSplit, load_finegrained
from ..data.synth.finegrained import ensure_finegrained
from ..data.tasks import scaled_schedule, task_classes
from ..metrics import RECALL_LEVELS
from ..paths import cache_dir, data_root
from ..progress import progress_bar
from .methods import make_method
from .runner import IncrementalConfig, IncrementalResult, run_incremental

MethodSpec = tuple[str, Mapping[str, Any]]


def synth_scale(profile: str) -> str:
    """Size of the synthetic data: the smoke profile gets the tiny preset."""
    return "smoke" if profile == "smoke" else "demo"


def datasets_of(choice: str) -> list[str]:
    """``both`` means CUB-200-2011 and Stanford Dogs, the two datasets of Chapters 5-6."""
    return ["cub200", "dogs"] if choice == "both" else [choice]


def preflight(params: Mapping[str, Any]) -> None:
    """Fail before any work when a real dataset or pretrained weights are missing."""
    from ..models import require_pretrained_weights

    if params["backbone"] != "smallcnn" and params["pretrained"]:
        require_pretrained_weights(params["backbone"])
    if not params["synthetic"]:
        root = data_root(False, params["data_root"])
        for name in datasets_of(params["dataset"]):
            require(root / FOLDERS[name], name, HOW_TO_GET[name])


def open_split(name: str, *, synthetic: bool, root: str | None, seed: int,
               profile: str) -> ClassSplit:
    """The thesis split of ``name``, writing the synthetic stand-in first when asked."""
    folder = data_root(synthetic, root)
    if synthetic:
        scale = synth_scale(profile)
        folder = ensure_finegrained((folder if root else folder / scale) / "finegrained",
                                    name, seed=seed, scale=scale)
    return load_finegrained(folder, name)


def make_config(params: Mapping[str, Any], chapter: str, **overrides: Any) -> IncrementalConfig:
    """The training configuration of a chapter run; checkpoints live under ``data/cache``."""
    values = dict(
        image_size=params["image_size"], embedding_dim=params["embedding_dim"],
        epochs_first=params["epochs_first"], epochs_incremental=params["epochs_incremental"],
        batches_per_epoch=params["batches_per_epoch"] or None, lr=params["lr"],
        backbone_lr_scale=params["backbone_lr_scale"], margin=params["margin"],
        classes_per_batch=params["classes_per_batch"],
        samples_per_class=params["samples_per_class"], seed=params["seed"],
        device=params["device"], backbone=params["backbone"],
        pretrained=params["pretrained"] and params["backbone"] != "smallcnn",
        checkpoint_dir=str(cache_dir() / "incremental" / chapter / params["profile"]),
    )
    values.update(overrides)
    return IncrementalConfig(**values)


def group_config(params: Mapping[str, Any], chapter: str, fraction: float,
                 **overrides: Any) -> IncrementalConfig:
    """The configuration for stages that see ``fraction`` of the new classes.

    With a fixed number of batches per epoch, the incremental epochs shrink in proportion, so
    that each group gets as many updates per image as the one-step run; the first stage (old
    classes) is unchanged and shared. With 0 (the reference rule) epochs already scale.
    ``overrides`` are further :func:`make_config` settings.
    """
    if params["batches_per_epoch"]:
        epochs = max(1, round(params["epochs_incremental"] * fraction))
        overrides = {"epochs_incremental": epochs, **overrides}
    return make_config(params, chapter, **overrides)


def thesis_tasks(split: ClassSplit) -> list[np.ndarray]:
    """The thesis schedule of ``split`` (old classes, then equal groups), scaled to its size."""
    schedule = scaled_schedule(split.name, split.n_classes)
    return task_classes(split.n_classes, schedule["n_old"], schedule["group_size"])


def tracking_interval(epochs: int, points: int = 10) -> int:
    """Epochs between two old-class evaluations during a stage (Figs. 5.3c, 6.6a): about ``points``
    per stage, at least one epoch apart."""
    return max(1, epochs // points)


def one_step_tasks(split: ClassSplit, old_fraction: float = 0.5,
                   group_size: int | None = None) -> list[np.ndarray]:
    """Old classes = the first ``old_fraction`` of the classes; new ones at once or in groups."""
    n_old = max(1, round(split.n_classes * old_fraction))
    return task_classes(split.n_classes, n_old, group_size)


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


def run_methods(split: ClassSplit, tasks: list[np.ndarray], specs: Mapping[str, MethodSpec],
                config: IncrementalConfig, desc: str = "methods",
                **options: Any) -> dict[str, IncrementalResult]:
    """Run every method of ``specs`` (label → (method name, hyper-parameters)) on ``tasks``;
    ``options`` go to :func:`run_incremental` (``eval_top1``, ``track_every``, ...).

    The first stage (old classes) is trained once and shared through the checkpoint cache.
    """
    results = {}
    for label, (name, hparams) in progress_bar(specs.items(), enabled=config.progress,
                                               desc=desc, total=len(specs)):
        results[label] = run_incremental(split, tasks, make_method(name, **hparams), config,
                                         **options)
    return results


def old_new_table(results: Mapping[str, IncrementalResult],
                  metrics: tuple[str, ...] = ("R@1", "mAP"),
                  initial: bool = True) -> pd.DataFrame:
    """Old / new / average per method after the last task (Tables 5.2-5.3, 6.1-6.2), long form.

    With ``initial``, a first row block gives the model after the old classes only, used
    unchanged on the new ones (the thesis' "initial model" / "w feature extraction").
    """
    rows = []
    if initial and results:
        first = next(iter(results.values()))
        for metric in metrics:
            old = first.matrix(metric)[0, 0]
            new = float(first.before.query("metric == @metric and task > 0").value.mean())
            rows += _old_new_rows("initial model", metric, old, new)
    for label, result in results.items():
        summary = result.old_new_average()
        for metric in metrics:
            rows += _old_new_rows(label, metric, summary.loc[metric, "old"],
                                  summary.loc[metric, "new"])
    return pd.DataFrame(rows)


def _old_new_rows(method: str, metric: str, old: float, new: float) -> list[dict[str, Any]]:
    values = {"old": old, "new": new, "average": (old + new) / 2}
    return [dict(method=method, classes=c, metric=metric, value=float(v))
            for c, v in values.items()]


def wide(table: pd.DataFrame, index: str = "method") -> pd.DataFrame:
    """Rows = methods, columns = (metric, classes), rounded for display."""
    out = table.pivot_table(index=index, columns=["metric", "classes"], values="value",
                            sort=False)
    return out.round(1)


def first_task_curve(results: Mapping[str, IncrementalResult],
                     metric: str = "R@1") -> pd.DataFrame:
    """Accuracy on the original (task 0) classes after every task, per method (Tables 5.9-5.10,
    Fig. 6.10)."""
    rows = [dict(method=label, after_task=step, value=float(value))
            for label, result in results.items()
            for step, value in enumerate(result.matrix(metric)[:, 0])]
    return pd.DataFrame(rows)


def forgetting_table(results: Mapping[str, IncrementalResult],
                     metric: str = "R@1") -> pd.DataFrame:
    """Average forgetting (Eq. 6.12) after every task, per method (Fig. 6.7)."""
    rows = [dict(method=label, after_task=step, forgetting=float(value))
            for label, result in results.items()
            for step, value in enumerate(result.forgetting_curve(metric)) if step > 0]
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


def pr_curves(results: Mapping[str, IncrementalResult], split: ClassSplit,
              config: IncrementalConfig) -> pd.DataFrame:
    """Precision-recall curves of each final model on the old and on the new classes (Figs.
    5.3a-b): rows (method, classes, recall, precision), both in percent."""
    from ..data.torchsets import LabelledImageDataset
    from ..device import resolve_device
    from .evaluation import embed, precision_recall

    rows = []
    for label, result in results.items():
        subsets = {"old": result.tasks[0], "new": np.concatenate(result.tasks[1:])}
        for classes, members in subsets.items():
            dataset = LabelledImageDataset(split.test.subset(members), config.image_size,
                                           train=False)
            emb, labels = embed(result.model, dataset, resolve_device(config.device),
                                config.eval_batch_size)
            curve = precision_recall(emb, labels)
            rows += [dict(method=label, classes=classes, recall=100 * r, precision=100 * p)
                     for r, p in zip(RECALL_LEVELS, curve, strict=True)]
    return pd.DataFrame(rows)


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
    """Training seconds of the incremental stages per method (Fig. 5.3d), first stage excluded."""
    rows = [dict(method=label, seconds=float(sum(result.train_seconds[1:])))
            for label, result in results.items()]
    return pd.DataFrame(rows)


def thesis_old_new(table: str, dataset: str, methods: Mapping[str, str],
                   metric: str = "R@1") -> pd.DataFrame:
    """Rows of a thesis table (long CSV) for ``dataset``, renamed to this book's labels."""
    from ..thesis_tables import load_thesis_table

    thesis = load_thesis_table(table)
    keep = thesis[(thesis["dataset"].str.lower().str.contains(dataset_key(dataset)))
                  & (thesis["metric"] == metric) & thesis["method"].isin(methods)]
    keep = keep.assign(method=keep["method"].map(methods))
    return keep.pivot_table(index="method", columns="classes", values="value", sort=False)


def thesis_pivot(table: str, index: str | list[str], columns: str | list[str],
                 metric: str = "R@1", **where: Any) -> pd.DataFrame:
    """Thesis table ``table`` (long CSV) as a wide frame of ``metric``: rows ``index``, columns
    ``columns``, keeping the rows whose columns equal the ``where`` values."""
    from ..thesis_tables import load_thesis_table

    thesis = load_thesis_table(table)
    keep = thesis["metric"] == metric
    for column, wanted in where.items():
        if column not in thesis.columns:
            raise ValueError(f"{column!r} is not a column of Table {table}; columns: "
                             f"{list(thesis.columns)}")
        keep &= thesis[column] == wanted
    return thesis[keep].pivot_table(index=index, columns=columns, values="value", sort=False)


def experiment_datasets(params: Mapping[str, Any]) -> list[str]:
    """The datasets of the experiments after the one-step tables: the first one or all."""
    names = datasets_of(params["dataset"])
    return names if params["experiment_datasets"] == "all" else names[:1]


def dataset_key(name: str) -> str:
    """How the thesis tables name a dataset (lower case)."""
    return {"cub200": "cub", "dogs": "dog"}.get(name, name)


def value(table: pd.DataFrame, method: str, classes: str, metric: str = "R@1") -> float:
    """One number of an :func:`old_new_table`."""
    hit = table[(table.method == method) & (table.classes == classes) & (table.metric == metric)]
    if hit.empty:
        raise KeyError(f"no {metric} for {method!r} on {classes} classes")
    return float(hit.value.iloc[0])


def checkpoint_root(config: IncrementalConfig) -> Path:
    return Path(config.checkpoint_dir or cache_dir())
