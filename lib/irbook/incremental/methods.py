"""The incremental-learning methods compared in chapters 5 and 6, as small loss objects.

A method's training objective is ``λ1 · metric loss [+ ce_weight · CE on the new classes]``
(the plasticity part, thesis Eq. 6.3 and Eq. 5.6's ``L_ce + L_triplet``) plus its own
stability term. The runner (:mod:`irbook.incremental.runner`) calls, for every task after the
first, ``before_task(ctx)``, then ``loss(model, batch, ctx)`` per batch, ``end_epoch(ctx)``
after each epoch and ``after_task(ctx)``. Batches are ``(images, labels)`` whose labels are
classifier indices: the classes of task ``k`` occupy indices ``ctx.offsets[k] ..``.

Defaults follow the thesis: chapter 5 combines every method with ``L_ce + L_triplet``
("for fair comparison"), so the classifier-based methods default to ``ce_weight = 1``;
chapter 6 trains with the triplet/pair loss only (``ce_weight = 0``) and tunes the stability
weights to EWC 8000, ALASSO 0.2, NCE_EWC 10 and L2 0.1, with λ1 = 1 and λ2 = 10 for its own
method. The triplet margin comes from the run config (``ctx.margin``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from irbook import losses

__all__ = ["METHODS", "METRIC_LOSSES", "FirstStage", "Method", "TaskContext", "make_method",
           "stage_accuracy_change"]

METRIC_LOSSES = ("triplet", "pair")
"""The plasticity losses: batch-hard triplet (Eq. 5.2) and the reference code's pair loss."""

Parts = dict[str, float]


@dataclass
class TaskContext:
    """What a method may use while training task ``task`` (0 = the first stage).

    ``accuracy[metric]`` is the (T, T) matrix of evaluations so far (``[i, j]``: model after
    task i on task j, NaN where not yet measured); ``before[metric][j]`` is the accuracy on
    task j of the model just before it trained on task j. ``teacher`` is the frozen model of
    the previous task, ``teachers`` the frozen models of all previous tasks, oldest first
    (filled only for methods that ask for them). ``make_loader(j)`` gives a training loader
    over task j's classes.
    """

    task: int
    tasks: list[np.ndarray]
    margin: float
    device: torch.device
    model: nn.Module | None = None
    teacher: nn.Module | None = None
    teachers: list[nn.Module] = field(default_factory=list)
    accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    before: dict[str, np.ndarray] = field(default_factory=dict)
    make_loader: Callable[[int], Iterable] | None = None
    first_stage_state: dict[str, Any] = field(default_factory=dict)

    @property
    def offsets(self) -> list[int]:
        """Classifier index of the first class of each task."""
        return [0, *np.cumsum([len(t) for t in self.tasks]).tolist()][: len(self.tasks)]

    @property
    def first_new(self) -> int:
        """Classifier index of the first class of the current task."""
        return self.offsets[self.task]

    @property
    def n_seen(self) -> int:
        """Number of classes of tasks 0..task."""
        return self.first_new + len(self.tasks[self.task])


