"""The class-incremental protocol of chapters 5 and 6: train task 0, then each later task with a
method, evaluating every task seen so far after each stage.

Task 0 (the "initial model" A(1-100) / f_0(1-100)) is trained once per configuration and
cached under ``checkpoint_dir/first_stage/<hash>.pt``, so every method starts from the same
model. Each later stage is trained with :func:`irbook.train.loop.fit` (per-epoch atomic
checkpoints, exact resume), on class-balanced P x K batches of the new classes only (all seen
classes for ``joint``), and saved as ``checkpoint_dir/<method>/<hash>/task<t>.pt``; a rerun
loads finished stages and resumes an interrupted one. Checkpoints hold tensors and plain data
only (weights, method states, evaluation rows with every query's values) and are read with
:func:`irbook.train.loop.load_checkpoint` (``weights_only=True``); an unreadable one is moved
aside with a warning and its stage is trained again.

Optimiser (thesis Sections 5.4.1 and 6.4.1): Adam with learning rate 1e-5 for the embedding
and classifier layers and 1e-6 for the backbone (``backbone_lr_scale = 0.1``); weight decay
5e-4 as in the reference code, which declared the per-layer multiplier but did not apply it
(``backbone_lr_scale = 1`` reproduces that).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from irbook import distributed as dist
from irbook.data.loading import batch_loader
from irbook.data.samplers import ClassBalancedBatchSampler, class_balanced_sampler
from irbook.device import resolve_device
from irbook.incremental.evaluation import (
    DatasetFactory,
    default_dataset_factory,
    embed,
    embed_with_logits,
    metric_names,
    per_query_metrics,
    per_query_top1,
    retrieval_metrics,
    summarize_per_query,
    top1_accuracy,
)
from irbook.incremental.methods import (
    METRIC_LOSSES,
    FirstStage,
    Method,
    TaskContext,
    instantiate,
    make_method,
    stage_accuracy_change,
)
from irbook.metrics.continual import (
    average_incremental_accuracy,
    forgetting_curve,
    old_new_summary,
)
from irbook.models import BACKBONES, EMBEDDING_POOLINGS, EmbeddingNet, make_backbone
from irbook.progress import progress_bar
from irbook.train.loop import (
    PRECISIONS,
    atomic_save,
    fit,
    load_checkpoint,
    move_to_device,
    seed_everything,
)

__all__ = ["IncrementalConfig", "IncrementalResult", "build_model", "frozen_copy", "make_optimizer",
           "run_incremental"]

CACHE_VERSION = 2  # 2: stage checkpoints hold per-query values and plain method states


@dataclass(frozen=True)
class IncrementalConfig:
    """Settings of one incremental run. Defaults follow the thesis / reference code.

    ``epochs_first``: 1500 reference-code epochs for task 0; ``epochs_incremental``: 800 per
    later task (Section 5.4.1). An epoch is ``batches_per_epoch`` P x K batches, by default
    ``ceil(#classes / P)`` as in the reference code (each class once). ``margin`` is the
    metric-loss margin (0.1 in the reference code; chapter 5 used 0.5). ``first_stage_ce_weight``
    adds cross-entropy to task 0's training (chapter 5; chapter 6 uses 0) and
    ``first_stage_metric_loss`` (one of :data:`~irbook.incremental.methods.METRIC_LOSSES`) is
    its ranking loss (chapter 6: the pair loss of the author's code). ``backbone`` is a
    name of :data:`irbook.models.BACKBONES` (``googlenet`` stands in for BN-Inception);
    ``backbone_weights`` an optional state-dict file for it (e.g. a
    :func:`irbook.train.pretrain_classifier` cache). ``train_bn=False`` keeps BatchNorm
    statistics frozen as the reference code did. ``checkpoint_dir=None`` caches nothing.
    """

    image_size: int = 224
    embedding_dim: int = 512
    epochs_first: int = 1500
    epochs_incremental: int = 800
    lr: float = 1e-5
    backbone_lr_scale: float = 0.1
    weight_decay: float = 5e-4
    classes_per_batch: int = 16
    samples_per_class: int = 5
    batches_per_epoch: int | None = None
    margin: float = 0.1
    first_stage_ce_weight: float = 1.0
    first_stage_metric_loss: str = "triplet"
    seed: int = 0
    device: str = "auto"
    backbone: str = "googlenet"
    pretrained: bool = True
    backbone_weights: str | None = None
    pooling: str = "max"
    train_bn: bool = True
    eval_batch_size: int = 64
    num_workers: int = 0
    precision: str = "fp32"
    checkpoint_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        positive = ("image_size", "embedding_dim", "classes_per_batch", "samples_per_class",
                    "eval_batch_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        for name in ("epochs_first", "epochs_incremental", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        if self.batches_per_epoch is not None and self.batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1 or None; got "
                             f"{self.batches_per_epoch}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got "
                             f"{self.precision!r}")
        if self.first_stage_metric_loss not in METRIC_LOSSES:
            raise ValueError(f"first_stage_metric_loss must be one of {', '.join(METRIC_LOSSES)};"
                             f" got {self.first_stage_metric_loss!r}")
        for name in ("lr", "backbone_lr_scale", "weight_decay", "margin", "first_stage_ce_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.samples_per_class < 2:
            raise ValueError("samples_per_class must be >= 2 (the metric losses need positives);"
                             f" got {self.samples_per_class}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got "
                             f"{self.backbone!r}")
        if self.pooling not in EMBEDDING_POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(EMBEDDING_POOLINGS)}; got "
                             f"{self.pooling!r}")
        resolve_device(self.device)


def build_model(config: IncrementalConfig, num_classes: int = 0) -> EmbeddingNet:
    """The :class:`EmbeddingNet` of ``config``, initialised from ``config.seed``."""
    torch.manual_seed(config.seed)
    backbone = make_backbone(config.backbone, pretrained=config.pretrained)
    if config.backbone_weights is not None:
        payload = torch.load(config.backbone_weights, map_location="cpu", weights_only=True)
        backbone.load_state_dict(payload.get("state_dict", payload))
    return EmbeddingNet(backbone, dim=config.embedding_dim, pooling=config.pooling,
                        num_classes=num_classes, train_bn=config.train_bn)


# --------------------------------------------------------------------------- result

QueryKey = tuple[str, int, int]
"""(kind, after_task, task) of one evaluation: ``("after", i, j)``, ``("before", j - 1, j)``,
``("old", last, 0)`` and ``("new", last, -1)``, as in the rows of :class:`IncrementalResult`."""


@dataclass
class IncrementalResult:
    """Evaluations and artefacts of one run.

    ``accuracy``: long table (after_task, task, metric, value) of every seen task after each
    stage; ``before``: (task, metric, value), each task evaluated by the model just before it
    was trained on it (the "feature extraction" rows of Tables 5.2-5.3 for task 1);
    ``old_new``: (subset, metric, value) of the final model on task 0 ("old") and on the union
    of later tasks ("new"); ``seen``: (after_task, metric, value), with ``eval_top1`` the top-1
    accuracy over the test images of every class seen so far (Table 5.6). Metrics are in
    percent; times in seconds of training per task. With ``track_every``, the ``histories`` of
    the incremental stages hold ``"old <metric>"`` entries (see :meth:`training_curve`).
    ``per_query`` holds every evaluation's per-query values (see :meth:`query_values`) and
    ``split_id`` names the test set they come from (see :meth:`query_set`).
    """

    method: str
    hparams: dict[str, Any]
    tasks: list[np.ndarray]
    accuracy: pd.DataFrame
    before: pd.DataFrame
    old_new: pd.DataFrame
    train_seconds: list[float]
    histories: list[list[dict[str, Any]]]
    first_stage_cached: bool
    model: EmbeddingNet
    model_state: dict[str, torch.Tensor] = field(repr=False)
    seen: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_query: dict[QueryKey, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    split_id: str = ""

    def matrix(self, metric: str = "R@1") -> np.ndarray:
        """(T, T) matrix ``[after_task, task]`` of ``metric``, NaN above the diagonal."""
        rows = self.accuracy[self.accuracy.metric == metric]
        if rows.empty:
            raise ValueError(f"metric must be one of {sorted(self.accuracy.metric.unique())}; "
                             f"got {metric!r}")
        size = len(self.tasks)
        matrix = np.full((size, size), np.nan)
        matrix[rows.after_task.to_numpy(), rows.task.to_numpy()] = rows.value.to_numpy()
        return matrix

    def before_vector(self, metric: str = "R@1") -> np.ndarray:
        """(T,) accuracy on each task of the model just before it trained on it (NaN for task
        0, and where not measured)."""
        vector = np.full(len(self.tasks), np.nan)
        rows = self.before[self.before.metric == metric]
        vector[rows.task.to_numpy(dtype=int)] = rows.value.to_numpy()
        return vector

    def accuracy_change(self, stage: int = 1, metric: str = "mAP") -> tuple[float, float]:
        """``(α_drop, α_gain)`` of Eq. 6.6 for ``stage``, read as :class:`CorrelationFE` reads
        them (:func:`~irbook.incremental.methods.stage_accuracy_change`)."""
        return stage_accuracy_change(self.matrix(metric), self.before_vector(metric), stage)

    def old_new_average(self) -> pd.DataFrame:
        """Final model: old, new, their average and harmonic mean per metric (Table 6.1)."""
        if self.old_new.empty or "new" not in set(self.old_new.subset):
            raise ValueError("old_new_average needs at least one task after task 0")
        old = self.old_new[self.old_new.subset == "old"].set_index("metric").value
        new = self.old_new[self.old_new.subset == "new"].set_index("metric").value
        summary = old_new_summary(old.to_dict(), new.to_dict())
        return pd.DataFrame(summary).T.loc[list(old.index)]

    def forgetting_curve(self, metric: str = "R@1") -> np.ndarray:
        """Eq. 6.12 after each task (NaN for task 0)."""
        return forgetting_curve(self.matrix(metric))

    def forgetting(self, metric: str = "R@1") -> float:
        """Eq. 6.12 after the last task."""
        return float(self.forgetting_curve(metric)[-1])

    def average_incremental_accuracy(self, metric: str = "R@1") -> float:
        return average_incremental_accuracy(self.matrix(metric))

    def training_curve(self, metric: str = "mAP") -> pd.DataFrame:
        """Task-0 ``metric`` during every incremental stage (Fig. 5.3c): rows (task, epoch,
        value); epoch 0 is the model the stage started from. Needs ``track_every`` > 0."""
        key = f"old {metric}"
        rows = []
        for task in range(1, len(self.tasks)):
            tracked = [(r["epoch"], r[key]) for r in self.histories[task] if key in r]
            if not tracked:
                continue
            rows.append({"task": task, "epoch": 0, "value": self.matrix(metric)[task - 1, 0]})
            rows += [{"task": task, "epoch": e, "value": v} for e, v in tracked]
        if not rows:
            raise ValueError(f"no {key!r} was tracked: run with track_every > 0")
        return pd.DataFrame(rows)

    def query_values(self, metric: str, after_task: int | None = None, task: int | None = None,
                     subset: str | None = None, before: bool = False) -> np.ndarray:
        """Per-query values of one evaluation, in test-set order (their mean is the table value).

        Exactly one of: ``after_task`` and ``task`` (task j under the model after stage i);
        ``task`` with ``before=True`` (task j under the model just before it trained on j);
        ``subset`` "old" or "new" (the final model's groups of :attr:`old_new`). Recall and
        top-1 values are 0 or 100; mAP is 100 x the query's AP, NaN for a query alone in its
        class. :meth:`query_set` names the queries, so values can be paired across methods.
        """
        key = self._query_key(after_task, task, subset, before)
        if key not in self.per_query:
            raise ValueError(f"no per-query values for {key}; evaluated: "
                             f"{sorted(self.per_query)}")
        values = self.per_query[key]
        if metric not in values:
            raise ValueError(f"metric must be one of {sorted(values)}; got {metric!r}")
        return values[metric]

    def _query_key(self, after_task: int | None, task: int | None, subset: str | None,
                   before: bool) -> QueryKey:
        last = len(self.tasks) - 1
        if subset is not None:
            if after_task is not None or task is not None or before:
                raise ValueError("give either subset, or task (with before=True), or "
                                 "after_task and task")
            if subset not in ("old", "new"):
                raise ValueError(f"subset must be 'old' or 'new'; got {subset!r}")
            return (subset, last, 0 if subset == "old" else -1)
        if before:
            if task is None or after_task is not None:
                raise ValueError("before=True takes task only (the model before task j is "
                                 "the one after task j - 1)")
            return ("before", int(task) - 1, int(task))
        if after_task is None or task is None:
            raise ValueError("give after_task and task, task with before=True, or subset")
        return ("after", int(after_task), int(task))

    def query_set(self, task: int | None = None, subset: str | None = None) -> str:
        """A key naming the test images of ``tasks[task]`` or of the ``subset`` "old" (task 0)
        or "new" (tasks 1..): split name, test-set digest and the sha1 of the sorted class
        list. The same for every method and run on the same split and classes."""
        if (task is None) == (subset is None):
            raise ValueError("give exactly one of task and subset")
        if subset is not None:
            if subset not in ("old", "new") or (subset == "new" and len(self.tasks) < 2):
                raise ValueError(f"subset must be 'old' or 'new' (with >= 2 tasks); got "
                                 f"{subset!r}")
            classes = self.tasks[0] if subset == "old" else np.concatenate(self.tasks[1:])
        else:
            classes = self.tasks[task]
        listed = ",".join(str(c) for c in sorted(int(c) for c in classes))
        return f"{self.split_id}/{hashlib.sha1(listed.encode()).hexdigest()[:16]}"


# --------------------------------------------------------------------------- helpers


def config_digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hash_labelled(sha: Any, labelled: Any) -> None:
    """Feed the labels and items (image arrays or paths) of a LabelledSet to ``sha``."""
    sha.update(np.ascontiguousarray(labelled.labels).tobytes())
    if isinstance(labelled.items, np.ndarray):
        sha.update(np.ascontiguousarray(labelled.items).tobytes())
    else:
        sha.update("\n".join(str(item) for item in labelled.items).encode())


def _dataset_digest(split: Any) -> str:
    sha = hashlib.sha1(f"{split.name}|{split.split}|{split.n_classes}".encode())
    for labelled in (split.train, split.test):
        hash_labelled(sha, labelled)
    return sha.hexdigest()[:16]


def _split_id(split: Any) -> str:
    """``name/split/<test-set digest>``: the prefix of :meth:`IncrementalResult.query_set`."""
    sha = hashlib.sha1()
    hash_labelled(sha, split.test)
    return f"{split.name}/{split.split}/{sha.hexdigest()[:8]}"


def file_digest(path: str | None) -> str | None:
    return None if path is None else hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


class RemappedLabels(Dataset):
    """A dataset whose labels are replaced by classifier indices."""

    def __init__(self, dataset: Dataset, index_of: np.ndarray):
        self.dataset, self.index_of = dataset, index_of

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image, label = self.dataset[i]
        return image, int(self.index_of[int(label)])


class _WithMethodState(nn.Module):
    """The trained network, with the method's state in its ``state_dict`` so that fit()'s
    per-epoch checkpoint holds both atomically (used when the state changes during fit)."""

    def __init__(self, net: nn.Module, method: Method, device: torch.device):
        super().__init__()
        self.net = net
        self._method, self._device = method, device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def get_extra_state(self) -> Any:
        return self._method.state_dict()

    def set_extra_state(self, state: Any) -> None:
        self._method.load_state_dict(move_to_device(state, self._device))


def _summary(metric: str, values: np.ndarray) -> float:
    """The table value of per-query ``values``: their mean (mAP: over the non-NaN ones)."""
    return summarize_per_query({metric: values})[metric]


@dataclass
class _Run:
    """Everything one call of run_incremental shares between its stages, and what it collects
    (evaluation rows, per-query values, seconds and histories of every stage)."""

    split: Any
    tasks: list[np.ndarray]
    config: IncrementalConfig
    device: torch.device
    factory: DatasetFactory
    ks: tuple[int, ...]
    index_of: np.ndarray
    accuracy: dict[str, np.ndarray]
    before: dict[str, np.ndarray]
    top1: bool = False
    track_every: int = 0
    dataset_digest: str = ""
    split_id: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    per_query: dict[QueryKey, dict[str, np.ndarray]] = field(default_factory=dict)
    train_seconds: list[float] = field(default_factory=list)
    histories: list[list[dict[str, Any]]] = field(default_factory=list)

    def loader(self, classes: np.ndarray, seed: int,
               share: bool = True) -> tuple[DataLoader, ClassBalancedBatchSampler]:
        """P x K batches of ``classes``; under torchrun this process's share of each batch
        (``share``) or the whole batch (for a method's statistics, the same in every process)."""
        subset = self.split.train.subset(classes)
        if len(subset) == 0:
            raise ValueError(f"classes {classes.tolist()} have no training images")
        labels = self.index_of[subset.labels]
        args = (labels, min(self.config.classes_per_batch, len(np.unique(labels))),
                self.config.samples_per_class, self.config.batches_per_epoch)
        sampler = (class_balanced_sampler(*args, seed=seed) if share
                   else ClassBalancedBatchSampler(*args, seed=seed))
        dataset = RemappedLabels(self.factory(subset, self.config.image_size, True),
                                  self.index_of)
        return batch_loader(dataset, sampler, self.config.num_workers, self.device), sampler

    def context(self, task: int, model: nn.Module, first_stage_state: dict) -> TaskContext:
        def make_loader(j: int) -> DataLoader:
            return self.loader(self.tasks[j], seed=self.config.seed + 7919 * (j + 1),
                               share=False)[0]

        return TaskContext(task=task, tasks=self.tasks, margin=self.config.margin,
                           device=self.device, model=model, accuracy=self.accuracy,
                           before=self.before, make_loader=make_loader,
                           first_stage_state=first_stage_state)

    def embed_test(self, model: nn.Module, classes: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Embeddings, labels and (with ``top1``) logits of the test images of ``classes``."""
        dataset = self.factory(self.split.test.subset(classes), self.config.image_size, False)
        args = (model, dataset, self.device, self.config.eval_batch_size,
                self.config.num_workers)
        return embed_with_logits(*args) if self.top1 else (*embed(*args), None)

    def track(self, model: nn.Module) -> dict[str, float]:
        """Task-0 retrieval metrics in the middle of a stage, as ``"old <metric>"``.

        The global random state is restored afterwards, so tracking does not change training.
        """
        with torch.random.fork_rng(devices=[]):
            embeddings, labels = embed(model, self.factory(
                self.split.test.subset(self.tasks[0]), self.config.image_size, False),
                self.device, self.config.eval_batch_size, self.config.num_workers)
        return {f"old {name}": value
                for name, value in retrieval_metrics(embeddings, labels, self.ks).items()}

    def groups(self, stage: int) -> list[tuple[str, int, np.ndarray]]:
        """(kind, task, classes) evaluated after ``stage``: tasks 0..stage ("after"), task
        stage+1 ("before") or, after the last stage, "old" (task 0) and "new" (tasks 1..)."""
        last = len(self.tasks) - 1
        groups = [("after", j, self.tasks[j]) for j in range(stage + 1)]
        if stage < last:
            groups.append(("before", stage + 1, self.tasks[stage + 1]))
        else:
            groups.append(("old", 0, self.tasks[0]))
            if last >= 1:
                groups.append(("new", -1, np.concatenate(self.tasks[1:])))
        return groups

    def evaluate(self, model: nn.Module, stage: int) -> list[dict[str, Any]]:
        """Rows (kind, after_task, task, metric, value, per_query) for :meth:`groups`; with
        ``top1`` also the top-1 accuracy of each trained group and of all seen classes.
        ``per_query`` is a float64 tensor of the group's per-query values (plain data, so a
        stage checkpoint holding the rows reads back with ``weights_only=True``)."""
        upto = min(stage + 1, len(self.tasks) - 1)
        embeddings, labels, logits = self.embed_test(model, np.concatenate(self.tasks[: upto + 1]))
        rows = []
        for kind, task, group in self.groups(stage):
            mask = np.isin(labels, group)
            if mask.sum() < 2:
                raise ValueError(f"task {task} has {int(mask.sum())} test images; need >= 2")
            values = per_query_metrics(embeddings[mask], labels[mask], self.ks)
            if logits is not None and kind != "before":
                values["top-1"] = per_query_top1(logits[mask], self.index_of[labels[mask]])
            rows += [{"kind": kind, "after_task": stage, "task": task, "metric": metric,
                      "value": _summary(metric, v), "per_query": torch.from_numpy(v)}
                     for metric, v in values.items()]
        if logits is not None:
            mask = np.isin(labels, np.concatenate(self.tasks[: stage + 1]))
            rows.append({"kind": "seen", "after_task": stage, "task": -1, "metric": "top-1",
                         "value": top1_accuracy(logits[mask], self.index_of[labels[mask]])})
        return rows

    def record(self, rows: list[dict[str, Any]]) -> None:
        self.records.extend(rows)
        for row in rows:
            if row["kind"] == "after":
                self.accuracy[row["metric"]][row["after_task"], row["task"]] = row["value"]
            elif row["kind"] == "before":
                self.before[row["metric"]][row["task"]] = row["value"]
            if "per_query" in row:
                key = (row["kind"], int(row["after_task"]), int(row["task"]))
                self.per_query.setdefault(key, {})[row["metric"]] = (
                    torch.as_tensor(row["per_query"]).cpu().numpy())


def make_optimizer(model: EmbeddingNet, config: IncrementalConfig) -> torch.optim.Optimizer:
    """Adam over the backbone (``lr * backbone_lr_scale``) and the head (``lr``) of ``model``."""
    backbone = list(model.backbone.parameters())
    backbone_ids = {id(p) for p in backbone}
    head = [p for p in model.parameters() if id(p) not in backbone_ids]
    return torch.optim.Adam([{"params": backbone, "lr": config.lr * config.backbone_lr_scale},
                             {"params": head, "lr": config.lr}],
                            weight_decay=config.weight_decay)


def completed_epochs(checkpoint: Path | None) -> int:
    """Epochs already in fit()'s checkpoint (0 without one; an unreadable one is moved aside)."""
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    return 0 if state is None else int(state["epoch"])


def _train_stage(run: _Run, model: EmbeddingNet, method: Method, ctx: TaskContext,
                 epochs: int, seed: int, partial: Path | None,
                 desc: str) -> tuple[list[dict[str, Any]], float]:
    """before_task -> fit -> after_task; returns fit's history and the training seconds."""
    started = time.perf_counter()
    seed_everything(seed)
    method.before_task(ctx)
    classes = (np.concatenate(run.tasks[: ctx.task + 1]) if method.trains_on == "seen"
               else run.tasks[ctx.task])
    loader, sampler = run.loader(classes, seed=seed)
    sampler.set_epoch(completed_epochs(partial))
    trained: nn.Module = model
    if method.state_changes_in_fit:
        trained = _WithMethodState(model, method, run.device)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def loss_fn(module: nn.Module, batch: Any) -> torch.Tensor:
        # under torchrun fit computes this through DDP over ``trained`` (model's parameters)
        total, parts = method.loss(model, batch, ctx)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
        return total

    def on_epoch_end(epoch: int, module: nn.Module) -> dict[str, float]:
        method.end_epoch(ctx)
        means = {key: sums[key] / counts[key] for key in sums}
        sums.clear()
        counts.clear()
        if ctx.task > 0 and run.track_every and (epoch % run.track_every == 0 or epoch == epochs):
            means.update(run.track(model))
        return means

    hooks = time.perf_counter() - started
    history = fit(trained, loader, loss_fn, make_optimizer(model, run.config), epochs=epochs,
                  device=run.device, checkpoint=partial, seed=seed,
                  progress=run.config.progress, desc=desc, on_epoch_end=on_epoch_end,
                  precision=run.config.precision)
    started = time.perf_counter()
    method.after_task(ctx)
    hooks += time.perf_counter() - started
    return history, hooks + sum(record["seconds"] for record in history)


def frozen_copy(model: EmbeddingNet) -> EmbeddingNet:
    """A deep copy of ``model`` in eval mode with gradients off (a teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _with_state(template: EmbeddingNet, state: dict[str, torch.Tensor]) -> EmbeddingNet:
    """A copy of ``template`` holding ``state`` (the classifier takes the state's size)."""
    model = copy.deepcopy(template)
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- protocol steps


def _check_tasks(split: Any, tasks: Sequence[np.ndarray]) -> list[np.ndarray]:
    tasks = [np.asarray(t, dtype=np.int64).reshape(-1) for t in tasks]
    if not tasks or any(t.size == 0 for t in tasks):
        raise ValueError("tasks must be a non-empty list of non-empty class arrays")
    every = np.concatenate(tasks)
    if np.unique(every).size != every.size:
        raise ValueError("tasks must be disjoint: a class appears in two tasks")
    if every.min() < 0 or every.max() >= split.n_classes:
        raise ValueError(f"task classes must be in 0..{split.n_classes - 1}")
    return tasks


def _check_run(split: Any, tasks: Sequence[np.ndarray], method: Method | str,
               config: IncrementalConfig, track_every: int) -> tuple[Method, list[np.ndarray]]:
    """The method object and the tasks as int64 arrays; raise on a run that cannot work."""
    method = make_method(method) if isinstance(method, str) else method
    if not isinstance(method, Method):
        raise TypeError(f"method must be a Method or a method name; got {type(method)}")
    if getattr(method, "_has_run", False):
        raise ValueError("this Method object has already run; make a new one with make_method")
    tasks = _check_tasks(split, tasks)
    if isinstance(track_every, bool) or not isinstance(track_every, int) or track_every < 0:
        raise ValueError(f"track_every must be an integer >= 0; got {track_every!r}")
    if method.needs_trained_classifier and config.first_stage_ce_weight == 0 and len(tasks) > 1:
        raise ValueError(f"method {method.name!r} distils old-class logits, so task 0 must "
                         "train the classifier: set first_stage_ce_weight > 0")
    return method, tasks


def _prepare_run(split: Any, tasks: list[np.ndarray], config: IncrementalConfig,
                 eval_ks: Sequence[int], factory: DatasetFactory | None, eval_top1: bool,
                 track_every: int) -> _Run:
    """The shared state of one run: device, classifier indices, empty accuracy matrices."""
    ks = tuple(int(k) for k in eval_ks)
    index_of = np.full(split.n_classes, -1, dtype=np.int64)
    index_of[np.concatenate(tasks)] = np.arange(sum(len(t) for t in tasks))
    size = len(tasks)
    names = metric_names(ks) + (["top-1"] if eval_top1 else [])
    return _Run(split=split, tasks=tasks, config=config,
                device=dist.local_device(resolve_device(config.device)),
                factory=factory or default_dataset_factory, ks=ks, index_of=index_of,
                accuracy={m: np.full((size, size), np.nan) for m in names},
                before={m: np.full(size, np.nan) for m in names}, top1=bool(eval_top1),
                track_every=track_every, dataset_digest=_dataset_digest(split),
                split_id=_split_id(split))


def precision_key(precision: str) -> dict[str, str]:
    """The cache-key entry of ``precision``: none for fp32, so fp32 runs keep the keys they had
    before the parameter existed."""
    return {} if precision == "fp32" else {"precision": precision}


def _first_key(run: _Run) -> dict[str, Any]:
    """Cache key of task 0: the data, the classes and every setting that changes training."""
    config = run.config
    training = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("epochs_incremental", "eval_batch_size", "num_workers",
                             "checkpoint_dir", "progress", "device", "precision")}
    training.update(precision_key(config.precision))
    return {"version": CACHE_VERSION, "dataset": run.dataset_digest,
            "factory": getattr(run.factory, "__qualname__", repr(run.factory)),
            "classes": run.tasks[0].tolist(), "device": run.device.type, **training,
            "backbone_weights": file_digest(config.backbone_weights)}


def _first_stage(run: _Run, key: dict[str, Any]) -> tuple[EmbeddingNet, dict, float, list, bool]:
    """Train task 0 or load it from the cache: (model, method state, seconds, history, cached)."""
    config = run.config
    model = build_model(config, num_classes=len(run.tasks[0])).to(run.device)
    digest = config_digest(key)
    folder = Path(config.checkpoint_dir) / "first_stage" if config.checkpoint_dir else None
    dist.barrier()  # every process sees what rank 0 wrote before it decides to train
    cached = load_checkpoint(folder / f"{digest}.pt") if folder else None
    if cached is not None and cached.get("key") == key:
        model.load_state_dict(cached["model"])
        return (model, move_to_device(cached["method_state"], run.device), cached["seconds"],
                cached["history"], True)
    method = instantiate(FirstStage, FirstStage.name,
                         {"ce_weight": config.first_stage_ce_weight,
                          "metric_loss": config.first_stage_metric_loss})
    ctx = run.context(0, model, {})
    partial = folder / f"{digest}.partial.pt" if folder else None
    history, seconds = _train_stage(run, model, method, ctx, config.epochs_first, config.seed,
                                    partial, desc="task 0")
    state = method.state_dict()
    if folder and dist.is_main():
        atomic_save({"key": key, "model": model.state_dict(), "method_state": state,
                     "seconds": seconds, "history": history}, folder / f"{digest}.pt")
        partial.unlink(missing_ok=True)
    return model, state, seconds, history, False


def _stage_folder(run: _Run, method: Method, first_key: dict[str, Any]) -> Path | None:
    """``checkpoint_dir/<method>/<hash of the run>`` (None without a checkpoint_dir)."""
    if not run.config.checkpoint_dir:
        return None
    run_key = {"first": first_key, "tasks": [t.tolist() for t in run.tasks],
               "method": method.name, "hparams": method.hparams,
               "epochs": run.config.epochs_incremental, "ks": list(run.ks), "top1": run.top1,
               "track_every": run.track_every}
    return Path(run.config.checkpoint_dir) / method.name / config_digest(run_key)


def _load_stage(path: Path | None, model: EmbeddingNet, method: Method,
                device: torch.device) -> dict[str, Any] | None:
    """A finished stage's checkpoint, loaded into ``model`` and ``method``; None if absent
    (an unreadable file is moved aside with a warning by ``load_checkpoint``)."""
    done = load_checkpoint(path) if path is not None else None
    if done is None:
        return None
    model.load_state_dict(done["model"])
    method.load_state_dict(move_to_device(done["method_state"], device))
    return done


def _train_and_save_stage(run: _Run, model: EmbeddingNet, method: Method, t: int,
                          first_state: dict, teacher: EmbeddingNet | None,
                          stage_states: list[dict], folder: Path | None) -> dict[str, Any]:
    """Train and evaluate stage ``t``; its checkpoint dict (saved when ``folder`` is set)."""
    ctx = run.context(t, model, first_state)
    ctx.teacher = teacher
    if method.needs_all_teachers:
        ctx.teachers = [frozen_copy(_with_state(model, state)) for state in stage_states]
    partial = folder / f"task{t}.partial.pt" if folder else None
    history, seconds = _train_stage(run, model, method, ctx, run.config.epochs_incremental,
                                    run.config.seed + t, partial, desc=f"task {t}")
    rows = run.evaluate(model, t)
    done = {"model": model.state_dict(), "method_state": method.state_dict(), "rows": rows,
            "seconds": seconds, "history": history}
    if folder and dist.is_main():
        atomic_save(done, folder / f"task{t}.pt")
        partial.unlink(missing_ok=True)
    return done


def _run_stage(run: _Run, model: EmbeddingNet, method: Method, t: int, first_state: dict,
               stage_states: list[dict], folder: Path | None) -> None:
    """Grow the classifier for task ``t``, then load the finished stage or train it, and
    record its evaluations, seconds and history in ``run``."""
    teacher = frozen_copy(model) if method.needs_teacher else None
    model.grow_classes(len(run.tasks[t]),
                       generator=torch.Generator().manual_seed(run.config.seed * 7919 + t))
    model.to(run.device)
    dist.barrier()
    done = _load_stage(folder / f"task{t}.pt" if folder else None, model, method, run.device)
    if done is None:
        done = _train_and_save_stage(run, model, method, t, first_state, teacher, stage_states,
                                     folder)
    run.record(done["rows"])
    if method.needs_all_teachers:
        stage_states.append(copy.deepcopy(model.state_dict()))
    run.train_seconds.append(done["seconds"])
    run.histories.append(done["history"])


def _collect_result(run: _Run, method: Method, model: EmbeddingNet,
                    first_cached: bool) -> IncrementalResult:
    """The :class:`IncrementalResult` of a finished run."""
    frame = pd.DataFrame(run.records, columns=["kind", "after_task", "task", "metric", "value"])
    after = frame[frame.kind == "after"].drop(columns="kind").reset_index(drop=True)
    before = frame[frame.kind == "before"][["task", "metric", "value"]].reset_index(drop=True)
    old_new = (frame[frame.kind.isin(["old", "new"])].rename(columns={"kind": "subset"})
               [["subset", "metric", "value"]].reset_index(drop=True))
    seen = frame[frame.kind == "seen"][["after_task", "metric", "value"]].reset_index(drop=True)
    model.eval()
    return IncrementalResult(
        method=method.name, hparams=method.hparams, tasks=run.tasks, accuracy=after,
        before=before, old_new=old_new, train_seconds=run.train_seconds,
        histories=run.histories, first_stage_cached=first_cached, model=model,
        model_state={k: v.detach().cpu() for k, v in model.state_dict().items()}, seen=seen,
        per_query=run.per_query, split_id=run.split_id)


# --------------------------------------------------------------------------- protocol


_FIRST_EVALUATIONS: dict[str, list[dict[str, Any]]] = {}
"""Evaluations of a first stage, by what determines them: every method of an experiment
starts from the same cached first stage, so its test images are embedded once per process."""


def _first_evaluation(run: _Run, model: EmbeddingNet, first_key: dict[str, Any]
                      ) -> list[dict[str, Any]]:
    """``run.evaluate(model, 0)``, remembered for the same first stage and evaluated groups."""
    if run.config.checkpoint_dir is None:
        return run.evaluate(model, 0)
    key = config_digest({"first": first_key, "groups": [t.tolist() for t in run.tasks[:2]],
                   "ks": list(run.ks), "top1": run.top1})
    if key not in _FIRST_EVALUATIONS:
        _FIRST_EVALUATIONS[key] = run.evaluate(model, 0)
    return _FIRST_EVALUATIONS[key]


def run_incremental(split: Any, tasks: Sequence[np.ndarray], method: Method | str,
                    config: IncrementalConfig, eval_ks: Sequence[int] = (1, 2, 4),
                    dataset_factory: DatasetFactory | None = None, eval_top1: bool = False,
                    track_every: int = 0) -> IncrementalResult:
    """Run the incremental protocol of ``method`` on ``split`` (a ClassSplit) over ``tasks``.

    ``tasks[0]`` holds the old classes, each later array a group of new classes (see
    :func:`irbook.data.tasks.task_classes`). After every stage each seen task is evaluated on
    its test images (Recall@``eval_ks`` and mAP, percent; with ``eval_top1`` also the
    classifier's top-1 accuracy over all classes seen so far), keeping every query's value.
    With ``track_every`` = n > 0, task 0 is also evaluated every n epochs of each incremental
    stage (and after its last epoch), without changing the training. ``dataset_factory(
    labelled_set, image_size, train)`` builds the torch datasets (default:
    LabelledImageDataset).

    A :class:`Method` object keeps the state of one run (EWC's Fisher, ALASSO's importance,
    the bounds of ``corr_fe``) and can be inspected afterwards; it cannot be run twice.
    """
    method, tasks = _check_run(split, tasks, method, config, track_every)
    dist.setup(resolve_device(config.device))
    run = _prepare_run(split, tasks, config, eval_ks, dataset_factory, eval_top1, track_every)
    first_key = _first_key(run)
    method._has_run = True
    model, first_state, seconds, history, cached = _first_stage(run, first_key)
    run.record(_first_evaluation(run, model, first_key))
    run.train_seconds.append(seconds)
    run.histories.append(history)
    folder = _stage_folder(run, method, first_key)
    stage_states = [copy.deepcopy(model.state_dict())] if method.needs_all_teachers else []
    for t in progress_bar(range(1, len(tasks)), enabled=config.progress, desc=method.name,
                          unit="task"):
        _run_stage(run, model, method, t, first_state, stage_states, folder)
    return _collect_result(run, method, model, cached)
