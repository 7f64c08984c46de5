"""The dataset-incremental (lifelong) protocol of chapter 7: each task is a whole dataset with
seen and unseen classes (thesis Section 7.3, Algorithm 2).

Task 0 is trained once with the triplet loss (Eq. 7.1) and becomes the first frozen teacher;
it is cached under ``checkpoint_dir/lifelong/first_task/`` and shared by every method. Each
later task t copies the frozen teacher into the student, generates representative images from
the frozen teacher's BatchNorm statistics when the method asks for them (cached under
``generated/`` by the teacher's weights and the inversion settings, so the methods that share
a teacher share its images), trains the student (and the on-the-fly teacher) with the
method's terms of Eq. 7.9, and hands the student on as the next frozen teacher. Training runs
in :func:`irbook.train.loop.fit` (per-epoch atomic checkpoints, exact resume); each finished
task is saved atomically as ``tasks/task<t>-<hash>.pt``, the hash covering the settings, the
method's flags and the names and data fingerprints of tasks 0..t, so sequences with a common
prefix (CUB→Dogs and CUB→Dogs→Cars) share their first tasks. An unreadable checkpoint is moved
aside with a warning and its work redone.

After every task the student is evaluated on every dataset of the sequence (also those still
to come): Recall@K per query on the seen test images and on the unseen images, each set its
own gallery with the query removed (:func:`irbook.incremental.evaluation.per_query_metrics`),
and H = 2su/(s+u) of the R@1 means (Eq. 7.10). Evaluations are cached by the model's weights.

Batches (Algorithm 2, lines 17-19): each step draws a class-balanced P x K batch of the new
task's real training images and, with generated images, a P x K batch of those (labels offset
after the new task's classes), so the frozen teacher and the student see 2N images and the
on-the-fly teacher the N real ones.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from irbook.constants import IMAGENET_STD
from irbook.data.loading import batch_loader
from irbook.device import resolve_device
from irbook.incremental.evaluation import (
    DatasetFactory,
    default_dataset_factory,
    embed,
    embed_with_logits,
    per_query_metrics,
    per_query_top1,
    summarize_per_query,
)
from irbook.incremental.lifelong_methods import (
    METHODS,
    METRIC_LOSSES,
    LifelongMethod,
    add_probe,
    lifelong_loss,
    mixed_batches,
    n_seen_classes,
    on_the_fly_teacher,
    training_set,
)
from irbook.incremental.runner import (
    IncrementalConfig,
    build_model,
    completed_epochs,
    config_digest,
    file_digest,
    frozen_copy,
    hash_labelled,
    make_optimizer,
    precision_key,
)
from irbook.losses.triplet import DISTANCES
from irbook.metrics.continual import harmonic_mean
from irbook.models import EmbeddingNet
from irbook.progress import progress_bar
from irbook.train.loop import atomic_save, fit, load_checkpoint, plain_data, seed_everything

__all__ = ["LifelongConfig", "LifelongJob", "LifelongResult", "TaskLike", "noise_sensitivity",
           "job_task_digests", "run_lifelong", "run_lifelong_jobs"]

CACHE_VERSION = 1
SUBSETS = ("seen", "unseen")
_SUBSET_SETS = {"seen": "seen_test", "unseen": "unseen"}

Generator = Callable[[nn.Module, int, int, Any], Any]
"""``generator(teacher, n_images, n_classes, inversion_config)`` -> an object with ``images``
(N, H, W, 3) uint8, ``labels`` (N,) in 0..n_classes-1, and optionally ``history`` and
``snapshots`` (:func:`irbook.train.inversion.generate_representatives`)."""


class TaskLike(Protocol):
    """One dataset of the sequence (:class:`irbook.data.lifelong.LifelongTask`): LabelledSets
    ``seen_train`` / ``seen_test`` with labels 0..n_seen-1 and ``unseen``."""

    name: str
    class_names: list[str]
    seen_train: Any
    seen_test: Any
    unseen: Any


@dataclass(frozen=True)
class LifelongConfig:
    """Settings of one lifelong run; defaults from thesis Section 7.5.2.

    Embedding 512-D; triplet loss with margin δ = 0.5 on squared L2 distances (Eq. 7.1, batch-
    hard mining); Adam with lr 1e-5 for the FC layers and 1e-6 (``backbone_lr_scale`` 0.1) for
    the backbone; batches of 32 = ``classes_per_batch`` 8 x ``samples_per_class`` 4;
    λ_s = λ_te2 = 1, λ_kd1 = 80, λ_kd2 = 20 (Eq. 7.9); 1500 epochs on the first dataset (the
    thesis gives no count for later tasks: ``epochs_incremental`` defaults to the same). An
    epoch is ``batches_per_epoch`` batches, by default ``ceil(#classes / P)``. The Gram KL uses
    ``kd_temperature`` T = 4 with the T²/B scaling of the chapter-6 code. ``generated_images``
    images of ``generated_classes`` pseudo-classes are generated per task (Algorithm 2: one
    batch, N = 32); ``inversion`` is an :class:`irbook.train.inversion.InversionConfig` (None:
    its defaults at ``image_size`` and ``seed``). BN layers are trained (``train_bn``). The
    thesis names no weight decay, so ``weight_decay`` is 0. ``metric_loss`` "pair" replaces the
    triplet loss of L_s and L_te2 by the author's chapter-6 pair loss (``margin`` then is its
    margin, 0.1 in that code). ``lambda_lwf`` and ``lwf_temperature`` (T = 2 as in LwF) weigh
    the LwF method's distillation (Fig. 7.8a-b).
    """

    image_size: int = 224
    embedding_dim: int = 512
    epochs_first: int = 1500
    epochs_incremental: int = 1500
    lr: float = 1e-5
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.0
    classes_per_batch: int = 8
    samples_per_class: int = 4
    batches_per_epoch: int | None = None
    margin: float = 0.5
    metric_loss: str = "triplet"
    triplet_distance: str = "squared_l2"
    lambda_s: float = 1.0
    lambda_kd1: float = 80.0
    lambda_kd2: float = 20.0
    lambda_te2: float = 1.0
    kd_temperature: float = 4.0
    lambda_lwf: float = 1.0
    lwf_temperature: float = 2.0
    generated_images: int = 32
    generated_classes: int = 8
    inversion: Any = None
    eval_ks: tuple[int, ...] = (1, 2, 4, 8)
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
        self.incremental()  # validates the settings shared with chapters 5-6
        if self.triplet_distance not in DISTANCES:
            raise ValueError(f"triplet_distance must be one of {', '.join(DISTANCES)}; got "
                             f"{self.triplet_distance!r}")
        if self.metric_loss not in METRIC_LOSSES:
            raise ValueError(f"metric_loss must be one of {', '.join(METRIC_LOSSES)}; got "
                             f"{self.metric_loss!r}")
        for name in ("lambda_s", "lambda_kd1", "lambda_kd2", "lambda_te2", "lambda_lwf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float)
                                               and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        for name in ("kd_temperature", "lwf_temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float)
                                               and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        for name in ("generated_images", "generated_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.generated_images < 2 * self.generated_classes:
            raise ValueError(f"generated_images must be >= 2 x generated_classes (the triplet "
                             f"loss needs two images per class); got {self.generated_images} "
                             f"for {self.generated_classes} classes")
        ks = tuple(self.eval_ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"eval_ks must be a non-empty tuple of integers >= 1; got "
                             f"{self.eval_ks!r}")
        object.__setattr__(self, "eval_ks", ks)

    def incremental(self) -> IncrementalConfig:
        """The :class:`IncrementalConfig` of the shared fields (model and optimiser building)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(IncrementalConfig)
                  if hasattr(self, f.name)}
        return IncrementalConfig(**shared, first_stage_ce_weight=0.0)

    def inversion_config(self) -> Any:
        """``inversion``, or the default InversionConfig at ``image_size`` and ``seed``."""
        if self.inversion is not None:
            return self.inversion
        from irbook.train.inversion import InversionConfig

        return InversionConfig(image_size=self.image_size, seed=self.seed,
                               progress=self.progress)