@torch.no_grad()
def _frozen_outputs(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    return model.forward_with_logits(images)


class Method:
    """Base class: plasticity loss only (subclasses add a stability term).

    ``metric_weight`` is λ1 on the metric loss (:attr:`metric_loss`: the batch-hard triplet
    loss of Eq. 5.2, or the reference code's pair loss); ``ce_weight`` weighs the cross-entropy
    over the current task's outputs (Eq. 5.1). Every method also takes ``metric_loss`` (one of
    :data:`METRIC_LOSSES`) through :func:`make_method`, which replaces its own; a replaced loss
    appears in :attr:`hparams`, so its checkpoints never mix with the method's own.
    """

    name: ClassVar[str] = ""
    metric_loss: ClassVar[str] = "triplet"
    needs_teacher: ClassVar[bool] = False
    needs_all_teachers: ClassVar[bool] = False
    needs_trained_classifier: bool = False  # task 0 must train the classifier (KDMMD: α > 0)
    trains_on: ClassVar[str] = "new"  # "new": the task's classes; "seen": all classes so far
    state_changes_in_fit: ClassVar[bool] = False  # state must be checkpointed every epoch

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 0.0):
        self.metric_weight = float(metric_weight)
        self.ce_weight = float(ce_weight)

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments, with their current values (and ``metric_loss`` when it
        is not the method's own)."""
        names = inspect.signature(type(self).__init__).parameters
        params = {name: getattr(self, name) for name in names if name != "self"}
        if self.metric_loss != type(self).metric_loss:
            params["metric_loss"] = self.metric_loss
        return params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"make_method({self.name!r}, {args})"

    # ------------------------------------------------------------------ hooks
    def before_task(self, ctx: TaskContext) -> None:
        """Called once the classifier has grown, before the optimizer is built."""

    def end_epoch(self, ctx: TaskContext) -> None:
        """Called after every training epoch (before its checkpoint is written)."""

    def after_task(self, ctx: TaskContext) -> None:
        """Called when training of the task has finished, before evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """State carried from task to task (saved with each stage checkpoint): tensors,
        numbers, strings, None, lists and dicts only, so that ``torch.load(weights_only=True)``
        reads it back."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    # ------------------------------------------------------------------ losses
    def plasticity(self, embeddings: Tensor, logits: Tensor, labels: Tensor, ctx: TaskContext,
                   classes: tuple[int, int] | None = None) -> tuple[Tensor, Parts]:
        """``λ1 · metric loss + ce_weight · CE`` over classifier columns ``classes``
        (``(first, stop)``; default: the current task's, or all seen ones when joint)."""
        if self.metric_loss == "pair":
            metric = losses.reference_pair_loss(embeddings, labels, margin=ctx.margin)
        else:
            metric = losses.triplet_hard_loss(embeddings, labels, margin=ctx.margin)
        total = self.metric_weight * metric
        parts = {self.metric_loss: metric.item()}
        if self.ce_weight:
            first, stop = classes or (0 if self.trains_on == "seen" else ctx.first_new,
                                      ctx.n_seen)
            ce = losses.new_class_cross_entropy(logits[:, :stop], labels, first_new=first)
            total = total + self.ce_weight * ce
            parts["ce"] = ce.item()
        return total, parts

    def stability(self, model: nn.Module, images: Tensor, embeddings: Tensor, logits: Tensor,
                  ctx: TaskContext) -> tuple[Tensor | None, Parts]:
        """The method's regulariser; ``None`` when it has none."""
        return None, {}

    def loss(self, model: nn.Module, batch: Any, ctx: TaskContext) -> tuple[Tensor, Parts]:
        """Total loss of one batch and its named parts (floats, for logging)."""
        images, labels = batch
        embeddings, logits = model.forward_with_logits(images)
        total, parts = self.plasticity(embeddings, logits, labels, ctx)
        extra, extra_parts = self.stability(model, images, embeddings, logits, ctx)
        if extra is not None:
            total = total + extra
        parts.update(extra_parts)
        return total, parts


class Finetune(Method):
    """Fine-tuning on the new classes with the metric loss only (no regulariser).

    Eq. 6.2 (triplet loss); the "w fine-tuning" rows of Tables 5.2, 5.3, 5.9, 5.10, 6.1 and
    6.2. Chapter 5's fine-tuning also used ``L_ce`` (Table 5.7, row 1): pass ``ce_weight=1``.
    """

    name = "finetune"


class Joint(Method):
    """Joint training on all classes seen so far: the "reference model" upper bound.

    Rows "A(1-200)/f_0(1-200) (reference model)" of Tables 5.2-5.5, 5.7-5.10, 6.1 and 6.2.
    The runner feeds the training images of every seen class; training continues from the
    previous stage's model (the thesis trains the reference on all classes from ImageNet).
    """

    name = "joint"
    trains_on = "seen"


class LwF(Method):
    """Learning without Forgetting on the old-class logits, with T = 2 (Eq. 5.3).

    ``L_ce + L_triplet + distill_weight · L_dist``: chapter 5 adds the semantic preserving
    loss to every baseline, and its LwF row in Table 5.2 equals the ``L_ce + L_triplet +
    L_dist`` ablation of Table 5.7. Tables 5.2, 5.3, 5.6, 5.7, 5.9 and 5.10.
    """

    name = "lwf"
    needs_teacher = True
    needs_trained_classifier = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 1.0,
                 distill_weight: float = 1.0, temperature: float = 2.0):
        super().__init__(metric_weight, ce_weight)
        self.distill_weight = float(distill_weight)
        self.temperature = float(temperature)

    def stability(self, model, images, embeddings, logits, ctx):
        teacher_logits = _frozen_outputs(ctx.teacher, images)[1]
        dist = losses.lwf_distillation(logits, teacher_logits, self.temperature)
        return self.distill_weight * dist, {"lwf": dist.item()}


