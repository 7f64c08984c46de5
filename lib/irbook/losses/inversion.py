"""Objectives of BatchNorm inversion (chapter 7): the BN-statistics loss (thesis Eq. 7.4), the
hardest-sample clustering loss (Eq. 7.5) and the image priors of DeepInversion (Yin et al. 2020).

:func:`batchnorm_statistics` reads, during a forward pass, the per-channel batch mean and biased
variance of the input of every ``nn.BatchNorm2d`` (the output of the convolution before it, as
the thesis describes), next to the layer's stored running mean and variance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "DEEPINVERSION_BN",
    "BatchNormStatistics",
    "batchnorm_statistics",
    "bn_statistics_loss",
    "hardest_cluster_loss",
    "image_l2",
    "total_variation",
]

DEEPINVERSION_BN: dict[str, float | bool] = {"squared": False, "first_bn_multiplier": 10.0}
"""Keyword arguments of :func:`bn_statistics_loss` that give DeepInversion's feature regulariser
(REFERENCE_PROTOCOLS.md, "BatchNorm inversion"): norms, not squared norms, first layer ×10."""


@dataclass(frozen=True)
class BatchNormStatistics:
    """Statistics of one ``nn.BatchNorm2d`` input: batch ``mean``/``var`` (C,), differentiable,
    and the layer's ``running_mean``/``running_var`` (C,), detached."""

    name: str
    mean: Tensor
    var: Tensor
    running_mean: Tensor
    running_var: Tensor


def _batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not layers:
        raise ValueError("model has no nn.BatchNorm2d layer: there are no statistics to invert")
    for name, layer in layers:
        if layer.running_mean is None or layer.running_var is None:
            raise ValueError(f"BatchNorm2d layer {name!r} keeps no running statistics "
                             "(track_running_stats=False)")
    return layers