# --------------------------------------------------------------------------- result

QueryKey = tuple[str, int, str, str]
"""(model, after_task, dataset, subset); model is "student" or "teacher" (on-the-fly)."""


@dataclass
class LifelongResult:
    """Evaluations and artefacts of one run of :func:`run_lifelong`.

    ``accuracy``: long table (after_task, dataset, subset, metric, value) of the student after
    every task on every dataset (subset "seen" or "unseen"; percent). ``teacher_accuracy``: the
    same columns for the on-the-fly teacher on its own task (Table 7.4; empty without
    ``dual``). ``per_query`` holds each evaluation's per-query values (:meth:`query_values`).
    ``generated[t]``: the images generated before task t (``images`` uint8, ``labels`` 0..K-1,
    ``history``, ``snapshots``). ``histories[t]``: fit's per-epoch records with the mean of each
    loss term (``L_s``, ``L_kd1``, ``L_kd2``, ``L_te2``, unweighted). ``cached[t]``: task t was
    loaded, not trained. Seconds are those of training (and of generation) per task.
    """

    name: str
    method: LifelongMethod
    task_names: list[str]
    accuracy: pd.DataFrame
    teacher_accuracy: pd.DataFrame
    per_query: dict[QueryKey, dict[str, np.ndarray]] = field(repr=False)
    generated: dict[int, Any] = field(repr=False)
    histories: list[list[dict[str, Any]]] = field(repr=False)
    train_seconds: list[float]
    generation_seconds: list[float]
    cached: list[bool]
    model: EmbeddingNet = field(repr=False)
    model_state: dict[str, torch.Tensor] = field(repr=False)

    def _after(self, after_task: int) -> int:
        size = len(self.task_names)
        if isinstance(after_task, bool) or not -size <= int(after_task) < size:
            raise ValueError(f"after_task must be in {-size}..{size - 1}; got {after_task!r}")
        return int(after_task) % size

    def _dataset(self, dataset: str) -> str:
        if dataset not in self.task_names:
            raise ValueError(f"dataset must be one of {', '.join(self.task_names)}; got "
                             f"{dataset!r}")
        return dataset

    def h_table(self, metric: str = "R@1", after_task: int | None = None,
                model: str = "student") -> pd.DataFrame:
        """Columns after_task, dataset, s, u, H: ``metric`` on the seen and unseen images and
        their harmonic mean (Eq. 7.10; 0 when s + u = 0). ``after_task`` None: every task;
        -1: the last (the thesis tables)."""
        frame = {"student": self.accuracy, "teacher": self.teacher_accuracy}.get(model)
        if frame is None:
            raise ValueError(f"model must be 'student' or 'teacher'; got {model!r}")
        if frame.empty:
            raise ValueError(f"no evaluations of the {model}: only dual methods have an "
                             "on-the-fly teacher")
        rows = frame[frame.metric == metric]
        if rows.empty:
            raise ValueError(f"metric must be one of {sorted(frame.metric.unique())}; got "
                             f"{metric!r}")
        if after_task is not None:
            rows = rows[rows.after_task == self._after(after_task)]
        table = rows.pivot_table(index=["after_task", "dataset"], columns="subset",
                                 values="value", sort=False).reset_index()
        table = table.rename(columns={"seen": "s", "unseen": "u"})
        table["H"] = harmonic_mean(table.s.to_numpy(), table.u.to_numpy())
        table.columns.name = None
        return table[["after_task", "dataset", "s", "u", "H"]]

    def query_values(self, after_task: int, dataset: str, subset: str, metric: str,
                     model: str = "student") -> np.ndarray:
        """Per-query values (0 or 100 for R@K) whose mean is the table value."""
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}; got {subset!r}")
        key = (model, self._after(after_task), self._dataset(dataset), subset)
        if key not in self.per_query:
            raise ValueError(f"no per-query values for {key}; evaluated: "
                             f"{sorted(self.per_query)}")
        values = self.per_query[key]
        if metric not in values:
            raise ValueError(f"metric must be one of {sorted(values)}; got {metric!r}")
        return values[metric]

    def forgetting(self, dataset: str, metric: str = "R@1") -> pd.DataFrame:
        """Columns after_task, subset, value, drop: ``metric`` of ``dataset`` after its own task
        and every later one, and its drop from right after its own task (Fig. 7.3)."""
        own = self.task_names.index(self._dataset(dataset))
        rows = self.accuracy[(self.accuracy.dataset == dataset)
                             & (self.accuracy.metric == metric)
                             & (self.accuracy.after_task >= own)]
        if rows.empty:
            raise ValueError(f"metric must be one of {sorted(self.accuracy.metric.unique())};"
                             f" got {metric!r}")
        start = rows[rows.after_task == own].set_index("subset").value
        out = rows[["after_task", "subset", "value"]].copy()
        out["drop"] = start.loc[out.subset].to_numpy() - out.value.to_numpy()
        return out.sort_values(["subset", "after_task"]).reset_index(drop=True)


