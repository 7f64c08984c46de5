"""Supervised fine-tuning for instance retrieval on SfM tuples, as cnnimageretrieval-pytorch
(cirtorch) trains on retrieval-SfM-120k (thesis section 2.4.1.2, Eqs. 2.13 and 2.16-2.19).

Every epoch :class:`EpochTuples` mines ``(q, p, n1, ..., nk)`` tuples with the network as it is
when the epoch starts (eval mode, no gradients; only the drawn queries and the negative pool are
described), by :class:`irbook.data.sfm.TupleSampler`, whose draws are seeded by (seed, epoch).
The network is then trained on batches of those tuples with one of the losses of
:mod:`irbook.losses.finetune`, picked by :func:`tuple_loss`. :func:`irbook.train.loop.fit` runs
the epochs, writes an atomic checkpoint after each one and resumes from it; the mining of the
next epoch then sees the restored network, so an interrupted run ends where an uninterrupted
one does. Use one checkpoint path per configuration.

Losses on a tuple (``D`` the squared distance of Eq. 2.14 unless said otherwise):

- ``contrastive``: cirtorch's loss, ``½ d(q, p)² + Σ_i ½ max(0, m - d(q, n_i))²`` on the L2
  distance ``d`` (the form of Eq. 2.16 cirtorch trains with), summed over the batch's tuples
  as cirtorch does;
- ``siamese`` (Eq. 2.16) and ``double_margin`` (Eq. 2.19): the pair (q, p) is similar, every
  (q, n_i) dissimilar; mean over the pairs;
- ``triplet`` (Eq. 2.17): the triplets (q, p, n_i); mean over them;
- ``joint`` (Eq. 2.18): ``alpha`` times the same triplet term plus ``beta`` times the
  cross-entropy (Eq. 2.13) of a linear classifier over the training clusters, on the
  descriptors of every image of the batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.data.images import (
    SMALL_IMAGE_CACHE_SIZE,
    SMALL_IMAGE_PIXELS,
    load_image,
    resize_max_side,
)
from irbook.data.sfm import Describe, SfmSplit, TupleSampler
from irbook.device import DEVICES, resolve_device
from irbook.distributed import share
from irbook.incremental.runner import completed_epochs
from irbook.losses import finetune as losses
from irbook.models.extract import extract_descriptors
from irbook.models.net import RetrievalNet
from irbook.models.pooling import GeM, make_pooling
from irbook.train.loop import fit

__all__ = ["FINETUNE_POOLINGS", "LOSSES", "EpochTuples", "FinetuneConfig", "FinetuneResult",
           "TupleImages", "TupleModel", "build_model", "embed_tuples", "finetune",
           "make_optimizer", "training_image", "tuple_distances", "tuple_loss"]

LOSSES = ("contrastive", "siamese", "double_margin", "triplet", "joint")
FINETUNE_POOLINGS = ("gem", "mac", "spoc")
GEM_P_LR_SCALE = 10.0  # cirtorch: the pooling parameters learn at 10 x lr, without weight decay


# --------------------------------------------------------------------------- configuration


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _check_real(name: str, value: object, low: float, *, strict: bool,
                high: float | None = None) -> None:
    """A finite real number (not a bool, not NaN) > low (``strict``) or >= low, and <= high."""
    bound = f"> {low:g}" if strict else f">= {low:g}"
    if high is not None:
        bound += f" and <= {high:g}"
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and (value > low if strict else value >= low)
          and (high is None or value <= high))
    if not ok:
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings; the defaults are cirtorch's (``cirtorch/examples/train.py``).

    Checked in cirtorch's code: Adam, ``lr`` 1e-6, the learning rate multiplied by
    ``exp(-0.01)`` after every epoch (ExponentialLR), the pooling parameters (GeM's p) at 10 x lr
    without weight decay (``gem_p_lr=None``), 5 tuples per batch with one optimiser step per
    batch, 2000 queries, a pool of 20000 images and 5 negatives per query, contrastive margin
    0.7, 100 epochs, BatchNorm statistics frozen while training (``set_batchnorm_eval``), images
    only shrunk to ``image_size`` (PIL ``thumbnail``) and normalised, with no random
    augmentation. ``weight_decay`` 1e-6 is the default of the later train.py (read in a fork
    that carries its ``--update-every``; commit 7d7bc3de, read directly, still has 1e-4).
    ``image_size`` 362 is the value of the README's command for the published networks (the
    argparse default is 1024; the README also uses margin 0.85 there).

    Not from cirtorch: ``margin`` is also the m of Eqs. 2.16/2.17 and the m2 of Eq. 2.19 (on the
    squared distance), ``margin_similar`` is m1 of Eq. 2.19, ``alpha``/``beta`` weigh Eq. 2.18
    (the thesis gives no values), ``mining_batch_size`` images are described at once while
    mining (> 1 needs images of one size) and ``device`` is ``auto``, ``cpu`` or ``cuda``.
    """

    loss: str = "contrastive"
    margin: float = 0.7
    margin_similar: float = 0.1
    alpha: float = 1.0
    beta: float = 1.0
    lr: float = 1e-6
    gem_p_lr: float | None = None
    weight_decay: float = 1e-6
    lr_decay: float = math.exp(-0.01)
    epochs: int = 100
    n_queries: int = 2000
    pool_size: int = 20000
    n_negatives: int = 5
    tuples_per_batch: int = 5
    image_size: int = 362
    pooling: str = "gem"
    freeze_batchnorm: bool = True
    mining_batch_size: int = 1
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("pooling", self.pooling, FINETUNE_POOLINGS)
        _check_choice("device", self.device, DEVICES)
        _check_real("margin", self.margin, 0.0, strict=True)
        _check_real("margin_similar", self.margin_similar, 0.0, strict=False)
        if self.loss == "double_margin" and not self.margin_similar < self.margin:
            raise ValueError(f"margin_similar (m1 of Eq. 2.19) must be smaller than margin (m2); "
                             f"got margin_similar={self.margin_similar}, margin={self.margin}")
        for name in ("alpha", "beta", "weight_decay"):
            _check_real(name, getattr(self, name), 0.0, strict=False)
        _check_real("lr", self.lr, 0.0, strict=True)
        if self.gem_p_lr is not None:
            _check_real("gem_p_lr", self.gem_p_lr, 0.0, strict=True)
        _check_real("lr_decay", self.lr_decay, 0.0, strict=True, high=1.0)
        _check_int("epochs", self.epochs, 0)
        _check_int("seed", self.seed, 0)
        for name in ("n_queries", "pool_size", "n_negatives", "tuples_per_batch", "image_size",
                     "mining_batch_size"):
            _check_int(name, getattr(self, name), 1)
        _check_bool("freeze_batchnorm", self.freeze_batchnorm)
        _check_bool("progress", self.progress)

    @property
    def pooling_lr(self) -> float:
        """Learning rate of the pooling parameters: ``gem_p_lr``, or 10 x ``lr`` when None."""
        return GEM_P_LR_SCALE * self.lr if self.gem_p_lr is None else self.gem_p_lr