class EWCMethod(Method):
    """Elastic Weight Consolidation, penalty ``λ/2 Σ F (θ - θ̃)²`` with λ = 8000 (chapter 6).

    Before task t the diagonal Fisher of task t-1 is estimated from this method's plasticity
    loss on task t-1's training data (with the model that finished task t-1) and merged into
    the running Fisher. Tables 5.2, 5.3, 5.6, 5.9, 5.10, 6.1 and 6.2.
    """

    name = "ewc"

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 1.0,
                 lambda_: float = 8000.0, fisher_batches: int | None = None):
        super().__init__(metric_weight, ce_weight)
        self.lambda_ = float(lambda_)
        self.fisher_batches = fisher_batches
        self.ewc = losses.EWC(self.lambda_)

    def before_task(self, ctx):
        while self.ewc.tasks < ctx.task:  # normally exactly task t-1
            done = self.ewc.tasks
            first, stop = ctx.offsets[done], ctx.offsets[done] + len(ctx.tasks[done])

            def task_loss(model, batch, first=first, stop=stop):
                images, labels = batch
                embeddings, logits = model.forward_with_logits(images)
                return self.plasticity(embeddings, logits, labels, ctx, (first, stop))[0]

            self.ewc.estimate_fisher(ctx.model, ctx.make_loader(done), task_loss, ctx.device,
                                     max_batches=self.fisher_batches)
            self.ewc.consolidate(ctx.model)

    def stability(self, model, images, embeddings, logits, ctx):
        penalty = self.ewc.penalty(model)
        return penalty, {"ewc": penalty.item()}

    def state_dict(self):
        return {"ewc": self.ewc.state_dict()}

    def load_state_dict(self, state):
        self.ewc = losses.EWC(self.lambda_)
        self.ewc.load_state_dict(state["ewc"])


class _ALASSOTracking:
    """Keeps ``self.alasso``'s path integral up to date and saves it with the method (shared by
    the ALASSO method and the first stage, whose path the incremental stages continue)."""

    def end_epoch(self, ctx):
        self.alasso.accumulate(ctx.model)

    def after_task(self, ctx):
        self.alasso.accumulate(ctx.model)
        self.alasso.consolidate(ctx.model)

    def state_dict(self):
        return {"alasso": None if self.alasso is None else self.alasso.state_dict()}

    def load_state_dict(self, state):
        self.alasso = _alasso_from(state["alasso"])


def _alasso_from(state: dict[str, Any] | None) -> losses.ALASSO | None:
    """An :class:`~irbook.losses.ALASSO` holding a copy of ``state`` (None stays None)."""
    if state is None:
        return None
    alasso = losses.ALASSO()
    alasso.load_state_dict(copy.deepcopy(state))
    return alasso


class ALASSOMethod(_ALASSOTracking, Method):
    """ALASSO: asymmetric quadratic penalty with SI-like importance, λ = 0.2 (chapter 6).

    The path integral needs the training trajectory, so the shared first stage records it
    (the runner always tracks it there); later tasks accumulate it after every optimiser step.
    Tables 5.2, 5.3, 6.1 and 6.2.
    """

    name = "alasso"
    state_changes_in_fit = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 1.0,
                 lambda_: float = 0.2):
        super().__init__(metric_weight, ce_weight)
        self.lambda_ = float(lambda_)
        self.alasso: losses.ALASSO | None = None

    def before_task(self, ctx):
        if self.alasso is None:
            self.alasso = _alasso_from(ctx.first_stage_state["alasso"])
        self.alasso.lambda_ = self.lambda_
        self.alasso.begin_task(ctx.model)

    def stability(self, model, images, embeddings, logits, ctx):
        # fit() zeroes gradients after calling the loss, so .grad still holds the last step's
        self.alasso.accumulate(model)
        penalty = self.alasso.penalty(model)
        return penalty, {"alasso": penalty.item()}


