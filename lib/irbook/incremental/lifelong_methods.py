"""The methods of chapter 7 (lifelong retrieval, dual knowledge distillation) as loss flags.

A :class:`LifelongMethod` says which terms of the full objective (thesis Eq. 7.9)

    L = λ_s L_s + λ_kd1 L_kd1 + λ_kd2 L_kd2 + λ_te2 L_te2

are on, and whether the training set is mixed with images generated from the frozen teacher's
BatchNorm statistics (``L_g``, Eqs. 7.4-7.5; generated before training, so ``L_g`` is not a
term of the student's loss). :data:`METHODS` holds one entry per row of thesis Tables 7.1-7.3
and 7.6; :data:`TABLE_ROWS` lists each table's rows in the thesis order and
:func:`method_label` gives each row's thesis label. :func:`lifelong_loss` is the loss of one
batch, :func:`training_set` and :func:`mixed_batches` the mixed data it trains on and
:func:`on_the_fly_teacher` the second teacher; :mod:`irbook.incremental.lifelong` runs the
protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset, Sampler

from irbook import losses
from irbook.data.samplers import ClassBalancedBatchSampler, class_balanced_sampler
from irbook.incremental.evaluation import DatasetFactory, default_dataset_factory, embed
from irbook.incremental.runner import RemappedLabels, build_model
from irbook.models import EmbeddingNet

if TYPE_CHECKING:
    from irbook.incremental.lifelong import LifelongConfig

__all__ = ["DISTILLATIONS", "METHODS", "METRIC_LOSSES", "TABLE_ROWS", "LifelongMethod",
           "add_probe", "distillation_term", "fit_probe", "lifelong_loss", "method_label",
           "mixed_batches", "n_seen_classes", "on_the_fly_teacher", "training_set"]

DISTILLATIONS = ("l1", "l2", "mmd", "kl")
"""Distances between teacher and student embeddings: L1 / L2 feature distance, multi-kernel
MMD (Eq. 5.5) and the KL divergence of softmax-normalised Gram matrices (Eqs. 7.2-7.3)."""

_DISTILL_NAMES = {"l1": "L1 loss", "l2": "L2 loss", "mmd": "L_mmd loss", "kl": "KL-divergence"}

METRIC_LOSSES = ("triplet", "pair")
"""Ranking losses of L_s and L_te2: the batch-hard triplet loss of Eq. 7.1 (Eq. 7.6-7.7), or
the hard-mining pair loss of the thesis author's chapter-6 code
(:func:`irbook.losses.reference_pair_loss`)."""


@dataclass(frozen=True)
class LifelongMethod:
    """Flags of one chapter-7 method (a row of Tables 7.1-7.3 and 7.6).

    ``distill``: the frozen teacher's term L_kd1 on the whole (mixed) batch, one of
    :data:`DISTILLATIONS` or None. ``bn_images``: representative images generated from the
    frozen teacher's BN statistics are mixed into the training set as extra classes.
    ``dual``: the on-the-fly teacher, trained by L_te2 (Eq. 7.7) on the real images and
    distilled into the student by L_kd2 (Eq. 7.8) with distance ``dual_distill`` (the DKD rows
    of Tables 7.1-7.3 use the same distance for both distillations). ``student_triplet``: the
    student's own triplet loss L_s (Eq. 7.6; off in ablation Case 4). ``joint``: the reference,
    trained by L_s on the union of every task so far. ``lwf``: Learning without Forgetting
    (Li and Hoiem 2016) with a classifier on the embedding, for the classification-vs-retrieval
    comparison of Fig. 7.8a-b: before each task the classifier gains a linear probe of the
    previous task's seen classes, fitted on the frozen teacher, and the student's logits of
    those classes are distilled from the teacher's with temperature T (``L_lwf``, Eq. 5.3).
    """

    distill: str | None = None
    bn_images: bool = False
    dual: bool = False
    dual_distill: str = "kl"
    student_triplet: bool = True
    joint: bool = False
    lwf: bool = False

    def __post_init__(self) -> None:
        if self.distill is not None and self.distill not in DISTILLATIONS:
            raise ValueError(f"distill must be None or one of {', '.join(DISTILLATIONS)}; got "
                             f"{self.distill!r}")
        if self.dual_distill not in DISTILLATIONS:
            raise ValueError(f"dual_distill must be one of {', '.join(DISTILLATIONS)}; got "
                             f"{self.dual_distill!r}")
        for name in ("bn_images", "dual", "student_triplet", "joint", "lwf"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.joint and (self.distill or self.bn_images or self.dual
                           or not self.student_triplet):
            raise ValueError("joint is the reference trained by L_s alone: it takes no distill, "
                             "bn_images or dual, and needs student_triplet=True")
        if self.joint and self.lwf:
            raise ValueError("joint is the reference trained by L_s alone: it takes no lwf")
        if not (self.student_triplet or self.distill or self.dual):
            raise ValueError("nothing trains the student: set student_triplet, distill or dual")

    @property
    def terms(self) -> tuple[str, ...]:
        """The thesis's names of the active terms, in the order of Table 7.6."""
        flags = (("L_s", self.student_triplet), ("L_kd1", self.distill is not None),
                 ("L_g", self.bn_images), ("L_kd2", self.dual), ("L_te2", self.dual),
                 ("L_lwf", self.lwf))
        return tuple(name for name, on in flags if on)

    def key(self) -> dict[str, Any]:
        """What determines the training (``dual_distill`` only when ``dual``): equal keys give
        the same run, so e.g. ``case1`` and ``kd_kl`` share their checkpoints (``lwf`` appears
        only when set, so the other methods keep their keys)."""
        key = {"distill": self.distill, "bn_images": self.bn_images, "dual": self.dual,
               "dual_distill": self.dual_distill if self.dual else None,
               "student_triplet": self.student_triplet, "joint": self.joint}
        return {**key, "lwf": True} if self.lwf else key


