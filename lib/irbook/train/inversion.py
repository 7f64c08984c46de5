"""Representative images of a previous task generated from a frozen teacher by BatchNorm
inversion (thesis Section 7.4.2; Algorithm 2, lines 7-16).

Gaussian noise Z with balanced random pseudo-labels Y' is optimised so that the statistics of
every BatchNorm input match the teacher's running statistics (Eq. 7.4) and the teacher's
features of Z form one cluster per pseudo-label (Eq. 7.5). Following DeepInversion (Yin et al.
2020; REFERENCE_PROTOCOLS.md) each step applies a random roll and flip, adds the total-variation
and L2 image priors, uses Adam with betas (0.5, 0.9) and a cosine learning rate, and clips the
pixels to the valid range of ImageNet-normalised [0, 1] images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.losses.inversion import (
    BatchNormStatistics,
    batchnorm_statistics,
    bn_statistics_loss,
    hardest_cluster_loss,
    image_l2,
    total_variation,
)
from irbook.progress import progress_bar

__all__ = ["GeneratedImages", "InversionConfig", "denormalize", "generate_representatives",
           "pseudo_labels"]

ADAM_BETAS = (0.5, 0.9)
"""Adam betas of DeepInversion's ImageNet settings 0 and 1."""


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def _check_float(name: str, value: object, positive: bool) -> None:
    number = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; "
                         f"got {value!r}")