# --------------------------------------------------------------------------- images and tuples


def training_image(path: str | PathLike[str], image_size: int,
                   mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """The normalised tensor (3, H, W) of one image whose longer side is shrunk to
    ``image_size`` when larger (cirtorch's ``imresize``; smaller images keep their size)."""
    pixels = _resized_pixels(Path(path), image_size)
    return TF.normalize(pixels.to(torch.float32).div(255), list(mean), list(std))


_RESIZED: dict[tuple[str, int], tuple[int, Tensor]] = {}
"""(path, image_size) -> (mtime, uint8 pixels): every epoch of fine-tuning and of mining reads
the same small images again; the resize is done once (:data:`SMALL_IMAGE_PIXELS` and smaller)."""


def _resized_pixels(path: Path, image_size: int) -> Tensor:
    """The uint8 pixels (3, H, W) of :func:`training_image`, before the normalisation."""
    key = (str(path), int(image_size))
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        mtime_ns = None  # load_image names the missing file
    cached = _RESIZED.get(key)
    if cached is not None and cached[0] == mtime_ns:
        return cached[1]
    img = load_image(path)
    if max(img.size) > image_size:
        img = resize_max_side(img, image_size)
    pixels = TF.pil_to_tensor(img)
    if img.width * img.height <= SMALL_IMAGE_PIXELS:
        if len(_RESIZED) >= SMALL_IMAGE_CACHE_SIZE:
            _RESIZED.pop(next(iter(_RESIZED)))  # forget the oldest entry
        _RESIZED[key] = (mtime_ns, pixels)
    return pixels


class _MaxSizeImages(Dataset):
    """Images of ``paths`` as :func:`training_image` tensors (what the mining describes)."""

    def __init__(self, paths: Sequence[Path], image_size: int) -> None:
        self.paths, self.image_size = list(paths), image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return training_image(self.paths[index], self.image_size)


def _check_tuples(tuples: object, n_images: int) -> np.ndarray:
    rows = np.asarray(tuples)
    if rows.ndim != 2 or rows.shape[1] < 3 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"tuples must be a 2-D integer array of rows (q, p, n1, ..., nk) with "
                         f"k >= 1; got shape {rows.shape} and dtype {rows.dtype}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_images):
        raise ValueError(f"tuples must index the split's {n_images} images; got values in "
                         f"[{rows.min()}, {rows.max()}]")
    return rows.astype(np.int64)


class TupleImages(Dataset):
    """Mined tuples of a split as images: item ``i`` is ``(images, labels)``.

    ``images`` stacks the tuple's images (q, p, n1, ..., nk) into (2 + k, 3, H, W) when they
    share a size, and is a list of (3, H, W) tensors otherwise (real photographs differ in
    aspect ratio); each image is a :func:`training_image` (cirtorch's training transform).
    ``labels`` (2 + k,) are the images' clusters as class indices 0..C-1 (sorted cluster ids).
    """

    def __init__(self, split: SfmSplit, tuples: np.ndarray, image_size: int) -> None:
        _check_int("image_size", image_size, 1)
        self.split, self.image_size = split, image_size
        self.tuples = _check_tuples(tuples, split.n_images)
        self.classes = np.unique(split.clusters, return_inverse=True)[1].astype(np.int64)

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, index: int) -> tuple[Tensor | list[Tensor], Tensor]:
        row = self.tuples[index]
        images = [training_image(self.split.image_paths[i], self.image_size) for i in row]
        if len({tuple(image.shape) for image in images}) == 1:
            images = torch.stack(images)
        return images, torch.from_numpy(self.classes[row])