def _registry() -> dict[str, LifelongMethod]:
    methods = {"ft": LifelongMethod()}
    for kind in ("l1", "mmd", "l2", "kl"):
        methods[f"kd_{kind}"] = LifelongMethod(distill=kind)
        methods[f"kdbn_{kind}"] = LifelongMethod(distill=kind, bn_images=True)
        methods[f"dkd_{kind}"] = LifelongMethod(distill=kind, bn_images=True, dual=True,
                                                dual_distill=kind)
    methods["joint"] = LifelongMethod(joint=True)
    methods["case1"] = methods["kd_kl"]
    methods["case2"] = methods["kdbn_kl"]
    methods["case3"] = LifelongMethod(dual=True)
    methods["case4"] = LifelongMethod(distill="kl", bn_images=True, dual=True,
                                      student_triplet=False)
    methods["case5"] = LifelongMethod(distill="kl", dual=True)
    methods["ours"] = methods["dkd_kl"]
    methods["lwf"] = LifelongMethod(lwf=True)
    return methods


METHODS: dict[str, LifelongMethod] = _registry()
"""Every row of Tables 7.1-7.3 and 7.6. ``kd_*``: one frozen teacher ("KD"); ``kdbn_*``:
"KD + BN statistics" (Table 7.3's †); ``dkd_*``: "DKD + BN statistics" (Table 7.3's ‡);
``case1``-``case5`` and ``ours`` are the ablation of Table 7.6 (``case1`` = ``kd_kl``,
``case2`` = ``kdbn_kl``, ``ours`` = ``dkd_kl``, as their equal numbers in Tables 7.1 and 7.6
show); ``lwf`` is the classifier of Fig. 7.8a-b."""

_MAIN_ROWS = ("ft", *(f"{group}_{kind}" for group in ("kd", "kdbn", "dkd")
                      for kind in ("l1", "mmd", "l2", "kl")), "joint")
TABLE_ROWS: dict[str, tuple[str, ...]] = {
    "7.1": _MAIN_ROWS, "7.2": _MAIN_ROWS, "7.3": _MAIN_ROWS,
    "7.6": ("ft", "case1", "case2", "case3", "case4", "case5", "ours", "joint"),
}
"""Method keys of each thesis table, in the thesis's row order."""


