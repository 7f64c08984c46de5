"""Feature-extraction schemes of thesis chapter 2 (Sec. 2.3.1), as functions of a backbone.

- :func:`multiscale_descriptor`: one pass per input scale, combined by a generalized mean;
- :func:`patch_descriptors` and :func:`patch_boxes`: multiple passes over image patches,
  rigid grid or spatial pyramid (Fig. 2.7 a, b);
- :func:`fc_features`: the activations of a fully-connected layer (Sec. 2.3.1.2 a);
- :func:`fuse_layers`: layer-level fusion of convolutional and FC descriptors (Sec. 2.3.1.3 a);
- :func:`class_activation_maps` and :func:`cam_crow`: class-weighted CroW, the "CAM+CroW" of
  Fig. 2.6 (Jimenez et al. 2017).

The backbone (or model) is passed in and run as it is: put it in eval mode first, and wrap the
call in ``torch.no_grad()`` when no gradients are needed (gradients flow otherwise). Every
function returns L2-normalised torch descriptors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from irbook.models.functional import crow_weights, l2n
from irbook.models.pooling import make_pooling

__all__ = [
    "DEFAULT_SCALES",
    "PATCH_SCHEMES",
    "cam_crow",
    "class_activation_maps",
    "fc_features",
    "fuse_layers",
    "multiscale_descriptor",
    "patch_boxes",
    "patch_descriptors",
]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 1 / math.sqrt(2), 0.5)  # REFERENCE_PROTOCOLS.md
PATCH_SCHEMES = ("grid", "pyramid")
Pooling = Callable[[Tensor], Tensor] | str


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor; got {shape}")


def _check_positive(value, name: str) -> float:
    """A finite real number > 0 (bool and NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _resolve_pooling(pooling: Pooling) -> Callable[[Tensor], Tensor]:
    """A pooling name of :data:`irbook.models.POOLINGS` becomes its module; callables pass."""
    if isinstance(pooling, str):
        return make_pooling(pooling)
    if not callable(pooling):
        raise ValueError(f"pooling must be a pooling name or a callable (B, C, H, W) -> (B, C); "
                         f"got {type(pooling).__name__}")
    return pooling


def _pooled(backbone: nn.Module, images: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    """One pass: backbone maps, pooled, L2-normalised, (B, C)."""
    return l2n(pool(backbone(images)))


def _signed_power(x: Tensor, exponent: float) -> Tensor:
    """``sign(x) |x|^exponent``: the plain power on the non-negative descriptors of ReLU maps."""
    return x.sign() * x.abs().pow(exponent)


# ----------------------------------------------------------------------------- multi-scale


def multiscale_descriptor(backbone: nn.Module, images: Tensor, pooling: Pooling = "gem",
                          scales: Sequence[float] = DEFAULT_SCALES, p: float = 3.0) -> Tensor:
    """Multi-scale descriptor (B, C): ``l2n( (mean_s d_s^p)^(1/p) )`` over the ``scales``.

    ``d_s`` is the L2-normalised pooled descriptor of the images resized by factor ``s``
    (bilinear, ``align_corners=False``, ``scale_factor=s`` as in cnnimageretrieval-pytorch, so
    PyTorch samples at the exact factor rather than the rounded size ratio; scale 1 is the
    image itself). Scales 1, 1/sqrt(2), 1/2
    and ``p = 3`` follow the cnnimageretrieval-pytorch protocol (``REFERENCE_PROTOCOLS.md``).
    Powers are sign-preserving so that signed descriptors stay defined; on the non-negative
    descriptors of ReLU maps they are the plain powers of that protocol.
    """
    _check_images(images)
    if isinstance(scales, str | bytes) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"scales must be a non-empty sequence of numbers > 0; got {scales!r}")
    scales = [_check_positive(s, "each scale") for s in scales]
    p = _check_positive(p, "p")
    pool = _resolve_pooling(pooling)
    total = None
    for scale in scales:
        resized = images
        if scale != 1.0:
            size = (int(images.shape[-2] * scale), int(images.shape[-1] * scale))
            if min(size) < 1:
                raise ValueError(f"scale {scale} shrinks the {tuple(images.shape[-2:])} images "
                                 "to nothing")
            resized = TF.interpolate(images, scale_factor=scale, mode="bilinear",
                                     align_corners=False)
        term = _signed_power(_pooled(backbone, resized, pool), p)
        total = term if total is None else total + term
    return l2n(_signed_power(total / len(scales), 1.0 / p))


# --------------------------------------------------------------------------------- patches


def _cuts(length: int, parts: int) -> list[int]:
    return [i * length // parts for i in range(parts + 1)]


def _grid_boxes(height: int, width: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    if rows > height or cols > width:
        raise ValueError(f"a {rows}x{cols} grid does not fit a {height}x{width} image")
    row_cuts, col_cuts = _cuts(height, rows), _cuts(width, cols)
    return [(top, left, bottom - top, right - left)
            for top, bottom in zip(row_cuts, row_cuts[1:], strict=False)
            for left, right in zip(col_cuts, col_cuts[1:], strict=False)]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def patch_boxes(height: int, width: int, scheme: str = "grid", grid: tuple[int, int] = (2, 2),
                levels: Sequence[int] = (1, 2)) -> list[tuple[int, int, int, int]]:
    """Patches ``(top, left, height, width)`` of an image, row-major (Fig. 2.7 a, b).

    ``"grid"``: a rigid ``grid = (rows, cols)`` partition of the image. ``"pyramid"``: spatial
    pyramid, an ``l x l`` partition for every ``l`` in ``levels`` (level 1 is the whole image),
    coarse levels first. Cuts fall at ``floor(i * length / parts)``, so patches tile the image
    exactly and differ by at most one pixel in size.
    """
    if scheme not in PATCH_SCHEMES:
        raise ValueError(f"scheme must be one of {PATCH_SCHEMES}; got {scheme!r}")
    height, width = _check_count(height, "height"), _check_count(width, "width")
    if scheme == "grid":
        if not isinstance(grid, Sequence) or len(grid) != 2:
            raise ValueError(f"grid must be a pair (rows, cols); got {grid!r}")
        rows, cols = _check_count(grid[0], "grid rows"), _check_count(grid[1], "grid cols")
        return _grid_boxes(height, width, rows, cols)
    if isinstance(levels, str | bytes) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"levels must be a non-empty sequence of integers >= 1; got {levels!r}")
    boxes: list[tuple[int, int, int, int]] = []
    for level in levels:
        level = _check_count(level, "each level")
        boxes += _grid_boxes(height, width, level, level)
    return boxes


def patch_descriptors(backbone: nn.Module, image: Tensor, scheme: str = "grid",
                      grid: tuple[int, int] = (2, 2), levels: Sequence[int] = (1, 2),
                      pooling: Pooling = "gem", aggregate: bool = True) -> Tensor:
    """Multiple-pass descriptor: every patch of :func:`patch_boxes` is a separate pass.

    ``image`` is (3, H, W) or a batch (B, 3, H, W). Each patch is cropped, fed to the
    backbone at its own size, pooled and L2-normalised. With ``aggregate`` the patch
    descriptors are summed and the sum L2-normalised (the usual aggregation, as in R-MAC's
    sum of normalised regions), giving (B, C); without it they are returned as (B, P, C).
    A single (3, H, W) image drops the batch dimension of the result.
    """
    single = isinstance(image, Tensor) and image.dim() == 3
    images = image.unsqueeze(0) if single else image
    _check_images(images, "image")
    pool = _resolve_pooling(pooling)
    boxes = patch_boxes(images.shape[-2], images.shape[-1], scheme, grid, levels)
    patches = torch.stack([_pooled(backbone, images[..., t : t + h, x : x + w], pool)
                           for t, x, h, w in boxes], dim=1)
    result = l2n(patches.sum(dim=1)) if aggregate else patches
    return result[0] if single else result


# ---------------------------------------------------------------- fully-connected features


def _find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return name, module
        raise ValueError("layer must be a submodule of model")
    if not isinstance(layer, str) or layer not in named or layer == "":
        examples = ", ".join(repr(n) for n in list(named)[1:8])
        raise ValueError(f"layer must name a submodule of model (e.g. {examples}); "
                         f"got {layer!r}")
    return layer, named[layer]


def fc_features(model: nn.Module, images: Tensor, layer: str | nn.Module) -> Tensor:
    """L2-normalised output (B, D) of ``layer`` (a name of ``model.named_modules()`` or the
    module itself) during ``model(images)``, caught by a forward hook and flattened.

    E.g. ``"classifier.4"`` is the second 4096-d FC layer of torchvision's AlexNet and
    ``"classifier.3"`` that of VGG16 (both before their ReLU). The output is cloned in the hook,
    because those networks' ``ReLU(inplace=True)`` would otherwise overwrite it. A layer run
    zero or several times in one forward pass is refused (the feature would be ambiguous).
    """
    _check_images(images)
    name, module = _find_layer(model, layer)
    captured: list[Tensor] = []

    def keep_output(_module: nn.Module, _inputs, output) -> None:
        if not isinstance(output, Tensor):
            raise ValueError(f"layer {name!r} must output a tensor; got {type(output).__name__}")
        captured.append(output.clone())

    handle = module.register_forward_hook(keep_output)
    try:
        model(images)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"layer {name!r} ran {len(captured)} times in the forward pass; "
                         "choose a layer that runs exactly once")
    return l2n(captured[0].flatten(1))


def fuse_layers(conv_desc: Tensor, fc_desc: Tensor,
                weights: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Layer-level fusion (Sec. 2.3.1.3 a): ``l2n([w_conv l2n(conv), w_fc l2n(fc)])``.

    Both inputs are (B, D_i) descriptors of the same images; the weights set each part's share
    of the fused unit vector (with (1, 1) both halves have norm 1/sqrt(2)).
    """
    conv_desc, fc_desc = torch.as_tensor(conv_desc), torch.as_tensor(fc_desc)
    if conv_desc.dim() != 2 or fc_desc.dim() != 2 or len(conv_desc) != len(fc_desc):
        raise ValueError(f"conv_desc and fc_desc must be (B, D) with the same B; got "
                         f"{tuple(conv_desc.shape)} and {tuple(fc_desc.shape)}")
    if not isinstance(weights, Sequence) or len(weights) != 2:
        raise ValueError(f"weights must be a pair (w_conv, w_fc); got {weights!r}")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weights must be finite numbers >= 0; got {weights!r}")
    if weights[0] == 0 and weights[1] == 0:
        raise ValueError("weights must not both be 0")
    fc_desc = fc_desc.to(conv_desc.dtype)
    return l2n(torch.cat([weights[0] * l2n(conv_desc), weights[1] * l2n(fc_desc)], dim=1))


# ------------------------------------------------------------------------ class-weighted CroW


def class_activation_maps(maps: Tensor, class_weights: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalised class activation maps (B, K, H, W) (Zhou et al. 2016; Jimenez et al. 2017).

    ``CAM_c = sum_k w_ck x_k`` from the weights (K, C), or per image (B, K, C), of a classifier
    on globally average-pooled maps; negative values are set to 0 and each map is divided by
    its maximum (``+ eps``; an all-negative map becomes 0). Jimenez et al. divide first and
    clip after, the same whenever the maximum is positive.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be feature maps (B, C, H, W); got shape {tuple(maps.shape)}")
    if class_weights.dim() not in (2, 3) or class_weights.shape[-1] != maps.shape[1]:
        raise ValueError(f"class_weights must be (K, C) or (B, K, C) with C = {maps.shape[1]}; "
                         f"got shape {tuple(class_weights.shape)}")
    pattern = "kc,bchw->bkhw" if class_weights.dim() == 2 else "bkc,bchw->bkhw"
    cams = torch.einsum(pattern, class_weights.to(maps.dtype), maps).clamp_min(0)
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)


def cam_crow(maps: Tensor, class_weights: Tensor, top_classes: int = 32,
             class_bias: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Class-weighted CroW (Jimenez et al. 2017; "CAM+CroW" of Fig. 2.6), (B, C).

    The classifier's scores ``W mean_hw(x) + bias`` pick each image's ``top_classes`` classes.
    For each, its CAM (:func:`class_activation_maps`) weights the maps spatially, the weighted
    sum over locations is multiplied by CroW's channel weights
    (:func:`irbook.models.functional.crow_weights`) and L2-normalised; the class vectors are
    summed and the sum L2-normalised, as in the authors' code without its optional PCA.
    ``top_classes = 32`` is this module's default. With all class weights equal every CAM is
    ``S' / max S'`` (``S'`` the channel sum), so the result is CroW with ``b = 1``, normalised.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be feature maps (B, C, H, W); got shape {tuple(maps.shape)}")
    if class_weights.dim() != 2 or class_weights.shape[1] != maps.shape[1]:
        raise ValueError(f"class_weights must be (K, C) with C = {maps.shape[1]}; got shape "
                         f"{tuple(class_weights.shape)}")
    n_classes = class_weights.shape[0]
    if isinstance(top_classes, bool) or not isinstance(top_classes, numbers.Integral) or not (
            1 <= top_classes <= n_classes):
        raise ValueError(f"top_classes must be an integer in [1, {n_classes}]; got {top_classes!r}")
    top_classes, weights = int(top_classes), class_weights.to(maps.dtype)
    scores = maps.mean(dim=(-2, -1)) @ weights.T
    if class_bias is not None:
        scores = scores + class_bias.to(maps.dtype)
    top = scores.topk(top_classes, dim=1).indices  # (B, T)
    cams = class_activation_maps(maps, weights[top], eps)  # (B, T, H, W)
    _, channel = crow_weights(maps, eps=eps)
    per_class = torch.einsum("bthw,bchw->btc", cams, maps) * channel[:, None]
    per_class = per_class / (torch.linalg.vector_norm(per_class, dim=2, keepdim=True) + eps)
    return l2n(per_class.sum(dim=1))
