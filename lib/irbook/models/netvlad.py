"""NetVLAD (Arandjelovic et al. 2016): VLAD (thesis Eqs. 2.7-2.8) as a trainable layer.

The hard assignment phi of Eq. 2.5 is replaced by a soft one, a softmax over clusters of a
1x1 convolution: ``a_k(x) = softmax_k(w_k . x + b_k)``. With ``w_k = 2 alpha c_k`` and
``b_k = -alpha ||c_k||^2`` this is ``softmax_k(-alpha ||x - c_k||^2)``, which tends to the
nearest-centroid assignment as alpha grows. Residuals to learnable centroids are weighted by
it and summed over locations, intra-normalised, flattened and L2-normalised.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor, nn

__all__ = ["NetVLAD", "assignment_from_centroids", "netvlad"]


def _check_parameters(dim: int, weight: Tensor, bias: Tensor, centroids: Tensor) -> Tensor:
    """The conv weight as (K, C) after checking every shape against ``dim`` channels."""
    if centroids.dim() != 2 or centroids.shape[1] != dim:
        raise ValueError(f"centroids must have shape (K, {dim}); got {tuple(centroids.shape)}")
    k = centroids.shape[0]
    flat = weight.reshape(weight.shape[0], -1) if weight.dim() in (2, 4) else weight
    if flat.shape != (k, dim) or (weight.dim() == 4 and weight.shape[2:] != (1, 1)):
        raise ValueError(f"weight must have shape ({k}, {dim}) or ({k}, {dim}, 1, 1); got "
                         f"{tuple(weight.shape)}")
    if bias.shape != (k,):
        raise ValueError(f"bias must have shape ({k},); got {tuple(bias.shape)}")
    return flat


def netvlad(maps: Tensor, weight: Tensor, bias: Tensor, centroids: Tensor,
            normalize_input: bool = True, eps: float = 1e-12) -> Tensor:
    """NetVLAD of conv maps (B, C, H, W) -> (B, K*C), unit L2 norm.

    ``V_k = sum_t a_k(x_t) (x_t - c_k)`` with the soft assignment ``a = softmax_k(W x + b)``
    (``weight`` (K, C) or (K, C, 1, 1), ``bias`` (K,), ``centroids`` (K, C)); each ``V_k``
    is L2-normalised, then the stacked vector. With ``normalize_input`` every local
    descriptor is L2-normalised first, as in the paper.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be feature maps (B, C, H, W); got {tuple(maps.shape)}")
    flat_weight = _check_parameters(maps.shape[1], weight, bias, centroids)
    descriptors = maps.flatten(2)  # (B, C, T)
    if normalize_input:
        descriptors = TF.normalize(descriptors, dim=1, eps=eps)
    logits = torch.einsum("kc,bct->bkt", flat_weight, descriptors) + bias[:, None]
    assignment = torch.softmax(logits, dim=1)  # (B, K, T)
    weighted = torch.einsum("bkt,bct->bkc", assignment, descriptors)
    residuals = weighted - assignment.sum(dim=2)[..., None] * centroids
    residuals = TF.normalize(residuals, dim=2, eps=eps)
    return TF.normalize(residuals.flatten(1), dim=1, eps=eps)


def assignment_from_centroids(centroids: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Conv weight ``2 alpha c_k`` (K, C) and bias ``-alpha ||c_k||^2`` (K,) of the paper."""
    return 2.0 * alpha * centroids, -alpha * (centroids**2).sum(dim=1)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating) \
            or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0; got {alpha!r}")
    return float(alpha)


class NetVLAD(nn.Module):
    """NetVLAD layer, (B, dim, H, W) -> (B, num_clusters * dim).

    The 1x1 conv starts consistent with the (random) centroids; :meth:`init_from_codebook`
    sets both from k-means centroids. ``alpha`` is the sharpness used for those settings; once
    trained, the conv and the centroids are free parameters (the paper's decoupling).
    """

    def __init__(self, num_clusters: int, dim: int, alpha: float = 100.0,
                 normalize_input: bool = True):
        super().__init__()
        for name, value in (("num_clusters", num_clusters), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        self.num_clusters, self.dim = num_clusters, dim
        self.alpha = _check_alpha(alpha)
        self.normalize_input = bool(normalize_input)
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))
        self._set_assignment()

    @property
    def output_dim(self) -> int:
        return self.num_clusters * self.dim

    @torch.no_grad()
    def _set_assignment(self) -> None:
        weight, bias = assignment_from_centroids(self.centroids, self.alpha)
        self.conv.weight.copy_(weight[:, :, None, None])
        self.conv.bias.copy_(bias)

    @torch.no_grad()
    def init_from_codebook(self, centroids: Tensor, descriptors: Tensor | None = None) -> None:
        """Set the centroids (K, dim) and the conv (``w = 2 alpha c``, ``b = -alpha ||c||^2``).

        With ``descriptors`` (M, dim) alpha is first re-estimated as in the reference code
        (pytorch-NetVLAD): on average, a descriptor's second-nearest centroid gets 1/100 of
        the weight of its nearest, ``alpha = -ln(0.01) / mean(d_2^2 - d_1^2)``. Descriptors
        are L2-normalised first when ``normalize_input`` is set, as in :meth:`forward`.
        """
        centroids = torch.as_tensor(centroids)
        if centroids.shape != (self.num_clusters, self.dim):
            raise ValueError(f"centroids must have shape ({self.num_clusters}, {self.dim}); "
                             f"got {tuple(centroids.shape)}")
        if not bool(torch.isfinite(centroids).all()):
            raise ValueError("centroids must be finite (no NaN or inf values)")
        self.centroids.copy_(centroids.to(self.centroids))
        if descriptors is not None:
            self.alpha = self._estimate_alpha(torch.as_tensor(descriptors).to(self.centroids))
        self._set_assignment()

    def _estimate_alpha(self, descriptors: Tensor) -> float:
        if descriptors.dim() != 2 or descriptors.shape[1] != self.dim:
            raise ValueError(f"descriptors must have shape (M, {self.dim}); got "
                             f"{tuple(descriptors.shape)}")
        if self.num_clusters < 2:
            raise ValueError("estimating alpha from descriptors needs num_clusters >= 2")
        if not bool(torch.isfinite(descriptors).all()):
            raise ValueError("descriptors must be finite (no NaN or inf values)")
        if self.normalize_input:
            descriptors = TF.normalize(descriptors, dim=1)
        squared = torch.cdist(descriptors, self.centroids).pow(2)
        nearest_two = squared.topk(2, dim=1, largest=False).values
        gap = float((nearest_two[:, 1] - nearest_two[:, 0]).mean())
        return _check_alpha(-math.log(0.01) / gap if gap > 0 else float("inf"))

    def forward(self, maps: Tensor) -> Tensor:
        if maps.dim() != 4 or maps.shape[1] != self.dim:
            raise ValueError(f"maps must have shape (B, {self.dim}, H, W); got "
                             f"{tuple(maps.shape)}")
        return netvlad(maps, self.conv.weight, self.conv.bias, self.centroids,
                       self.normalize_input)

    def extra_repr(self) -> str:
        return (f"num_clusters={self.num_clusters}, dim={self.dim}, alpha={self.alpha:.4g}, "
                f"normalize_input={self.normalize_input}")