def method_label(name: str, table: str | None = None) -> str:
    """The thesis's label of method ``name``, as written in ``table`` (None: Tables 7.1-7.2)."""
    if name not in METHODS:
        raise ValueError(f"name must be one of {', '.join(METHODS)}; got {name!r}")
    if table is not None and table not in TABLE_ROWS:
        raise ValueError(f"table must be None or one of {', '.join(TABLE_ROWS)}; got {table!r}")
    if table == "7.6":
        return _ablation_label(name)
    group, _, kind = name.partition("_")
    if name == "ft":
        return "SFT" if table == "7.3" else "FT"
    if name == "joint":
        return "Joint training"
    if name == "lwf":
        return "LwF"
    if group in ("kd", "kdbn", "dkd") and kind in _DISTILL_NAMES:
        distance = _DISTILL_NAMES[kind]
        if table == "7.3":
            mark = {"kd": "", "kdbn": " †", "dkd": " ‡"}[group]
            return f"{'DKD' if group == 'dkd' else 'KD'} + {distance}{mark}"
        prefix = {"kd": "KD", "kdbn": "KD + BN statistics", "dkd": "DKD + BN statistics"}
        return f"{prefix[group]}: {distance}"
    return _ablation_label(name)


def _ablation_label(name: str) -> str:
    """Table 7.6's label: the row name and its active terms (Baseline and Reference named)."""
    if name == "ft":
        return "Baseline: fine-tuning by using L_s"
    if name == "joint":
        return "Reference: joint training by using L_s"
    row = next((row for row in TABLE_ROWS["7.6"] if METHODS[row] == METHODS[name]), name)
    title = {"ours": "Ours", "ft": "Baseline", "joint": "Reference"}.get(row, row)
    if row.startswith("case"):
        title = f"Case {row[-1]}"
    return f"{title}: {' + '.join(METHODS[name].terms)}"


# --------------------------------------------------------------------------- losses


def distillation_term(kind: str, student: Tensor, teacher: Tensor,
                      temperature: float = 4.0) -> Tensor:
    """Distance ``kind`` between the student's and a teacher's embeddings of one batch.

    ``"kl"``: Eq. 7.3 / 7.8 via :func:`irbook.losses.correlation_distillation` (softmax of the
    inner-product Gram matrices, KL divergence; ``temperature`` and its T²/B scaling as in the
    chapter-6 code); ``"l1"`` / ``"l2"``: :func:`irbook.losses.feature_distillation`;
    ``"mmd"``: :func:`irbook.losses.gaussian_mmd` (root of MMD², median bandwidths), as in
    chapter 5's L_mmd. ``teacher`` must carry no gradient (frozen, or detached).
    """
    if kind == "kl":
        return losses.correlation_distillation(student, teacher, temperature)
    if kind in ("l1", "l2"):
        return losses.feature_distillation(student, teacher, p=int(kind[1]))
    if kind == "mmd":
        return losses.gaussian_mmd(teacher, student, sigmas="median", squared=False)
    raise ValueError(f"kind must be one of {', '.join(DISTILLATIONS)}; got {kind!r}")


def _triplet(embeddings: Tensor, labels: Tensor, config: Any) -> Tensor:
    """The ranking loss ``config.metric_loss`` with margin ``config.margin``: the batch-hard
    triplet loss of Eq. 7.1 (``config.triplet_distance``), or the author's pair loss."""
    if getattr(config, "metric_loss", "triplet") == "pair":
        return losses.reference_pair_loss(embeddings, labels, margin=config.margin)
    return losses.triplet_hard_loss(embeddings, labels, margin=config.margin,
                                    distance=config.triplet_distance)