@dataclass(frozen=True)
class InversionConfig:
    """One generation run. Thesis values (Sec. 7.5.2): ``lr`` 0.5, ``bn_weight`` λ_BN = 0.01,
    ``cluster_weight`` λ_cluster = 0.1, ``margin`` Δ = 1.0, 2000 iterations. The thesis is
    silent on the priors: ``tv_weight`` and ``l2_weight`` are DeepInversion's ImageNet defaults.
    ``bn_squared``/``first_bn_multiplier`` select the BN-loss form (thesis: True, 1.0;
    DeepInversion: False, 10.0). ``time_budget_s`` stops early (each batch gets an equal share).
    """

    iterations: int = 2000
    lr: float = 0.5
    bn_weight: float = 0.01
    cluster_weight: float = 0.1
    margin: float = 1.0
    tv_weight: float = 1e-4
    l2_weight: float = 1e-5
    jitter: int = 2
    flip: bool = True
    first_bn_multiplier: float = 1.0
    bn_squared: bool = True
    image_size: int = 224
    batch_size: int = 64
    seed: int = 0
    snapshot_every: int | None = None
    snapshot_images: int = 16
    time_budget_s: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name, low in (("iterations", 1), ("jitter", 0), ("image_size", 1),
                          ("batch_size", 1), ("snapshot_images", 1)):
            _check_int(name, getattr(self, name), low)
        _check_int("seed", self.seed, -(2**63))
        for name in ("lr", "first_bn_multiplier"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("bn_weight", "cluster_weight", "margin", "tv_weight", "l2_weight"):
            _check_float(name, getattr(self, name), positive=False)
        if self.jitter >= self.image_size:
            raise ValueError(f"jitter must be smaller than image_size ({self.image_size}); got "
                             f"{self.jitter}")
        for name in ("flip", "bn_squared", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.snapshot_every is not None:
            _check_int("snapshot_every", self.snapshot_every, 1)
        if self.time_budget_s is not None:
            _check_float("time_budget_s", self.time_budget_s, positive=True)


@dataclass
class GeneratedImages:
    """Generated images (N, H, W, 3) uint8 (de-normalised), pseudo-labels (N,) int64, the loss
    history (one row per batch and iteration; the terms unweighted, ``total`` weighted) and
    snapshots ``(iteration, uint8 images)`` of the first images of batch 0."""

    images: np.ndarray
    labels: np.ndarray
    history: list[dict] = field(default_factory=list)
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0


def _batch_sizes(n_images: int, batch_size: int) -> list[int]:
    """Near-equal batches of at most ``batch_size`` (no tiny last batch)."""
    n_batches = -(-n_images // batch_size)
    return [len(part) for part in np.array_split(np.arange(n_images), n_batches)]


def pseudo_labels(n_images: int, n_classes: int, batch_size: int,
                  generator: torch.Generator) -> Tensor:
    """Balanced random labels Y' (per-class counts differ by at most one), ordered so that each
    batch of :func:`_batch_sizes` holds groups of P images of one class: P = batch // K when a
    batch has room for two per class, else 2 (K = ``n_classes``). The class order of every
    round of groups is a random permutation drawn from ``generator``."""
    _check_int("n_classes", n_classes, 1)
    _check_int("n_images", n_images, n_classes)
    batch = _batch_sizes(n_images, batch_size)[0]
    group = batch // n_classes if batch >= 2 * n_classes else max(1, min(2, batch // 2))
    counts = [n_images // n_classes + (k < n_images % n_classes) for k in range(n_classes)]
    counts = [counts[i] for i in torch.randperm(n_classes, generator=generator).tolist()]
    labels: list[int] = []
    while len(labels) < n_images:
        for k in torch.randperm(n_classes, generator=generator).tolist():
            take = min(group, counts[k])
            labels += [k] * take
            counts[k] -= take
    return torch.tensor(labels, dtype=torch.int64)


def denormalize(images: Tensor) -> np.ndarray:
    """ImageNet-normalised (B, 3, H, W) floats -> (B, H, W, 3) uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    pixels = ((images.detach() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def _valid_range(device: torch.device) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return -mean / std, (1 - mean) / std


@contextmanager
def _frozen(teacher: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` inside; each module's mode and each parameter's
    flag restored afterwards."""
    modes = [(m, m.training) for m in teacher.modules()]
    flags = [(p, p.requires_grad) for p in teacher.parameters()]
    try:
        teacher.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def _augment(z: Tensor, config: InversionConfig, generator: torch.Generator) -> Tensor:
    """Random roll by up to ``jitter`` px in each direction, then a horizontal flip (p = 0.5)."""
    x = z
    if config.jitter:
        dy, dx = torch.randint(-config.jitter, config.jitter + 1, (2,), generator=generator)
        x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
    if config.flip and bool(torch.rand(1, generator=generator) < 0.5):
        x = torch.flip(x, dims=(3,))
    return x


def _loss_terms(features: Tensor, labels: Tensor | None, stats: list[BatchNormStatistics],
                x: Tensor, config: InversionConfig) -> dict[str, Tensor]:
    """Unweighted terms; ``labels=None`` leaves out the cluster term (logged as 0)."""
    if features.dim() != 2 or features.shape[0] != x.shape[0]:
        raise ValueError(f"teacher must map (B, 3, S, S) images to (B, D) features; got shape "
                         f"{tuple(features.shape)} for B = {x.shape[0]}")
    bn = bn_statistics_loss(stats, squared=config.bn_squared,
                            first_bn_multiplier=config.first_bn_multiplier)
    if labels is not None:
        cluster = hardest_cluster_loss(features, labels, margin=config.margin)
    else:
        cluster = features.new_zeros(())
    priors = {}
    for name, prior, weight in (("tv", total_variation, config.tv_weight),
                                ("l2", image_l2, config.l2_weight)):
        with torch.set_grad_enabled(weight > 0 and torch.is_grad_enabled()):
            priors[name] = prior(x)  # logged; no backward cost when its weight is 0
    return {"bn": bn, "cluster": cluster, **priors}


def _weighted_total(terms: dict[str, Tensor], config: InversionConfig) -> Tensor:
    return (config.bn_weight * terms["bn"] + config.cluster_weight * terms["cluster"]
            + config.tv_weight * terms["tv"] + config.l2_weight * terms["l2"])


def _optimise_batch(teacher: nn.Module, stats: list[BatchNormStatistics], z: Tensor,
                    labels: Tensor, config: InversionConfig, generator: torch.Generator,
                    deadline: float | None, on_step) -> bool:
    """Algorithm 2, lines 12-16 on one batch (``z`` updated in place); True if stopped early."""
    low, high = _valid_range(z.device)
    optimizer = torch.optim.Adam([z], lr=config.lr, betas=ADAM_BETAS, eps=1e-8)
    # a batch with one pseudo-class has no inter-class distance: no cluster term
    clustered = config.cluster_weight > 0 and len(torch.unique(labels)) >= 2
    for i in range(config.iterations):
        lr = 0.5 * (1 + math.cos(math.pi * i / config.iterations)) * config.lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = _augment(z, config, generator)
        optimizer.zero_grad(set_to_none=True)
        terms = _loss_terms(teacher(x), labels if clustered else None, stats, x, config)
        total = _weighted_total(terms, config)
        total.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, high), low))
        on_step({"iteration": i + 1, "lr": lr, **{k: v.item() for k, v in terms.items()},
                 "total": total.item()})
        if deadline is not None and time.perf_counter() >= deadline and i + 1 < config.iterations:
            return True
    return False


def _device(teacher: nn.Module) -> torch.device:
    for tensor in (*teacher.parameters(), *teacher.buffers()):
        return tensor.device
    return torch.device("cpu")


@dataclass
class _Run:
    """What one call shares between its batches: the teacher's recorded statistics, the result
    being filled, the progress bar and the start time."""

    teacher: nn.Module
    stats: list[BatchNormStatistics]
    config: InversionConfig
    result: GeneratedImages
    bar: object
    start: float

    def batch(self, index: int, labels: Tensor, seed: int, deadline: float | None) -> np.ndarray:
        """Generate one batch from its own seeded generator; returns its uint8 images."""
        config, result = self.config, self.result
        generator = torch.Generator().manual_seed(seed)
        size = config.image_size
        z = torch.randn((len(labels), 3, size, size), generator=generator)
        z = z.to(_device(self.teacher)).requires_grad_(True)
        snap = config.snapshot_every if index == 0 else None
        if snap:
            result.snapshots.append((0, denormalize(z[:config.snapshot_images])))

        def on_step(row: dict) -> None:
            result.history.append({"batch": index, **row, "stopped_early": False,
                                   "seconds": time.perf_counter() - self.start})
            self.bar.update(1)
            self.bar.set_postfix(bn=f"{row['bn']:.3g}", cluster=f"{row['cluster']:.3g}")
            if snap and (row["iteration"] % snap == 0 or row["iteration"] == config.iterations):
                result.snapshots.append((row["iteration"],
                                         denormalize(z[:config.snapshot_images])))

        stopped = _optimise_batch(self.teacher, self.stats, z, labels.to(z.device), config,
                                  generator, deadline, on_step)
        if stopped:
            result.history[-1]["stopped_early"] = result.stopped_early = True
            last = result.history[-1]["iteration"]
            if snap and result.snapshots[-1][0] != last:
                result.snapshots.append((last,
                                         denormalize(z[:config.snapshot_images])))
        return denormalize(z)


def generate_representatives(teacher: nn.Module, n_images: int, n_classes: int,
                             config: InversionConfig) -> GeneratedImages:
    """Generate ``n_images`` representative images with ``n_classes`` balanced pseudo-classes
    from the frozen ``teacher`` (ImageNet-normalised (B, 3, S, S) images -> (B, D) features,
    with BatchNorm2d layers), optimising Eq. 7.4 + Eq. 7.5 + priors (module docstring).

    Batches of at most ``config.batch_size`` are optimised one after another, each with its own
    noise, Adam and schedule. The teacher is used in eval mode and left unchanged (weights,
    buffers, modes and ``requires_grad``). Deterministic given ``config.seed``, unless the time
    budget (shared equally by the batches) stops a batch early: then ``stopped_early`` is set,
    on the result and on that batch's last history row.
    """
    if not isinstance(config, InversionConfig):
        raise ValueError(f"config must be an InversionConfig; got {type(config).__name__}")
    _check_int("n_classes", n_classes, 2 if config.cluster_weight > 0 else 1)
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) \
            or n_images < n_classes:
        raise ValueError(f"n_images must be an integer >= n_classes ({n_classes}); got "
                         f"{n_images!r}")
    base = torch.Generator().manual_seed(int(config.seed))
    labels = pseudo_labels(n_images, n_classes, config.batch_size, base)
    sizes = _batch_sizes(n_images, config.batch_size)
    seeds = torch.randint(0, 2**62, (len(sizes),), generator=base).tolist()
    size, budget = config.image_size, config.time_budget_s
    result = GeneratedImages(np.empty((0, size, size, 3), np.uint8), labels.numpy())
    start, chunks = time.perf_counter(), []
    with _frozen(teacher), batchnorm_statistics(teacher) as stats, progress_bar(
            total=len(sizes) * config.iterations, enabled=config.progress, desc="inversion",
            leave=False) as bar:
        run = _Run(teacher, stats, config, result, bar, start)
        for b, labels_b in enumerate(torch.split(labels, sizes)):
            deadline = None if budget is None else start + budget * (b + 1) / len(sizes)
            chunks.append(run.batch(b, labels_b, seeds[b], deadline))
    result.images, result.seconds = np.concatenate(chunks), time.perf_counter() - start
    return result