# --------------------------------------------------------------------------- model


class TupleModel(nn.Module):
    """What is trained: the retrieval ``net``, the cluster classifier ``head`` of the ``joint``
    loss (else None), and cirtorch's frozen BatchNorm: with ``freeze_batchnorm`` every BatchNorm
    layer stays in eval mode in ``train()`` (running statistics kept, affine weights learned).
    ``forward`` returns the net's descriptors."""

    def __init__(self, net: RetrievalNet, head: nn.Linear | None = None,
                 freeze_batchnorm: bool = True) -> None:
        super().__init__()
        self.net, self.head, self.freeze_batchnorm = net, head, freeze_batchnorm

    def train(self, mode: bool = True) -> TupleModel:
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def build_model(backbone: nn.Module, split: SfmSplit, config: FinetuneConfig) -> TupleModel:
    """A :class:`TupleModel` on a copy of ``backbone`` (the argument is left untouched) with
    ``config.pooling`` (SPoC as cirtorch's plain average) and, for ``joint``, a linear head over
    the split's clusters, initialised from ``config.seed``."""
    kwargs = {"center_prior": False} if config.pooling == "spoc" else {}
    net = RetrievalNet(copy.deepcopy(backbone), make_pooling(config.pooling, **kwargs))
    head = None
    if config.loss == "joint":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            head = nn.Linear(net.dim, int(np.unique(split.clusters).size))
    return TupleModel(net, head, config.freeze_batchnorm)