class FeatureDistillation(Method):
    """L2 feature alignment with the frozen previous model, weight 0.1 (chapter 6 tuning).

    ``weight · mean_i ||f_i - f̃_i||_2`` on the L2-normalised embeddings (the "L2 loss"
    baseline after Michieli & Zanuttigh); Tables 5.2, 5.3, 5.6, 5.9, 5.10, 6.1 and 6.2.
    """

    name = "l2"
    p: ClassVar[int] = 2
    needs_teacher = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 0.0, weight: float = 0.1):
        super().__init__(metric_weight, ce_weight)
        self.weight = float(weight)

    def stability(self, model, images, embeddings, logits, ctx):
        teacher = _frozen_outputs(ctx.teacher, images)[0]
        distance = losses.feature_distillation(embeddings, teacher, p=self.p)
        return self.weight * distance, {f"l{self.p}": distance.item()}


class L1Distillation(FeatureDistillation):
    """L1 feature alignment, ``weight · mean_i ||f_i - f̃_i||_1`` (the L1 distance of chapter
    6's related work); not in the thesis tables, so its weight copies the L2 baseline's 0.1."""

    name = "l1"
    p = 1


class NCEEWC(EWCMethod):
    """NCE_EWC (Parshotam et al.): normalized cross-entropy over one positive and 9 hard
    negatives, plus EWC. Tables 6.1 and 6.2.

    Reading of the chapter-6 protocol: the tuned factor 10 weighs the NCE term and EWC keeps
    its own tuned λ = 8000; the Fisher is that of this method's plasticity loss
    (triplet + NCE).
    """

    name = "nce_ewc"

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 0.0,
                 lambda_: float = 8000.0, nce_weight: float = 10.0, num_negatives: int = 9,
                 fisher_batches: int | None = None):
        super().__init__(metric_weight, ce_weight, lambda_, fisher_batches)
        self.nce_weight = float(nce_weight)
        self.num_negatives = int(num_negatives)

    def plasticity(self, embeddings, logits, labels, ctx, classes=None):
        total, parts = super().plasticity(embeddings, logits, labels, ctx, classes)
        largest_class = int(torch.unique(labels, return_counts=True)[1].max())
        negatives = min(self.num_negatives, len(labels) - largest_class)
        if negatives >= 1 and largest_class >= 2:
            nce = losses.nce_batch_loss(embeddings, labels, num_negatives=negatives)
            total = total + self.nce_weight * nce
            parts["nce"] = nce.item()
        return total, parts


class KDMMD(Method):
    """Chapter 5's method: ``L = α L_dist + β L_mmd + (L_ce + L_triplet)`` (Eq. 5.6).

    ``L_dist`` is LwF on the old logits with T = 2 (Eq. 5.3) and ``L_mmd`` the multi-kernel
    Gaussian MMD between the frozen and the adaptive network's embeddings of the new images
    (Eq. 5.5, the square root of Eq. 5.4); α = β = 1 (Section 5.4.1, Table 5.8). Tables
    5.2-5.10; with α = 0 (no old logits needed) the "MMD loss" rows of Tables 6.1-6.2.
    """

    name = "kd_mmd"
    needs_teacher = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 1.0, alpha: float = 1.0,
                 beta: float = 1.0, temperature: float = 2.0, sigmas: Any = "median"):
        super().__init__(metric_weight, ce_weight)
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = float(temperature)
        self.sigmas = sigmas

    @property
    def needs_trained_classifier(self) -> bool:
        """Only ``L_dist`` reads the old logits: with α = 0 (the "MMD loss" of chapter 6) task
        0 may be trained without cross-entropy."""
        return self.alpha > 0

    def stability(self, model, images, embeddings, logits, ctx):
        """``α L_dist + β L_mmd``; a term whose weight is 0 is neither computed nor logged."""
        teacher_embeddings, teacher_logits = _frozen_outputs(ctx.teacher, images)
        total, parts = embeddings.new_zeros(()), {}
        if self.alpha:
            dist = losses.lwf_distillation(logits, teacher_logits, self.temperature)
            total, parts["lwf"] = total + self.alpha * dist, dist.item()
        if self.beta:
            mmd = losses.gaussian_mmd(teacher_embeddings, embeddings, sigmas=self.sigmas,
                                      squared=False)
            total, parts["mmd"] = total + self.beta * mmd, mmd.item()
        return total, parts