def lifelong_loss(student: nn.Module, images: Tensor, labels: Tensor, method: LifelongMethod,
                  config: Any, n_real: int, teacher: nn.Module | None = None,
                  on_the_fly: nn.Module | None = None) -> tuple[Tensor, dict[str, float]]:
    """Eq. 7.9 on one batch: the total loss and each active term's unweighted value.

    ``labels < n_real`` mark the real images of the new task (generated ones carry labels from
    ``n_real`` on). L_s (Eq. 7.6) and L_kd1 (Eq. 7.3) see the whole (mixed) batch, L_te2 (Eq.
    7.7) the real images only, and L_kd2 (Eq. 7.8) the student's and the on-the-fly teacher's
    embeddings of the real images, the teacher side detached, so that L_kd2 never updates the
    on-the-fly teacher (Algorithm 2, lines 17-24). With ``lwf``, L_lwf distils the teacher's
    logits (its classifier's classes) into the student's first logits on the whole batch.
    ``config`` supplies ``lambda_s``, ``lambda_kd1``, ``lambda_kd2``, ``lambda_te2``,
    ``margin``, ``metric_loss``, ``triplet_distance`` and ``kd_temperature`` (and, for LwF,
    ``lambda_lwf`` and ``lwf_temperature``), as a
    :class:`~irbook.incremental.lifelong.LifelongConfig` does.
    """
    if method.lwf:
        embeddings, logits = student.forward_with_logits(images)
    else:
        embeddings, logits = student(images), None
    total, parts = embeddings.new_zeros(()), {}
    if method.student_triplet:
        value = _triplet(embeddings, labels, config)
        total, parts["L_s"] = total + config.lambda_s * value, value.item()
    if method.distill is not None:
        if teacher is None:
            raise ValueError(f"distill={method.distill!r} needs the frozen teacher")
        with torch.no_grad():
            frozen = teacher(images)
        value = distillation_term(method.distill, embeddings, frozen, config.kd_temperature)
        total, parts["L_kd1"] = total + config.lambda_kd1 * value, value.item()
    if method.dual:
        if on_the_fly is None:
            raise ValueError("dual=True needs the on-the-fly teacher")
        real = labels < n_real
        assistant = on_the_fly(images[real])
        te2 = _triplet(assistant, labels[real], config)
        kd2 = distillation_term(method.dual_distill, embeddings[real], assistant.detach(),
                                config.kd_temperature)
        total = total + config.lambda_te2 * te2 + config.lambda_kd2 * kd2
        parts["L_te2"], parts["L_kd2"] = te2.item(), kd2.item()
    if method.lwf:
        value = _lwf_term(logits, images, teacher, config)
        total, parts["L_lwf"] = total + config.lambda_lwf * value, value.item()
    return total, parts


def _lwf_term(logits: Tensor, images: Tensor, teacher: nn.Module | None, config: Any) -> Tensor:
    """L_lwf: the teacher's logits (its classifier's classes) distilled into the student's
    first logits with ``config.lwf_temperature`` (Eq. 5.3)."""
    if teacher is None:
        raise ValueError("lwf=True needs the frozen teacher")
    with torch.no_grad():
        old = teacher.forward_with_logits(images)[1]
    if old.shape[1] == 0:
        raise ValueError("lwf=True needs a teacher with a classifier (see add_probe)")
    return losses.lwf_distillation(logits, old, config.lwf_temperature)


# --------------------------------------------------------------------------- data and teacher


def n_seen_classes(task: Any) -> int:
    """Number of seen classes; checks that the training labels are 0..n_seen-1."""
    classes = np.unique(task.seen_train.labels)
    if classes.size < 2 or not np.array_equal(classes, np.arange(classes.size)):
        raise ValueError(f"task {task.name!r}: seen_train labels must be 0..n_seen-1 with "
                         f"n_seen >= 2; got classes {classes.tolist()[:10]}")
    return int(classes.size)


def _labelled_set(images: np.ndarray, labels: np.ndarray) -> Any:
    from irbook.data.finegrained import LabelledSet

    return LabelledSet(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64))


def training_set(tasks: Sequence[Any], t: int, joint: bool, generated: Any | None,
                 image_size: int, factory: DatasetFactory = default_dataset_factory
                 ) -> tuple[Dataset, np.ndarray, np.ndarray | None]:
    """The training data of task ``t``: (dataset, labels of its real images, labels of its
    generated images or None).

    Real images: task t's ``seen_train`` (``joint``: those of tasks 0..t, each task's labels
    offset after the previous tasks' classes). Generated images X' follow them, their labels
    Y' offset after the real classes: X_mix = X ∪ X', Y_mix = Y ∪ Y' (Sec. 7.4.2).
    """
    parts, labels, offset = [], [], 0
    for task in (tasks[: t + 1] if joint else [tasks[t]]):
        n_seen = n_seen_classes(task)
        parts.append(RemappedLabels(factory(task.seen_train, image_size, True),
                                     offset + np.arange(n_seen)))
        labels.append(task.seen_train.labels + offset)
        offset += n_seen
    real = np.concatenate(labels)
    if generated is None:
        return ConcatDataset(parts), real, None
    fake = np.asarray(generated.labels, dtype=np.int64)
    classes = int(fake.max()) + 1
    parts.append(RemappedLabels(factory(_labelled_set(generated.images, fake), image_size,
                                         True), offset + np.arange(classes)))
    return ConcatDataset(parts), real, fake + offset