def make_optimizer(model: TupleModel, config: FinetuneConfig) -> torch.optim.Adam:
    """Adam as cirtorch sets it up: the pooling parameters at ``config.pooling_lr`` without
    weight decay, everything else at ``config.lr`` with ``config.weight_decay``."""
    pooling = list(model.net.pooling.parameters())
    pooling_ids = {id(p) for p in pooling}
    rest = [p for p in model.parameters() if id(p) not in pooling_ids]
    groups: list[dict[str, Any]] = [{"params": rest}]
    if pooling:
        groups.append({"params": pooling, "lr": config.pooling_lr, "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def embed_tuples(model: nn.Module, batch: Sequence[tuple[Any, Tensor]]) -> tuple[Tensor, Tensor]:
    """Descriptors (T, 2 + k, D) and labels (T, 2 + k) of a batch of :class:`TupleImages`
    items; the images of one size go through ``model`` together."""
    images = [image for item, _ in batch for image in item]
    labels = torch.stack([item_labels for _, item_labels in batch])
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for position, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(position)
    rows: list[Tensor | None] = [None] * len(images)
    for positions in by_shape.values():
        descriptors = model(torch.stack([images[i] for i in positions]))
        for position, row in zip(positions, descriptors, strict=True):
            rows[position] = row
    return torch.stack(rows).reshape(*labels.shape, -1), labels


# --------------------------------------------------------------------------- losses


def _pairs(descriptors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(q, p) and every (q, n_i) of each tuple as row-aligned (T(1 + k), D) batches, with the
    pair labels (1 for the positive pair, 0 for the negative ones)."""
    tuples, size, dim = descriptors.shape
    x_i = descriptors[:, :1].expand(-1, size - 1, -1).reshape(-1, dim)
    x_j = descriptors[:, 1:].reshape(-1, dim)
    similar = torch.zeros(tuples, size - 1, device=descriptors.device)
    similar[:, 0] = 1.0
    return x_i, x_j, similar.reshape(-1)


def _triplets(descriptors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The triplets (q, p, n_i) of each tuple as row-aligned (T k, D) batches."""
    negatives = descriptors[:, 2:]
    k, dim = negatives.shape[1], descriptors.shape[2]
    anchors = descriptors[:, :1].expand(-1, k, -1).reshape(-1, dim)
    positives = descriptors[:, 1:2].expand(-1, k, -1).reshape(-1, dim)
    return anchors, positives, negatives.reshape(-1, dim)


def tuple_loss(descriptors: Tensor, config: FinetuneConfig, logits: Tensor | None = None,
               labels: Tensor | None = None) -> Tensor:
    """``config.loss`` of a batch of tuple descriptors (T, 2 + k, D), rows (q, p, n1..nk), from
    :mod:`irbook.losses.finetune` (see the module docstring). ``joint`` also needs the head's
    ``logits`` (T, 2 + k, C) and the class ``labels`` (T, 2 + k) of the images."""
    if descriptors.dim() != 3 or descriptors.shape[1] < 3:
        raise ValueError(f"descriptors must be (T, 2 + k, D) with k >= 1; got shape "
                         f"{tuple(descriptors.shape)}")
    name, margin = config.loss, config.margin
    if name == "contrastive":
        return losses.contrastive_loss(descriptors[:, 0], descriptors[:, 1], descriptors[:, 2:],
                                       margin=margin, reduction="sum")
    if name == "siamese":
        return losses.siamese_loss(*_pairs(descriptors), margin=margin)
    if name == "double_margin":
        return losses.double_margin_siamese_loss(*_pairs(descriptors), config.margin_similar,
                                                 margin)
    triplet = losses.triplet_loss(*_triplets(descriptors), margin=margin)
    if name == "triplet":
        return triplet
    if logits is None or labels is None:
        raise ValueError("the joint loss needs the classifier logits and the class labels")
    cross_entropy = losses.classification_loss(logits.reshape(-1, logits.shape[-1]),
                                               labels.reshape(-1))
    return config.alpha * triplet + config.beta * cross_entropy


def tuple_distances(descriptors: Tensor) -> tuple[Tensor, Tensor]:
    """L2 distances query-positive (T,) and query-negatives (T, k) of tuple descriptors."""
    positive = (descriptors[:, 0] - descriptors[:, 1]).norm(dim=1)
    negative = (descriptors[:, :1] - descriptors[:, 2:]).norm(dim=2)
    return positive, negative


# --------------------------------------------------------------------------- training


def _describer(model: TupleModel, split: SfmSplit, config: FinetuneConfig,
               device: str) -> Describe:
    """The mining's ``describe``: descriptors of the asked images only, from ``model`` in eval
    mode without gradients (``extract_descriptors`` restores the training mode afterwards)."""

    def describe(indices: np.ndarray) -> np.ndarray:
        images = _MaxSizeImages([split.image_paths[i] for i in indices], config.image_size)
        return extract_descriptors(model, images, device=device, progress=config.progress,
                                   batch_size=config.mining_batch_size)

    return describe


class EpochTuples:
    """fit's loader: each pass over it is one epoch, counted from ``first_epoch`` (0-based).

    A pass first mines the epoch's tuples with ``model`` as it is then (fit has already
    restored a checkpoint), then yields lists of ``tuples_per_batch`` :class:`TupleImages`
    items in the mined order (the queries are drawn at random already; the last batch may be
    smaller). ``last_tuples`` keeps the most recent epoch's index tuples.
    """

    def __init__(self, model: TupleModel, split: SfmSplit, config: FinetuneConfig,
                 device: str, first_epoch: int = 0) -> None:
        self.model, self.split, self.config, self.device = model, split, config, device
        self.sampler = TupleSampler(split, n_queries=config.n_queries,
                                    n_negatives=config.n_negatives, pool_size=config.pool_size,
                                    seed=config.seed)
        self.epoch = first_epoch
        self.last_tuples: np.ndarray | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.config.tuples_per_batch)

    def __iter__(self) -> Iterator[list[tuple[Any, Tensor]]]:
        describe = _describer(self.model, self.split, self.config, self.device)
        self.last_tuples = self.sampler.tuples(self.epoch, describe)
        self.epoch += 1
        dataset = TupleImages(self.split, self.last_tuples, self.config.image_size)
        size = self.config.tuples_per_batch
        for start in range(0, len(dataset), size):  # under torchrun: this process's tuples
            yield [dataset[i] for i in share(list(range(start, min(start + size, len(dataset)))))]


@dataclass
class FinetuneResult:
    """The fine-tuned ``net`` (eval mode), the ``joint`` loss's cluster ``head`` (else None),
    one ``history`` record per epoch (``epoch``, ``loss``: mean batch loss, a sum over the
    batch's tuples for ``contrastive`` as in cirtorch, ``seconds`` with the mining,
    ``positive_distance`` / ``negative_distance``: mean L2 query-positive / query-negative
    distance of the epoch's training tuples, ``gem_p``: GeM's p after the epoch, None for other
    poolings) and the training ``seconds`` of all epochs, resumed ones included."""

    net: RetrievalNet
    history: list[dict[str, Any]]
    seconds: float
    config: FinetuneConfig
    head: nn.Linear | None = None


class _EpochStats:
    """Sums of the training tuples' distances over one epoch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.positive = self.negative = 0.0
        self.n_positive = self.n_negative = 0

    def add(self, descriptors: Tensor) -> None:
        positive, negative = tuple_distances(descriptors.detach())
        self.positive += float(positive.sum())
        self.negative += float(negative.sum())
        self.n_positive += positive.numel()
        self.n_negative += negative.numel()

    def record(self, model: TupleModel) -> dict[str, Any]:
        pooling = model.net.pooling
        record = {"positive_distance": self.positive / max(self.n_positive, 1),
                  "negative_distance": self.negative / max(self.n_negative, 1),
                  "gem_p": float(pooling.p.detach()) if isinstance(pooling, GeM) else None}
        self.reset()
        return record


def _check_split(split: SfmSplit, config: FinetuneConfig) -> None:
    """Refuse, before any work, a split whose tuples cannot be mined."""
    if split.n_pairs == 0:
        raise ValueError(f"split {split.name!r} has no query-positive pairs to train on")
    others = int(np.unique(split.clusters).size) - 1
    if others < config.n_negatives:
        raise ValueError(f"n_negatives must be <= {others}, the clusters of split "
                         f"{split.name!r} other than a query's; got {config.n_negatives}")


def finetune(backbone: nn.Module, split: SfmSplit, config: FinetuneConfig | None = None,
             checkpoint: str | PathLike[str] | None = None) -> FinetuneResult:
    """Fine-tune ``backbone`` + ``config.pooling`` on the tuples of ``split`` (module docstring).

    ``backbone`` is copied, not changed. With ``checkpoint`` every epoch is saved atomically and
    a rerun resumes from the last one (with the same tuples it would have mined).
    """
    config = FinetuneConfig() if config is None else config
    _check_split(split, config)
    device = resolve_device(config.device)
    model = build_model(backbone, split, config)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    loader = EpochTuples(model, split, config, device, completed_epochs(checkpoint))
    stats = _EpochStats()

    def loss_fn(module: nn.Module, batch: list[tuple[Any, Tensor]]) -> Tensor:
        descriptors, labels = embed_tuples(model, batch)
        stats.add(descriptors)
        logits = model.head(descriptors) if model.head is not None else None
        return tuple_loss(descriptors, config, logits, labels)

    history = fit(model, loader, loss_fn, optimizer, epochs=config.epochs, device=device,
                  checkpoint=checkpoint, seed=config.seed, progress=config.progress,
                  desc=f"fine-tune ({config.loss})", scheduler=scheduler,
                  on_epoch_end=lambda epoch, module: stats.record(model))
    model.eval()
    seconds = sum(float(record["seconds"]) for record in history)
    return FinetuneResult(model.net, history, seconds, config, model.head)
