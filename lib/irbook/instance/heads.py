"""Small heads trained in memory on frozen, precomputed features (chapter 2, on 2 CPU cores).

:func:`train_head_on_tuples` trains any head (an FC projection of pooled vectors, a
:class:`irbook.models.netvlad.NetVLAD` layer on conv maps, ...) on retrieval-SfM-120k tuples as
:func:`irbook.instance.finetuning.finetune` trains a whole network (thesis section 2.4.1.2,
Eqs. 2.16-2.17): every epoch mines ``(q, p, n1..nk)`` tuples with the head as it is then, by
:class:`irbook.data.sfm.TupleSampler` seeded by (seed, epoch), then takes one Adam step per batch
of tuples on :func:`irbook.instance.finetuning.tuple_loss`. The descriptor of an image is
``F.normalize(head(features[i]), dim=-1)`` for the mining and for the loss alike, since
cirtorch's margins assume unit vectors; a head that normalises itself is unchanged by it.

:func:`train_hash_head` trains a :class:`irbook.models.hash_head.HashHead` (Eq. 2.12) on
labelled features with the pairwise Siamese-Hamming loss plus the quantization, bit-balance and
decorrelation penalties of :mod:`irbook.losses.deep_hashing`.

Both use :func:`irbook.train.loop.fit`: with ``checkpoint`` every epoch is saved atomically and
a rerun resumes from it to the weights an uninterrupted run ends with (one path per setting).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irbook.data.sfm import Describe, SfmSplit, TupleSampler
from irbook.distributed import share
from irbook.incremental.runner import completed_epochs
from irbook.instance.finetuning import (
    FinetuneConfig,
    _check_bool,
    _check_choice,
    _check_int,
    _check_real,
    _check_split,
    tuple_distances,
    tuple_loss,
)
from irbook.losses.deep_hashing import DeepHashingWeights, deep_hashing_loss, hashing_pair_loss
from irbook.models.hash_head import HashHead
from irbook.train.loop import fit

__all__ = ["HASH_TERMS", "HEAD_LOSSES", "HashResult", "HashTrainingConfig", "HeadConfig",
           "HeadResult", "train_hash_head", "train_head_on_tuples"]

HEAD_LOSSES = ("contrastive", "triplet")
HASH_TERMS = ("similarity", "quantization", "balance", "decorrelation")
"""The terms of :func:`irbook.losses.deep_hashing.deep_hashing_loss` kept in the history."""

Checkpoint = str | PathLike[str] | None


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class HeadConfig:
    """Settings of :func:`train_head_on_tuples`. Mining follows cirtorch (2000 queries, a pool of
    20000 images, 5 negatives, contrastive margin 0.7); the optimisation does not: Adam at 1e-3
    with 32 tuples per step suits a small head on fixed features (cirtorch: 1e-6, 5 tuples)."""

    loss: str = "contrastive"
    margin: float = 0.7
    n_negatives: int = 5
    n_queries: int = 2000
    pool_size: int = 20000
    tuples_per_batch: int = 32
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, HEAD_LOSSES)
        _check_real("margin", self.margin, 0.0, strict=True)
        _check_real("lr", self.lr, 0.0, strict=True)
        _check_real("weight_decay", self.weight_decay, 0.0, strict=False)
        for name in ("n_negatives", "n_queries", "pool_size", "tuples_per_batch"):
            _check_int(name, getattr(self, name), 1)
        _check_int("epochs", self.epochs, 0)
        _check_int("seed", self.seed, 0)
        _check_bool("progress", self.progress)

    @property
    def loss_config(self) -> FinetuneConfig:
        """The :class:`FinetuneConfig` that :func:`tuple_loss` and the split check read."""
        return FinetuneConfig(loss=self.loss, margin=self.margin, n_negatives=self.n_negatives)


@dataclass(frozen=True)
class HashTrainingConfig:
    """Settings of :func:`train_hash_head`; the thesis gives no values. ``margin`` (in bits) goes
    to :func:`hashing_pair_loss`, whose default None means ``n_bits / 2`` (DSH's 2K on the
    squared distance). ``batch_size`` >= 2, as the pair loss needs two codes."""

    n_bits: int = 32
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    margin: float | None = None
    weights: DeepHashingWeights = field(default_factory=DeepHashingWeights)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        _check_int("n_bits", self.n_bits, 1)
        _check_int("epochs", self.epochs, 0)
        _check_int("batch_size", self.batch_size, 2)
        _check_real("lr", self.lr, 0.0, strict=True)
        if self.margin is not None:
            _check_real("margin", self.margin, 0.0, strict=True)
        if not isinstance(self.weights, DeepHashingWeights):
            raise ValueError(f"weights must be a DeepHashingWeights; got "
                             f"{type(self.weights).__name__}")
        _check_int("seed", self.seed, 0)
        _check_bool("progress", self.progress)


@dataclass
class HeadResult:
    """The trained ``head`` (eval mode), one ``history`` record per epoch (fit's ``epoch``,
    ``loss``: mean batch loss, a sum over the batch's tuples for ``contrastive``, ``seconds``
    with the mining, and ``positive_distance`` / ``negative_distance``: mean L2 query-positive /
    query-negative distance of the epoch's tuples while trained) and the training ``seconds``
    of all epochs, resumed ones included."""

    head: nn.Module
    history: list[dict[str, Any]]
    seconds: float


@dataclass
class HashResult:
    """The trained :class:`HashHead` (eval mode), one ``history`` record per epoch (fit's
    ``epoch``, ``loss`` (the total), ``seconds``, and the epoch's mean batch value of every term
    of :data:`HASH_TERMS`) and the training ``seconds`` of all epochs."""

    head: HashHead
    history: list[dict[str, Any]]
    seconds: float


# --------------------------------------------------------------------------- heads on tuples


def _check_features(features: object, n_rows: int, what: str) -> Tensor:
    if not isinstance(features, Tensor) or features.dim() < 2 \
            or not features.is_floating_point():
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a floating-point tensor (N, ...) with N = {n_rows}, "
                         f"one row per {what}; got {got}")
    if features.shape[0] != n_rows:
        raise ValueError(f"features must hold one row per {what} ({n_rows}); got "
                         f"{features.shape[0]} rows")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features must be finite (no NaN or inf values)")
    return features.detach()


def _describe(head: nn.Module, x: Tensor) -> Tensor:
    """Unit descriptors (B, D') of the inputs ``x``: ``F.normalize(head(x), dim=-1)``."""
    out = head(x)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"head must map {x.shape[0]} inputs to ({x.shape[0]}, D') "
                         f"descriptors; got {got}")
    return F.normalize(out, dim=-1)


def _describer(head: nn.Module, features: Tensor) -> Describe:
    """The mining's ``describe``: the head's unit descriptors in eval mode, without gradients;
    the head's training mode is restored afterwards."""

    def describe(indices: np.ndarray) -> np.ndarray:
        was_training = head.training
        head.eval()
        try:
            with torch.no_grad():
                index = torch.as_tensor(indices, dtype=torch.long, device=features.device)
                return _describe(head, features[index]).float().cpu().numpy()
        finally:
            head.train(was_training)

    return describe


class _FeatureTuples:
    """fit's loader: a pass is one epoch, counted from ``first_epoch`` (0-based), that mines the
    epoch's tuples with the head as it is then and yields them as (T, 2 + k) index tensors of
    ``tuples_per_batch`` rows in the mined order (the last one may be smaller)."""

    def __init__(self, head: nn.Module, features: Tensor, split: SfmSplit, config: HeadConfig,
                 first_epoch: int = 0) -> None:
        self.head, self.features, self.config = head, features, config
        self.sampler = TupleSampler(split, n_queries=config.n_queries,
                                    n_negatives=config.n_negatives, pool_size=config.pool_size,
                                    seed=config.seed)
        self.epoch = first_epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.config.tuples_per_batch)

    def __iter__(self) -> Iterator[Tensor]:
        tuples = self.sampler.tuples(self.epoch, _describer(self.head, self.features))
        self.epoch += 1
        rows = torch.from_numpy(tuples)
        for batch in torch.split(rows, self.config.tuples_per_batch):
            yield share(batch)  # under torchrun: this process's tuples of the batch