class Correlation(Method):
    """Chapter 6 without feature estimation: ``λ1 L_pair + λ2 L_corr^{(t-1)->t}``, λ2 = 10.

    The metric loss is the reference code's hard-mining pair loss; ``L_corr`` is the
    KL between softmax-normalised Gram matrices of student and frozen teacher (Eqs. 6.3-6.5,
    T = 4). Tables 6.1 and 6.2 ("Our method", one task) and Table 6.3 case (a).
    """

    name = "corr"
    metric_loss = "pair"
    needs_teacher = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 0.0,
                 corr_weight: float = 10.0, temperature: float = 4.0):
        super().__init__(metric_weight, ce_weight)
        self.corr_weight = float(corr_weight)
        self.temperature = float(temperature)

    def teacher_features(self, images: Tensor, ctx: TaskContext) -> list[Tensor]:
        return [_frozen_outputs(ctx.teacher, images)[0]]

    def teacher_weights(self, ctx: TaskContext) -> list[float] | None:
        return None

    def stability(self, model, images, embeddings, logits, ctx):
        corr = losses.multi_model_correlation(embeddings, self.teacher_features(images, ctx),
                                              self.teacher_weights(ctx), self.temperature)
        return self.corr_weight * corr, {"corr": corr.item()}


class CorrelationFE(Correlation):
    """Chapter 6's full method: correlation distillation from the previous model plus from
    the estimated features of all unsaved earlier models (Eqs. 6.6-6.11).

    Before task t >= 2 the accuracy change ``(α_drop, α_gain)`` of each earlier stage s (Eq.
    6.6, on :attr:`bounds_metric`, mAP in the thesis) is read from the runner's evaluations:
    old = mean accuracy on tasks 0..s-1 before/after stage s, new = task s before/after.
    Per batch the previous model's features are rescaled recursively (Eqs. 6.7-6.9) and each
    estimate is distilled with the importance of Eq. 6.11. Table 6.3 case (c), Figures
    6.7-6.11; with one task it equals ``corr`` (Tables 6.1-6.2).
    """

    name = "corr_fe"

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 0.0,
                 corr_weight: float = 10.0, temperature: float = 4.0,
                 bounds_metric: str = "mAP", scale: float = 1.0):
        super().__init__(metric_weight, ce_weight, corr_weight, temperature)
        self.bounds_metric = bounds_metric
        self.scale = float(scale)
        self.bounds: list[tuple[float, float]] = []

    def before_task(self, ctx):
        if self.bounds_metric not in ctx.accuracy:
            raise ValueError(f"bounds_metric must be one of {sorted(ctx.accuracy)}; got "
                             f"{self.bounds_metric!r}")
        acc, before = ctx.accuracy[self.bounds_metric], ctx.before[self.bounds_metric]
        self.bounds = [stage_accuracy_change(acc, before, s)
                       for s in range(ctx.task - 1, 0, -1)]  # newest stage first

    def state_dict(self):
        return {"bounds": [list(b) for b in self.bounds]}

    def load_state_dict(self, state):
        self.bounds = [(float(drop), float(gain)) for drop, gain in state["bounds"]]

    def teacher_features(self, images, ctx):
        actual = _frozen_outputs(ctx.teacher, images)[0]
        if not self.bounds:
            return [actual]
        # a seed from torch's global generator, whose state fit() checkpoints and restores
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return [actual, *losses.estimate_prior_features(actual, self.bounds, seed, self.scale)]

    def teacher_weights(self, ctx):
        return losses.estimation_weights(ctx.task)


class BoostedCorrelation(Correlation):
    """Table 6.3 case (b): correlation distillation from the kept model only, its weight raised
    to the total weight that Eq. 6.11 spreads over the estimated models.

    At t = 2 the factor is ``1 + 1/(t-1) = 2`` (the thesis' ``λ2 (L + L/(t-1))``); for other t
    it is ``sum(estimation_weights(t))`` (1 at t = 1), so (b) and (c) always weigh the same in
    total and differ only in what the extra weight is put on.
    """

    name = "corr_boost"

    def teacher_weights(self, ctx):
        return [float(sum(losses.estimation_weights(ctx.task)))]