# --------------------------------------------------------------------------- models


class TrainedPair(nn.Module):
    """The networks trained in one task (student, and the on-the-fly teacher), so that fit's
    per-epoch checkpoint holds both."""

    def __init__(self, student: nn.Module, on_the_fly: nn.Module | None):
        super().__init__()
        self.student = student
        self.on_the_fly = on_the_fly


def lifelong_optimizer(models: Sequence[nn.Module], config: IncrementalConfig) -> torch.optim.Adam:
    """One Adam over each model's :func:`make_optimizer` groups (Adam is per-parameter, so this
    equals one optimiser per model: the on-the-fly teacher has its own updates)."""
    groups = [{"params": g["params"], "lr": g["lr"]}
              for model in models for g in make_optimizer(model, config).param_groups]
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha1()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}|{tensor.dtype}|".encode())
        sha.update(tensor.view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def _fingerprint(task: TaskLike, parts: Sequence[str]) -> str:
    sha = hashlib.sha1(f"{task.name}|{len(task.class_names)}".encode())
    for part in parts:
        hash_labelled(sha, getattr(task, part))
    return sha.hexdigest()[:16]


def _describe(obj: Any) -> Any:
    """A plain description of ``obj`` for cache keys (a dataclass's fields, else its repr)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: v for k, v in dataclasses.asdict(obj).items() if k != "progress"}
    return repr(obj)


# --------------------------------------------------------------------------- one run


@dataclass
class _Session:
    """What one call of run_lifelong shares between its tasks, and what it collects."""

    tasks: Sequence[TaskLike]
    config: LifelongConfig
    device: torch.device
    factory: DatasetFactory
    generator: Generator | None
    root: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    per_query: dict[QueryKey, dict[str, np.ndarray]] = field(default_factory=dict)
    generated: dict[int, Any] = field(default_factory=dict)
    histories: list[list[dict[str, Any]]] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    generation_seconds: list[float] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)

    def path(self, folder: str, name: str) -> Path | None:
        return None if self.root is None else self.root / folder / name


def _first_key(session: _Session) -> dict[str, Any]:
    """Cache key of task 0: its training data and every setting that changes its training."""
    later = ("epochs_incremental", "lambda_s", "lambda_kd1", "lambda_kd2", "lambda_te2",
             "kd_temperature", "lambda_lwf", "lwf_temperature", "generated_images",
             "generated_classes", "inversion", "eval_ks", "eval_batch_size", "num_workers",
             "checkpoint_dir", "progress", "device", "precision")
    training = {k: v for k, v in dataclasses.asdict(session.config).items() if k not in later}
    training.update(precision_key(session.config.precision))
    training["backbone_weights"] = file_digest(session.config.backbone_weights)
    first = session.tasks[0]
    return {"version": CACHE_VERSION, "task": first.name, "device": session.device.type,
            "data": _fingerprint(first, ["seen_train"]), **training,
            "factory": getattr(session.factory, "__qualname__", repr(session.factory))}


def _task_key(session: _Session, first: dict[str, Any], method: LifelongMethod,
              t: int) -> dict[str, Any]:
    """Cache key of task t: task 0's key, the later-task settings, the method's flags, the
    generator (when used) and tasks 1..t."""
    config = session.config
    key = {"first": first, "method": method.key(), "epochs": config.epochs_incremental,
           "tasks": [[task.name, _fingerprint(task, ["seen_train"])]
                     for task in session.tasks[1: t + 1]],
           **{name: getattr(config, name) for name in (
               "lambda_s", "lambda_kd1", "lambda_kd2", "lambda_te2", "kd_temperature")}}
    if method.bn_images:
        key["generation"] = _generation_spec(session)
    if method.lwf:
        key["lwf"] = [config.lambda_lwf, config.lwf_temperature]
    return {**key, **precision_key(config.precision)}


def _generation_spec(session: _Session) -> dict[str, Any]:
    generator = session.generator
    # a function by its name; a callable object by its class (never by its address)
    named = generator if hasattr(generator, "__qualname__") else type(generator)
    name = ("irbook.train.inversion.generate_representatives" if generator is None
            else f"{named.__module__}.{named.__qualname__}")
    return {"images": session.config.generated_images,
            "classes": session.config.generated_classes,
            "inversion": _describe(session.config.inversion_config()), "generator": name}


def _fit_task(session: _Session, trained: TrainedPair, method: LifelongMethod, t: int,
              teacher: nn.Module | None, generated: Any | None, epochs: int,
              partial: Path | None) -> tuple[list[dict[str, Any]], float]:
    """Train the networks of task ``t`` with Eq. 7.9's active terms; (history, seconds)."""
    config, seed = session.config, session.config.seed + t
    seed_everything(seed)
    dataset, real, fake = training_set(session.tasks, t, method.joint, generated,
                                       config.image_size, session.factory)
    batches = mixed_batches(config, real, fake, seed)
    batches.set_epoch(completed_epochs(partial))
    loader = batch_loader(dataset, batches, config.num_workers, session.device)
    models = [trained.student] + ([trained.on_the_fly] if trained.on_the_fly else [])
    n_real = int(real.max()) + 1
    sums: dict[str, list[float]] = {}

    def loss_fn(module: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        total, parts = lifelong_loss(trained.student, images, labels, method, config, n_real,
                                     teacher, trained.on_the_fly)
        for name, value in parts.items():
            sums.setdefault(name, []).append(value)
        return total

    def on_epoch_end(epoch: int, module: nn.Module) -> dict[str, float]:
        means = {name: float(np.mean(values)) for name, values in sums.items()}
        sums.clear()
        return means

    history = fit(trained, loader, loss_fn, lifelong_optimizer(models, config.incremental()),
                  epochs=epochs, device=session.device, checkpoint=partial, seed=seed,
                  progress=config.progress, desc=f"task {t} ({session.tasks[t].name})",
                  on_epoch_end=on_epoch_end, precision=config.precision)
    return history, float(sum(record["seconds"] for record in history))


def _first_task(session: _Session, key: dict[str, Any]) -> EmbeddingNet:
    """Train task 0 with L_s (Eq. 7.1) or load it from the shared cache."""
    model = build_model(session.config.incremental()).to(session.device)
    digest = config_digest(key)
    path = session.path("first_task", f"{digest}.pt")
    done = load_checkpoint(path) if path is not None else None
    if done is None or done.get("key") != key:
        partial = session.path("first_task", f"{digest}.partial.pt")
        history, seconds = _fit_task(session, TrainedPair(model, None), METHODS["ft"], 0, None,
                                     None, session.config.epochs_first, partial)
        done = {"key": key, "student": model.state_dict(), "history": history,
                "seconds": seconds}
        if path is not None:
            atomic_save(done, path)
            partial.unlink(missing_ok=True)
        session.cached.append(False)
    else:
        model.load_state_dict(done["student"])
        session.cached.append(True)
    session.histories.append(done["history"])
    session.train_seconds.append(done["seconds"])
    session.generation_seconds.append(0.0)
    return model


def _generate(session: _Session, teacher: EmbeddingNet) -> tuple[Any, float]:
    """Representative images from the frozen teacher's BN statistics (Eqs. 7.4-7.5), cached by
    the teacher's weights and the generation settings; (images, seconds)."""
    config, spec = session.config, _generation_spec(session)
    key = {"version": CACHE_VERSION, "teacher": _state_digest(teacher.state_dict()),
           "device": session.device.type, **spec}
    path = session.path("generated", f"{config_digest(key)}.pt")
    done = load_checkpoint(path) if path is not None else None
    if done is not None and done.get("key") == key:
        return _generated_record(done), done["seconds"]
    generator = session.generator
    if generator is None:
        from irbook.train.inversion import generate_representatives as generator
    started = time.perf_counter()
    out = generator(frozen_copy(teacher), config.generated_images, config.generated_classes,
                    config.inversion_config())
    seconds = time.perf_counter() - started
    images, labels = np.asarray(out.images), np.asarray(out.labels, dtype=np.int64)
    if (images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8
            or len(images) != len(labels) or labels.min() < 0
            or labels.max() >= config.generated_classes):
        raise ValueError(f"the generator must return (N, H, W, 3) uint8 images and N labels in "
                         f"0..{config.generated_classes - 1}; got {images.shape} "
                         f"{images.dtype} and labels {np.unique(labels).tolist()[:10]}")
    done = {"key": key, "images": torch.from_numpy(images.copy()),
            "labels": torch.from_numpy(labels), "seconds": seconds,
            "history": plain_data(list(getattr(out, "history", []) or [])),
            "snapshots": [[int(i), torch.from_numpy(np.asarray(s).copy())]
                          for i, s in (getattr(out, "snapshots", []) or [])],
            "stopped_early": bool(getattr(out, "stopped_early", False))}
    if path is not None:
        atomic_save(done, path)
    return _generated_record(done), seconds


def _generated_record(done: dict[str, Any]) -> Any:
    """A :class:`irbook.train.inversion.GeneratedImages` of a cached generation."""
    fields_ = {"images": done["images"].numpy(), "labels": done["labels"].numpy(),
               "history": list(done["history"]),
               "snapshots": [(int(i), s.numpy()) for i, s in done["snapshots"]],
               "stopped_early": bool(done.get("stopped_early", False))}
    try:
        from irbook.train.inversion import GeneratedImages
    except ImportError:  # the generation module is optional for injected generators
        from types import SimpleNamespace

        return SimpleNamespace(**fields_)
    return GeneratedImages(**fields_)


def _train_or_load(session: _Session, model: EmbeddingNet, method: LifelongMethod, t: int,
                   first: dict[str, Any]) -> tuple[EmbeddingNet, EmbeddingNet | None]:
    """Task t: student ← copy of the frozen teacher, optional generation, training (or the
    finished checkpoint); returns (student, on-the-fly teacher or None). For LwF the model
    first gains the probe of task t-1's classes (:func:`add_probe`)."""
    if method.lwf:
        add_probe(model, session.tasks[t - 1].seen_train, session.config.image_size,
                  session.device, session.factory, session.config.eval_batch_size)
    teacher = frozen_copy(model)
    student = copy.deepcopy(model).to(session.device)
    otf = on_the_fly_teacher(session.config, t).to(session.device) if method.dual else None
    key = _task_key(session, first, method, t)
    digest = config_digest(key)
    path = session.path("tasks", f"task{t}-{digest}.pt")
    done = load_checkpoint(path) if path is not None else None
    generated, gen_seconds = (_generate(session, teacher) if method.bn_images
                              else (None, 0.0))
    loaded = done is not None and done.get("key") == key
    if loaded:
        student.load_state_dict(done["student"])
        if otf is not None:
            otf.load_state_dict(done["on_the_fly"])
    else:
        partial = session.path("tasks", f"task{t}-{digest}.partial.pt")
        history, seconds = _fit_task(session, TrainedPair(student, otf), method, t, teacher,
                                     generated, session.config.epochs_incremental, partial)
        done = {"key": key, "student": student.state_dict(), "history": history,
                "seconds": seconds,
                "on_the_fly": otf.state_dict() if otf is not None else None}
        if path is not None:
            atomic_save(done, path)
            partial.unlink(missing_ok=True)
    session.cached.append(loaded)
    session.histories.append(done["history"])
    session.train_seconds.append(done["seconds"])
    session.generation_seconds.append(gen_seconds)
    if generated is not None:
        session.generated[t] = generated
    return student, otf


# --------------------------------------------------------------------------- evaluation


def _evaluate(session: _Session, model: nn.Module, task: TaskLike) -> dict[str, dict]:
    """Per-query R@K (and AP) of ``model`` on ``task``'s seen test and unseen images, each set
    its own gallery; cached by the model's weights and the data."""
    config = session.config
    key = {"version": CACHE_VERSION, "model": _state_digest(model.state_dict()),
           "data": _fingerprint(task, ["seen_test", "unseen"]), "ks": list(config.eval_ks),
           "image_size": config.image_size, "device": session.device.type,
           "factory": getattr(session.factory, "__qualname__", repr(session.factory))}
    path = session.path("evaluations", f"{config_digest(key)}.pt")
    done = load_checkpoint(path) if path is not None else None
    if done is not None and done.get("key") == key:
        return {s: {m: v.numpy() for m, v in done["values"][s].items()} for s in SUBSETS}
    values = {}
    for subset in SUBSETS:
        dataset = session.factory(getattr(task, _SUBSET_SETS[subset]), config.image_size,
                                  False)
        embeddings, labels = embed(model, dataset, session.device, config.eval_batch_size,
                                   config.num_workers)
        values[subset] = per_query_metrics(embeddings, labels, config.eval_ks)
    if path is not None:
        atomic_save({"key": key, "values": {s: {m: torch.from_numpy(np.asarray(v))
                                                for m, v in values[s].items()}
                                            for s in SUBSETS}}, path)
    return values


def _record(session: _Session, model: nn.Module, after: int, which: str,
            tasks: Sequence[TaskLike]) -> None:
    for task in tasks:
        for subset, values in _evaluate(session, model, task).items():
            session.per_query[(which, after, task.name, subset)] = values
            for metric, value in summarize_per_query(values).items():
                session.rows.append({"model": which, "after_task": after, "dataset": task.name,
                                     "subset": subset, "metric": metric, "value": value})


def _check_tasks(tasks: Sequence[TaskLike]) -> list[TaskLike]:
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one dataset")
    for task in tasks:
        missing = [a for a in ("name", "class_names", "seen_train", "seen_test", "unseen")
                   if not hasattr(task, a)]
        if missing:
            raise ValueError(f"tasks must be LifelongTask-like; {task!r} lacks "
                             f"{', '.join(missing)}")
        n_seen_classes(task)
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be distinct; got {names}")
    return tasks


def run_lifelong(tasks: Sequence[TaskLike], method: LifelongMethod | str,
                 config: LifelongConfig, *, generator: Generator | None = None,
                 dataset_factory: DatasetFactory | None = None) -> LifelongResult:
    """Run ``method`` (a :class:`LifelongMethod` or a key of :data:`METHODS`) over ``tasks``.

    ``generator`` makes the representative images (default:
    :func:`irbook.train.inversion.generate_representatives`); ``dataset_factory(labelled_set,
    image_size, train)`` builds the torch datasets (default: LabelledImageDataset).
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        name, method = method, METHODS[method]
    elif isinstance(method, LifelongMethod):
        name = next((k for k, v in METHODS.items() if v == method), "custom")
    else:
        raise TypeError(f"method must be a LifelongMethod or a method name; got {type(method)}")
    tasks = _check_tasks(tasks)
    root = Path(config.checkpoint_dir) / "lifelong" if config.checkpoint_dir else None
    session = _Session(tasks, config, torch.device(resolve_device(config.device)),
                       dataset_factory or default_dataset_factory, generator, root)
    first = _first_key(session)
    model = _first_task(session, first)
    _record(session, model, 0, "student", tasks)
    for t in progress_bar(range(1, len(tasks)), enabled=config.progress, desc=name,
                          unit="task"):
        model, otf = _train_or_load(session, model, method, t, first)
        _record(session, model, t, "student", tasks)
        if otf is not None:
            _record(session, otf, t, "teacher", [tasks[t]])
    return _result(session, name, method, model)


@dataclass(frozen=True)
class LifelongJob:
    """One :func:`run_lifelong` call for a worker process (:func:`run_lifelong_jobs`)."""

    tasks: tuple[TaskLike, ...]
    method: str
    config: LifelongConfig


def job_task_digests(job: LifelongJob) -> list[str]:
    """The cache digests of ``job``'s trained tasks 1..T, in order. Two jobs whose digests
    agree train the same networks (``ours`` is ``dkd_kl`` at task 1, say): a scheduler must
    put them in one worker, or two processes would train, and checkpoint, the same files."""
    session = _Session(_check_tasks(job.tasks), job.config,
                       torch.device(resolve_device(job.config.device)),
                       default_dataset_factory, None, None)
    first = _first_key(session)
    method = METHODS[job.method]
    return [config_digest(_task_key(session, first, method, t))
            for t in range(1, len(job.tasks))]


def run_lifelong_jobs(jobs: Sequence[LifelongJob]) -> list[list[float]]:
    """Run ``jobs`` in order on one CPU thread, without progress bars; their tasks,
    generations and evaluations land in the checkpoint cache, where a later
    :func:`run_lifelong` with the same settings finds them. Chain jobs whose later tasks
    start from an earlier job's (CUB→Dogs before CUB→Dogs→Cars). Returns each job's training
    seconds per task. The worker of :func:`irbook.parallel.map_in_processes`."""
    from irbook.device import single_cpu_thread

    seconds = []
    for job in jobs:
        if job.config.checkpoint_dir is None:
            raise ValueError("a job's config needs a checkpoint_dir: its results reach the "
                             "caller only through the cache")
        inversion = job.config.inversion
        if inversion is not None and hasattr(inversion, "progress"):
            inversion = dataclasses.replace(inversion, progress=False)
        config = dataclasses.replace(job.config, progress=False, inversion=inversion)
        with single_cpu_thread(resolve_device(config.device)):
            seconds.append(run_lifelong(job.tasks, job.method, config).train_seconds)
    return seconds


def _result(session: _Session, name: str, method: LifelongMethod,
            model: EmbeddingNet) -> LifelongResult:
    frame = pd.DataFrame(session.rows,
                         columns=["model", "after_task", "dataset", "subset", "metric", "value"])
    split = {which: frame[frame.model == which].drop(columns="model").reset_index(drop=True)
             for which in ("student", "teacher")}
    model.eval()
    return LifelongResult(
        name=name, method=method, task_names=[t.name for t in session.tasks],
        accuracy=split["student"], teacher_accuracy=split["teacher"],
        per_query=session.per_query, generated=session.generated,
        histories=session.histories, train_seconds=session.train_seconds,
        generation_seconds=session.generation_seconds, cached=session.cached, model=model,
        model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})


# --------------------------------------------------------------------------- Fig. 7.8a-b


class _Noisy(Dataset):
    """``dataset``'s images plus Gaussian noise of standard deviation ``sigma`` in pixel units
    (images in [0, 1]; added after normalisation as ``sigma · ε / std``), ε fixed per item by
    ``(seed, index)``, so every σ scales the same noise."""

    def __init__(self, dataset: Dataset, sigma: float, seed: int):
        self.dataset, self.sigma, self.seed = dataset, float(sigma), int(seed)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        noise = torch.randn(image.shape, generator=generator)
        return image + self.sigma * noise / self.std, label


def noise_sensitivity(model: nn.Module, labelled_set: Any, noise_sigmas: Sequence[float], *,
                      classifier: Sequence[int] | None = None, image_size: int = 224,
                      seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 64,
                      dataset_factory: DatasetFactory | None = None) -> pd.DataFrame:
    """Retrieval R@1 against classification top-1 under Gaussian noise N(0, σ) (Fig. 7.8a-b).

    ``model`` has a classifier head (``forward_with_logits``, e.g. an LwF-trained
    :class:`EmbeddingNet`); ``classifier`` lists the logit columns that compete (default: all),
    and ``labelled_set``'s labels index into them. Retrieval: query = gallery = the noisy
    images, query removed. Returns columns sigma, metric ("R@1", "top-1"), value (percent) and
    degradation = 100 (clean - value) / clean, the clean value measured at σ = 0.
    """
    sigmas = [float(s) for s in noise_sigmas]
    if not sigmas or any(not (math.isfinite(s) and s >= 0) for s in sigmas):
        raise ValueError(f"noise_sigmas must be a non-empty list of finite numbers >= 0; got "
                         f"{list(noise_sigmas)}")
    if not hasattr(model, "forward_with_logits"):
        raise ValueError("model must have a classifier head (forward_with_logits)")
    base = (dataset_factory or default_dataset_factory)(labelled_set, image_size, False)
    rows, clean = [], {}
    for sigma in [0.0, *sigmas]:
        embeddings, labels, logits = embed_with_logits(model, _Noisy(base, sigma, seed), device,
                                                       batch_size)
        if classifier is not None:
            logits = logits[:, np.asarray(list(classifier), dtype=np.int64)]
        values = {"R@1": float(np.mean(per_query_metrics(embeddings, labels, (1,))["R@1"])),
                  "top-1": float(np.mean(per_query_top1(logits, labels)))}
        if not clean:
            clean = values
            continue
        rows += [{"sigma": sigma, "metric": metric, "value": value,
                  "degradation": 100.0 * (clean[metric] - value) / clean[metric]
                  if clean[metric] else 0.0} for metric, value in values.items()]
    return pd.DataFrame(rows, columns=["sigma", "metric", "value", "degradation"])