class _DistanceStats:
    """Mean query-positive and query-negative L2 distances of one epoch's tuples."""

    def __init__(self) -> None:
        self.sums = np.zeros(2)
        self.counts = np.zeros(2)

    def add(self, descriptors: Tensor) -> None:
        for i, distance in enumerate(tuple_distances(descriptors.detach())):
            self.sums[i] += float(distance.sum())
            self.counts[i] += distance.numel()

    def record(self) -> dict[str, float]:
        means = self.sums / np.maximum(self.counts, 1)
        self.sums[:], self.counts[:] = 0.0, 0.0
        return {"positive_distance": float(means[0]), "negative_distance": float(means[1])}


def _check_head(head: nn.Module, features: Tensor) -> None:
    """Refuse, before any work, a head that does not map (B, ...) to (B, D) or cannot learn."""
    with torch.no_grad():
        out = head(features[:2])
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"head must map inputs (B, ...) to descriptors (B, D); two inputs "
                         f"gave {shape}")
    if not any(p.requires_grad for p in head.parameters()):
        raise ValueError("head must have trainable parameters")


def train_head_on_tuples(head: nn.Module, features: Tensor, split: SfmSplit,
                         config: HeadConfig | None = None,
                         checkpoint: Checkpoint = None) -> HeadResult:
    """Train a copy of ``head`` on ``split``'s tuples over precomputed ``features`` (N, ...),
    one input per image of the split (module docstring); ``head`` itself is left untouched.

    Training runs on ``features.device``. With ``checkpoint`` a rerun resumes, mining the
    remaining epochs with the restored head.
    """
    config = HeadConfig() if config is None else config
    if not isinstance(config, HeadConfig):
        raise ValueError(f"config must be a HeadConfig; got {type(config).__name__}")
    if not isinstance(head, nn.Module):
        raise ValueError(f"head must be a torch.nn.Module; got {type(head).__name__}")
    features = _check_features(features, split.n_images, f"image of split {split.name!r}")
    loss_config = config.loss_config
    _check_split(split, loss_config)
    model = copy.deepcopy(head).to(features.device)
    _check_head(model, features)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    loader = _FeatureTuples(model, features, split, config, completed_epochs(checkpoint))
    stats = _DistanceStats()

    def loss_fn(module: nn.Module, rows: Tensor) -> Tensor:
        descriptors = _describe(module, features[rows.reshape(-1)])
        descriptors = descriptors.reshape(*rows.shape, -1)
        stats.add(descriptors)
        return tuple_loss(descriptors, loss_config)

    history = fit(model, loader, loss_fn, optimizer, epochs=config.epochs,
                  device=features.device, checkpoint=checkpoint, seed=config.seed,
                  progress=config.progress, desc=f"head ({config.loss})",
                  on_epoch_end=lambda epoch, module: stats.record())
    model.eval()
    return HeadResult(model, history, sum(float(r["seconds"]) for r in history))