class _PairedBatches(Sampler[list[int]]):
    """A batch of real images followed by a batch of generated ones (indices after the real
    ones): the 2N-image mixed batches of Algorithm 2."""

    def __init__(self, real: ClassBalancedBatchSampler, fake: ClassBalancedBatchSampler,
                 offset: int):
        self.real, self.fake, self.offset = real, fake, offset

    def __len__(self) -> int:
        return len(self.real)

    def set_epoch(self, epoch: int) -> None:
        self.real.set_epoch(epoch)
        self.fake.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        fake = iter(self.fake)
        for batch in self.real:
            yield batch + [self.offset + i for i in next(fake)]


def mixed_batches(config: LifelongConfig, real: np.ndarray, fake: np.ndarray | None,
             seed: int) -> ClassBalancedBatchSampler | _PairedBatches:
    """P x K batches of the real labels (and as many of the generated ones)."""
    def sampler(labels: np.ndarray, count: int | None, seed: int) -> ClassBalancedBatchSampler:
        # under torchrun: this process's classes of every batch
        return class_balanced_sampler(labels, min(config.classes_per_batch,
                                                  np.unique(labels).size),
                                      config.samples_per_class, count, seed=seed)

    real_batches = sampler(real, config.batches_per_epoch, seed)
    if fake is None:
        return real_batches
    return _PairedBatches(real_batches, sampler(fake, len(real_batches), seed + 1),
                          offset=len(real))


def on_the_fly_teacher(config: LifelongConfig, task: int) -> EmbeddingNet:
    """The on-the-fly teacher of ``task``: the backbone as pre-trained (``build_model``'s,
    i.e. ``pretrained`` / ``backbone_weights``; the frozen teacher is not used) and a freshly
    initialised FC layer, drawn from ``(seed, task)`` (Sec. 7.5.2)."""
    model = build_model(config.incremental())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed * 7919 + 104729 * task)
        model.embedding.reset_parameters()
    return model


class _RawEmbedding(nn.Module):
    """An :class:`EmbeddingNet`'s embedding before the L2 normalisation (what its classifier
    reads)."""

    def __init__(self, net: EmbeddingNet):
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net.embedding(self.net.pooling(self.net.backbone(images)))


def fit_probe(features: np.ndarray, labels: np.ndarray, n_classes: int, steps: int = 300,
              lr: float = 0.01) -> tuple[Tensor, Tensor]:
    """A linear softmax classifier (weight (C, D), bias (C,)) fitted to ``features`` (N, D) and
    ``labels`` in 0..C-1 by full-batch Adam on the cross-entropy, from zeros (deterministic)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"features must be (N, D) with N = len(labels) > 0; got "
                         f"{tuple(x.shape)} and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {int(y.min())}.."
                         f"{int(y.max())}")
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(x @ weight.T + bias, y).backward()
            optimizer.step()
    return weight.detach(), bias.detach()


def add_probe(model: EmbeddingNet, labelled: Any, image_size: int, device: str | torch.device,
              factory: DatasetFactory = default_dataset_factory, batch_size: int = 64) -> int:
    """Append to ``model``'s classifier a linear probe of ``labelled``'s classes (labels
    0..n-1, offset after the existing classes), fitted on the model's frozen un-normalised
    embeddings of those images (test transforms): LwF's head of a finished task. Returns n."""
    n = int(np.asarray(labelled.labels).max()) + 1
    features, labels = embed(_RawEmbedding(model), factory(labelled, image_size, False), device,
                             batch_size)
    weight, bias = fit_probe(features, labels, n)
    model.grow_classes(n)
    with torch.no_grad():
        model.classifier.weight[-n:] = weight.to(model.classifier.weight)
        model.classifier.bias[-n:] = bias.to(model.classifier.bias)
    return n