class TwoModel(Correlation):
    """Correlation distillation from every saved old model with weight 1 each.

    Table 6.3 case (d), ``λ1 L_triplet + λ2 (L^{(t-1)->t} + L^{(t-2)->t})``, generalised to all
    earlier models (the multi-model distillation of Figure 6.1(b)); the upper bound that
    feature estimation approximates without storing the models.
    """

    name = "two_model"
    needs_all_teachers = True

    def teacher_features(self, images, ctx):
        return [_frozen_outputs(teacher, images)[0] for teacher in reversed(ctx.teachers)]


class FirstStage(_ALASSOTracking, Method):
    """Training of task 0, shared by all methods: ``λ1 L_triplet + ce_weight · CE``.

    Chapter 5 trains the initial model with cross-entropy and triplet loss, chapter 6 with the
    ranking loss only (set ``ce_weight=0``). It also records ALASSO's path integral, so that
    ALASSO can regularise towards the shared first-stage model.
    """

    name = "first_stage"
    trains_on = "seen"
    state_changes_in_fit = True

    def __init__(self, metric_weight: float = 1.0, ce_weight: float = 1.0):
        super().__init__(metric_weight, ce_weight)
        self.alasso = losses.ALASSO()

    def before_task(self, ctx):
        self.alasso.begin_task(ctx.model)

    def stability(self, model, images, embeddings, logits, ctx):
        self.alasso.accumulate(model)
        return None, {}


METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    Finetune, Joint, LwF, EWCMethod, ALASSOMethod, FeatureDistillation, L1Distillation, NCEEWC,
    KDMMD, Correlation, CorrelationFE, TwoModel, BoostedCorrelation)}


def make_method(name: str, **hparams: Any) -> Method:
    """The method called ``name`` (a key of :data:`METHODS`) with the given hyper-parameters;
    ``metric_loss`` (``triplet`` or ``pair``; None: the method's own) is one of them."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {name!r}")
    return instantiate(METHODS[name], name, hparams)


def instantiate(cls: type[Method], name: str, hparams: dict[str, Any]) -> Method:
    """``cls(**hparams)``, refusing hyper-parameters that ``cls`` does not take; a
    ``metric_loss`` entry (None: the method's own) replaces the method's metric loss."""
    hparams = dict(hparams)
    metric_loss = hparams.pop("metric_loss", None)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no hyper-parameter {', '.join(unknown)}; "
                         f"allowed: {', '.join([*allowed, 'metric_loss'])}")
    if metric_loss is not None and metric_loss not in METRIC_LOSSES:
        raise ValueError(f"metric_loss must be one of {', '.join(METRIC_LOSSES)} or None; got "
                         f"{metric_loss!r}")
    method = cls(**hparams)
    if metric_loss is not None:
        method.metric_loss = metric_loss
    return method


def stage_accuracy_change(accuracy: np.ndarray, before: np.ndarray,
                          stage: int) -> tuple[float, float]:
    """``(α_drop, α_gain)`` of Eq. 6.6 for incremental ``stage`` s >= 1.

    ``accuracy`` is the (T, T) matrix ``[after_task, task]`` and ``before[j]`` the accuracy on
    task j of the model just before it trained on j. Old = mean accuracy on tasks 0..s-1
    before (row s-1) and after (row s) stage s; new = task s before (``before[s]``) and after
    (``accuracy[s, s]``). The one reading used by :class:`CorrelationFE` and by
    :meth:`irbook.incremental.IncrementalResult.accuracy_change`.
    """
    accuracy, before = np.asarray(accuracy, dtype=float), np.asarray(before, dtype=float)
    if isinstance(stage, bool) or not isinstance(stage, int | np.integer) \
            or not 1 <= stage < len(accuracy):
        raise ValueError(f"stage must be from 1 to {len(accuracy) - 1}; got {stage!r}")
    return losses.accuracy_change_bounds(
        acc_before_old=float(np.mean(accuracy[stage - 1, :stage])),
        acc_after_old=float(np.mean(accuracy[stage, :stage])),
        acc_before_new=float(before[stage]), acc_after_new=float(accuracy[stage, stage]))