# --------------------------------------------------------------------------- deep hashing


def _check_labels(labels: object, n_rows: int) -> Tensor:
    values = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if values.shape != (n_rows,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"labels must be {n_rows} integer class labels, shape ({n_rows},); got "
                         f"shape {values.shape} and dtype {values.dtype}")
    return torch.from_numpy(values.astype(np.int64))


class _ShuffledBatches:
    """fit's loader: a pass is one epoch, counted from ``first_epoch``; it yields (features,
    labels) batches of a permutation drawn from a generator seeded by (seed, epoch), so a
    resumed run draws what the uninterrupted one did. A last batch of one row joins the one
    before it (the pair loss needs two codes)."""

    def __init__(self, features: Tensor, labels: Tensor, batch_size: int, seed: int,
                 first_epoch: int = 0) -> None:
        self.features, self.labels = features, labels
        self.batch_size, self.seed, self.epoch = batch_size, seed, first_epoch

    def _chunks(self, order: Tensor) -> list[Tensor]:
        chunks = list(torch.split(order, self.batch_size))
        if len(chunks) > 1 and chunks[-1].numel() < 2:
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks

    def __len__(self) -> int:
        return len(self._chunks(torch.arange(self.features.shape[0])))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        seed = zlib.crc32(f"hash-batches/{self.seed}/{self.epoch}".encode())
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.features.shape[0], generator=generator)
        self.epoch += 1
        for chunk in self._chunks(order):
            chunk = share(chunk, minimum=2)  # under torchrun: this process's rows (>= 2 each)
            index = chunk.to(self.features.device)
            yield self.features[index], self.labels[chunk]


class _TermMeans:
    """Epoch means of the :data:`HASH_TERMS` over the batches."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(HASH_TERMS, 0.0)
        self.count = 0

    def add(self, terms: dict[str, Tensor]) -> None:
        for name in HASH_TERMS:
            self.sums[name] += float(terms[name].detach())
        self.count += 1

    def record(self) -> dict[str, float]:
        means = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        self.sums, self.count = dict.fromkeys(HASH_TERMS, 0.0), 0
        return means


def train_hash_head(features: Tensor, labels: Tensor | np.ndarray,
                    config: HashTrainingConfig | None = None,
                    checkpoint: Checkpoint = None) -> HashResult:
    """Train a :class:`HashHead` ``D -> n_bits`` (Eq. 2.12, initialised from ``config.seed``) on
    ``features`` (N, D) with class ``labels`` (N,): per shuffled batch, the total of
    :func:`deep_hashing_loss` on the relaxed codes with :func:`hashing_pair_loss` (Eq. 2.16 on
    the relaxed Hamming distance) as its similarity term. Runs on ``features.device``."""
    config = HashTrainingConfig() if config is None else config
    if not isinstance(config, HashTrainingConfig):
        raise ValueError(f"config must be a HashTrainingConfig; got {type(config).__name__}")
    n_rows = features.shape[0] if isinstance(features, Tensor) and features.dim() == 2 else -1
    if n_rows < 2:
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a floating-point tensor (N, D) with N >= 2; got {got}")
    features = _check_features(features, n_rows, "labelled item")
    labels = _check_labels(labels, n_rows).to(features.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = HashHead(int(features.shape[1]), config.n_bits)
    head = head.to(features.device, features.dtype)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    loader = _ShuffledBatches(features, labels, config.batch_size, config.seed,
                              completed_epochs(checkpoint))
    means = _TermMeans()

    def loss_fn(module: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        h = module(x)
        terms = deep_hashing_loss(h, hashing_pair_loss(h, y, config.margin), config.weights)
        means.add(terms)
        return terms["total"]

    history = fit(head, loader, loss_fn, optimizer, epochs=config.epochs,
                  device=features.device, checkpoint=checkpoint, seed=config.seed,
                  progress=config.progress, desc=f"hash head ({config.n_bits} bits)",
                  on_epoch_end=lambda epoch, module: means.record())
    head.eval()
    return HashResult(head, history, sum(float(r["seconds"]) for r in history))
