"""Functional core of the global pooling methods of thesis Figure 2.6.

Every pooling takes convolutional feature maps ``x`` of shape (B, C, H, W) and returns a
(B, C) descriptor that is *not* L2-normalised (use :func:`l2n` for that). The formulas follow
the reference protocol of cnnimageretrieval-pytorch (see ``REFERENCE_PROTOCOLS.md``, "Instance
retrieval") and the original papers; the code is written from the formulas.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["crow", "crow_weights", "gem", "l2n", "mac", "rmac", "rmac_regions", "spoc",
           "spoc_weights"]


def _check_maps(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be feature maps (B, C, H, W); got shape {tuple(x.shape)}")


def l2n(x: Tensor, eps: float = 1e-6) -> Tensor:
    """L2-normalise along dimension 1: ``x / (||x||_2 + eps)``."""
    return x / (torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True) + eps)


def mac(x: Tensor) -> Tensor:
    """Maximum activation of convolutions (Razavian et al.): global max over H and W."""
    _check_maps(x)
    return x.amax(dim=(-2, -1))


def spoc_weights(height: int, width: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """Gaussian centre prior of SPoC (Babenko & Lempitsky 2015), shape (H, W), summing to 1.

    Location (i, j) sits at the cell centre (i + 0.5, j + 0.5); the map centre is (H/2, W/2).
    The closest boundary is min(H, W)/2 away from the centre and sigma is one third of that,
    i.e. ``sigma = min(H, W) / 6``. The weights are divided by their sum so that pooling with
    them is a weighted *average*; the scale does not matter once the descriptor is L2-normalised.
    """
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5 - height / 2
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5 - width / 2
    sigma = min(height, width) / 6.0
    squared = rows[:, None] ** 2 + cols[None, :] ** 2
    weights = torch.exp(-squared / (2 * sigma**2))
    return weights / weights.sum()


def spoc(x: Tensor, center_prior: bool = True) -> Tensor:
    """Sum-pooled convolutional features (SPoC).

    With ``center_prior`` the locations are weighted by :func:`spoc_weights`; without it this
    is global average pooling (the "SPoC" of cnnimageretrieval-pytorch).
    """
    _check_maps(x)
    if not center_prior:
        return x.mean(dim=(-2, -1))
    weights = spoc_weights(x.shape[-2], x.shape[-1], dtype=x.dtype, device=x.device)
    return (x * weights).sum(dim=(-2, -1))


def gem(x: Tensor, p: float | Tensor = 3.0, eps: float = 1e-6) -> Tensor:
    """Generalized-mean pooling (Radenović et al.): ``mean(clamp(x, eps)^p)^(1/p)``.

    ``p = 1`` is average pooling and ``p -> inf`` tends to max pooling; ``p`` may be a tensor
    (e.g. a learnable parameter of shape (1,)).
    """
    _check_maps(x)
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def _region_starts(length: int, side: int, count: int) -> list[int]:
    """Evenly spaced start offsets of ``count`` windows of ``side`` cells along ``length``."""
    if count == 1:
        return [0]
    return [i * (length - side) // (count - 1) for i in range(count)]  # exact integer floor


def rmac_regions(
    height: int, width: int, levels: int = 3, overlap: float = 0.4
) -> list[tuple[int, int, int]]:
    """Square R-MAC regions (Tolias et al. 2016) as ``(top, left, side)`` tuples.

    Level ``l`` (1..levels) uses squares of side ``floor(2 * min(H, W) / (l + 1))``. Along the
    short side there are ``l`` regions; along the long side ``l + extra``, where ``extra`` in
    1..6 is chosen (as in cnnimageretrieval-pytorch) so that neighbouring level-1 regions
    overlap by the fraction closest to ``overlap``; square maps get ``extra = 0``. Regions are
    spread evenly from one border to the other (start offsets floored in exact integer
    arithmetic; the float32 arithmetic of cnnimageretrieval-pytorch can shift a region by one
    cell on maps more than about 4 times longer than wide). Empty regions (side 0) are skipped.
    """
    if levels < 1:
        raise ValueError(f"levels must be an integer >= 1; got {levels}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1); got {overlap}")
    short, long = min(height, width), max(height, width)
    extra = 0
    if long != short:
        # 2..7 level-1 regions along the long side; the overlap of neighbours is 1 - step/short.
        # float32 as in cnnimageretrieval-pytorch, so that near-ties resolve the same way.
        candidates = torch.arange(2, 8, dtype=torch.float32)
        step = (long - short) / (candidates - 1)
        gaps = ((short**2 - short * step) / short**2 - overlap).abs()
        extra = int(torch.argmin(gaps)) + 1
    extra_w = extra if width > height else 0
    extra_h = extra if height > width else 0
    regions = []
    for level in range(1, levels + 1):
        side = 2 * short // (level + 1)
        if side == 0:
            continue
        for top in _region_starts(height, side, level + extra_h):
            for left in _region_starts(width, side, level + extra_w):
                regions.append((top, left, side))
    return regions


def rmac(x: Tensor, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6) -> Tensor:
    """Regional MAC (Tolias et al. 2016), cnnimageretrieval-pytorch variant.

    The sum of the L2-normalised MAC vectors of the whole map and of every region of
    :func:`rmac_regions`. Including the whole map follows cnnimageretrieval-pytorch (Tolias et
    al. use only the grid regions; for a square map the whole map then counts twice, because
    the level-1 region covers it too).
    """
    _check_maps(x)
    descriptor = l2n(mac(x), eps)
    for top, left, side in rmac_regions(x.shape[-2], x.shape[-1], levels, overlap):
        region = x[..., top : top + side, left : left + side]
        descriptor = descriptor + l2n(mac(region), eps)
    return descriptor


def crow_weights(
    x: Tensor, a: float = 2.0, b: float = 2.0, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """Spatial (B, H, W) and channel (B, C) weights of CroW (Kalantidis et al. 2016).

    Spatial: ``S' = sum_k x_k``; ``S = (S' / ||S'||_a)^(1/b)`` (``eps`` added to the norm).
    Channel: with ``Q_k`` the fraction of non-zero locations of channel k,
    ``w_k = log(sum_c Q_c / (eps + Q_k))``. Expects non-negative (post-ReLU) maps.
    """
    _check_maps(x)
    summed = x.sum(dim=1)
    norm = summed.pow(a).sum(dim=(-2, -1), keepdim=True).pow(1.0 / a)
    spatial = (summed / (norm + eps)).pow(1.0 / b)
    nonzero = (x != 0).to(x.dtype).mean(dim=(-2, -1))
    total = nonzero.sum(dim=1, keepdim=True).clamp_min(eps)  # guards all-zero maps only
    channel = torch.log(total / (eps + nonzero))
    return spatial, channel


def crow(x: Tensor, a: float = 2.0, b: float = 2.0, eps: float = 1e-6) -> Tensor:
    """Cross-dimensional weighting (CroW): spatially weighted sum pooling times channel weights."""
    spatial, channel = crow_weights(x, a, b, eps)
    return (x * spatial[:, None]).sum(dim=(-2, -1)) * channel