def _channel_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of a (B, C, H, W) tensor over B, H and W."""
    rows = x.transpose(0, 1).reshape(x.shape[1], -1)  # contiguous rows reduce faster on CPU
    var, mean = torch.var_mean(rows, dim=1, unbiased=False)
    return mean, var


@contextmanager
def batchnorm_statistics(model: nn.Module) -> Iterator[list[BatchNormStatistics]]:
    """Record the input statistics of every ``nn.BatchNorm2d`` of ``model`` while in the block.

    Yields a list that each call of ``model`` empties and refills with one
    :class:`BatchNormStatistics` per BN layer, in execution order (for a plain network the
    first entry is the first BN layer). The hooks are removed when the block exits, also on an
    error. Raises ValueError when ``model`` has no BatchNorm2d or one keeps no running stats.
    """
    layers = _batchnorm_layers(model)
    records: list[BatchNormStatistics] = []

    def make_hook(name: str):
        def hook(module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            mean, var = _channel_statistics(inputs[0])
            records.append(BatchNormStatistics(name, mean, var, module.running_mean.detach(),
                                               module.running_var.detach()))
        return hook

    handles = [model.register_forward_pre_hook(lambda module, args: records.clear())]
    try:
        handles += [layer.register_forward_hook(make_hook(name)) for name, layer in layers]
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _check_factor(name: str, value: float, strictly_positive: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (strictly_positive and value == 0):
        bound = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")


def bn_statistics_loss(statistics: Sequence[BatchNormStatistics], weight: float = 1.0,
                       squared: bool = True, first_bn_multiplier: float = 1.0) -> Tensor:
    """BN loss of thesis Eq. 7.4: ``weight · Σ_l (‖μ_l − μ̂_l‖²₂ + ‖σ²_l − σ̂²_l‖²₂)``.

    ``weight`` is λ_BN. The default is the form printed in the thesis (squared norms, all
    layers weighted 1). ``squared=False, first_bn_multiplier=10`` (:data:`DEEPINVERSION_BN`)
    is DeepInversion's regulariser, ``Σ_l c_l (‖σ²_l − σ̂²_l‖₂ + ‖μ_l − μ̂_l‖₂)`` with
    ``c_1 = 10``; ``first_bn_multiplier`` weights the first entry of ``statistics`` in either
    form.
    """
    if len(statistics) == 0:
        raise ValueError("statistics is empty: run the model inside batchnorm_statistics(model)")
    _check_factor("weight", weight)
    _check_factor("first_bn_multiplier", first_bn_multiplier)
    terms = []
    for index, stat in enumerate(statistics):
        if stat.mean.shape != stat.running_mean.shape or stat.var.shape != stat.running_var.shape:
            raise ValueError(f"layer {stat.name!r}: batch statistics {tuple(stat.mean.shape)} "
                             f"do not match running statistics {tuple(stat.running_mean.shape)}")
        mean_gap, var_gap = stat.mean - stat.running_mean, stat.var - stat.running_var
        if squared:
            term = mean_gap.pow(2).sum() + var_gap.pow(2).sum()
        else:
            term = torch.linalg.vector_norm(mean_gap) + torch.linalg.vector_norm(var_gap)
        terms.append(term * (first_bn_multiplier if index == 0 else 1.0))
    return weight * torch.stack(terms).sum()


def _check_features(features: Tensor, labels: Tensor) -> None:
    if features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, D) tensor; got shape "
                         f"{tuple(features.shape)}")
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must be (N,) with N = {features.shape[0]}; got shape "
                         f"{tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor; got dtype {labels.dtype}")


def hardest_cluster_loss(features: Tensor, labels: Tensor, margin: float = 1.0,
                         weight: float = 1.0) -> Tensor:
    """Clustering loss of thesis Eq. 7.5 with the hardest intra- and inter-class samples.

    For each class k in ``labels`` with mean feature M_k: ``d_intra`` holds the Euclidean
    distances ``‖f_p − M_k‖₂`` of the P samples of k, ``d_inter`` those of the N − P samples of
    the other classes to the same M_k. The loss is
    ``weight · Σ_k max(margin + max d_intra − min d_inter, 0)`` (``weight`` is λ_cluster,
    ``margin`` is Δ). The class means are not detached. A class with one sample has
    ``max d_intra = 0``; at least two classes are needed.
    """
    _check_features(features, labels)
    _check_factor("margin", margin)
    _check_factor("weight", weight)
    classes = torch.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least 2 classes for inter-class distances; got "
                         f"{len(classes)}")
    hinges = []
    for k in classes:
        inside = labels == k
        centre = features[inside].mean(dim=0)
        distances = torch.linalg.vector_norm(features - centre, dim=1)
        hardest = margin + distances[inside].max() - distances[~inside].min()
        hinges.append(torch.clamp(hardest, min=0.0))
    return weight * torch.stack(hinges).sum()


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or min(images.shape) == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) tensor; got shape "
                         f"{tuple(images.shape)}")


def total_variation(images: Tensor) -> Tensor:
    """DeepInversion's L2 total-variation prior on a (B, C, H, W) batch.

    Sum of the Frobenius norms (over the whole batch, not squared) of the differences between
    each pixel and its right, lower, upper-right and lower-right neighbour.
    """
    _check_images(images)
    right = images[:, :, :, :-1] - images[:, :, :, 1:]
    down = images[:, :, :-1, :] - images[:, :, 1:, :]
    up_right = images[:, :, 1:, :-1] - images[:, :, :-1, 1:]
    down_right = images[:, :, :-1, :-1] - images[:, :, 1:, 1:]
    differences = (right, down, up_right, down_right)
    return torch.stack([torch.linalg.vector_norm(d) for d in differences]).sum()


def image_l2(images: Tensor) -> Tensor:
    """DeepInversion's image prior: the L2 norm of each image, averaged over the batch."""
    _check_images(images)
    return torch.linalg.vector_norm(images.reshape(images.shape[0], -1), dim=1).mean()
