"""Embeddings of local convolutional features: BoW, VLAD and Fisher Vectors (thesis 2.3.2.2).

The local features of a feature map (B, C, H, W) are its H*W columns, each a C-dimensional
descriptor (:func:`local_descriptors`). A codebook is learned once from a pool of them
(:func:`kmeans_codebook` for BoW and VLAD, :func:`fit_diagonal_gmm` for Fisher Vectors) and
every image is then embedded against it: :func:`bow` (Eqs. 2.4-2.6), :func:`vlad` (Eqs.
2.7-2.8) and :func:`fisher_vector` (Eqs. 2.9-2.11). :func:`embed_maps` and the
:class:`LocalAggregation` module take conv maps directly, so they can stand in for a pooling.

The embedding functions take descriptors of shape (T, C), giving a (D,) vector, or (B, T, C),
giving (B, D); they are written in torch, and VLAD and FV are differentiable w.r.t. the
descriptors (the hard assignment itself carries no gradient).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor, nn

__all__ = [
    "AGGREGATIONS",
    "DiagonalGMM",
    "LocalAggregation",
    "assign_nearest",
    "bow",
    "embed_maps",
    "embedding_dim",
    "fisher_vector",
    "fit_codebook",
    "fit_diagonal_gmm",
    "gmm_posteriors",
    "kmeans_codebook",
    "local_descriptors",
    "signed_sqrt",
    "vlad",
]

AGGREGATIONS: tuple[str, ...] = ("bow", "vlad", "fv")


# ----------------------------------------------------------------------------- validation
def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf values)")


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be feature maps (B, C, H, W); got {shape}")


def _batched(descriptors: Tensor) -> tuple[Tensor, bool]:
    """Descriptors as (B, T, C) plus whether the input was a single (T, C) set."""
    if not isinstance(descriptors, Tensor) or descriptors.dim() not in (2, 3):
        shape = tuple(descriptors.shape) if isinstance(descriptors, Tensor) else descriptors
        raise ValueError(f"descriptors must have shape (T, C) or (B, T, C); got {shape}")
    if descriptors.shape[-2] == 0:
        raise ValueError("descriptors must hold at least one local descriptor per image (T >= 1)")
    _check_finite(descriptors, "descriptors")
    single = descriptors.dim() == 2
    return (descriptors.unsqueeze(0) if single else descriptors), single


def _check_centroids(centroids: Tensor, dim: int) -> None:
    if not isinstance(centroids, Tensor) or centroids.dim() != 2 or centroids.shape[0] < 1:
        shape = tuple(centroids.shape) if isinstance(centroids, Tensor) else centroids
        raise ValueError(f"centroids must have shape (K, C) with K >= 1; got {shape}")
    if centroids.shape[1] != dim:
        raise ValueError(f"centroids have dimension {centroids.shape[1]} but the descriptors "
                         f"have {dim}")
    _check_finite(centroids, "centroids")


def _training_matrix(descriptors, k) -> tuple[np.ndarray, int]:
    """A (M, C) float64 numpy copy of ``descriptors`` for fitting a codebook of ``k`` words."""
    array = descriptors.detach().cpu().numpy() if isinstance(descriptors, Tensor) else descriptors
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"descriptors must have shape (M, C); got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("descriptors must be finite (no NaN or inf values)")
    k = _check_count(k, "k")
    if k > array.shape[0]:
        raise ValueError(f"k must be at most the number of descriptors M = {array.shape[0]}; "
                         f"got {k}")
    return array, k


def _like(array: np.ndarray, descriptors) -> Tensor:
    dtype = descriptors.dtype if isinstance(descriptors, Tensor) else torch.float64
    return torch.as_tensor(array).to(dtype if dtype.is_floating_point else torch.float64)


# ----------------------------------------------------------------------- local descriptors
def local_descriptors(maps: Tensor, normalize: bool = False, eps: float = 1e-12) -> Tensor:
    """Columns of conv maps (B, C, H, W) as local descriptors (B, H*W, C), row-major.

    With ``normalize`` each descriptor is L2-normalised (zero columns stay zero).
    """
    _check_maps(maps)
    descriptors = maps.flatten(2).transpose(1, 2)
    return TF.normalize(descriptors, dim=-1, eps=eps) if normalize else descriptors


def _maps_to_matrix(maps: Tensor | Sequence[Tensor], normalize: bool) -> Tensor:
    """All local descriptors (M, C) of a batch (B, C, H, W) or a list of maps (C, h, w)."""
    if isinstance(maps, Tensor):
        maps = [maps] if maps.dim() == 4 else [maps.unsqueeze(0)]
    else:
        maps = [m.unsqueeze(0) if isinstance(m, Tensor) and m.dim() == 3 else m for m in maps]
    if not maps:
        raise ValueError("maps must hold at least one feature map")
    rows = [local_descriptors(m, normalize).reshape(-1, m.shape[1]) for m in maps]
    if len({r.shape[1] for r in rows}) != 1:
        raise ValueError("maps must all have the same number of channels")
    return torch.cat(rows)


# ------------------------------------------------------------------------------ codebooks
def kmeans_codebook(descriptors: Tensor | np.ndarray, k: int, seed: int = 0,
                    iterations: int = 20) -> Tensor:
    """Visual words: ``k`` k-means centroids (k, C) of ``descriptors`` (M, C) with faiss.Kmeans.

    Seeded and so deterministic on one machine. The centroids start from k-means++ where
    faiss offers it (its ``init_method``; older faiss starts from a random sample, which
    merges well-separated clusters more often). faiss subsamples to 256 points per centroid
    when M is larger (with the same seed). Returned in the dtype of ``descriptors``.
    """
    import faiss

    array, k = _training_matrix(descriptors, k)
    iterations = _check_count(iterations, "iterations")
    options = {}
    if hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
        options["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    kmeans = faiss.Kmeans(array.shape[1], k, niter=iterations, seed=int(seed), verbose=False,
                          min_points_per_centroid=1, **options)
    kmeans.train(np.ascontiguousarray(array, dtype=np.float32))
    return _like(kmeans.centroids.astype(np.float64), descriptors)


@dataclass(frozen=True)
class DiagonalGMM:
    """A Gaussian mixture with diagonal covariances: the FV vocabulary {w_k, mu_k, sigma_k^2}.

    ``weights`` (K,) sum to 1; ``means`` and ``variances`` are (K, C); variances are > 0.
    """

    weights: Tensor
    means: Tensor
    variances: Tensor

    def __post_init__(self) -> None:
        k = self.weights.shape[0] if self.weights.dim() == 1 else -1
        if k < 1 or self.means.dim() != 2 or self.means.shape[0] != k:
            raise ValueError("gmm needs weights (K,) and means (K, C); got shapes "
                             f"{tuple(self.weights.shape)} and {tuple(self.means.shape)}")
        if self.variances.shape != self.means.shape:
            raise ValueError(f"gmm variances must have the shape of the means "
                             f"{tuple(self.means.shape)}; got {tuple(self.variances.shape)}")
        for name in ("weights", "means", "variances"):
            _check_finite(getattr(self, name), f"gmm {name}")
        if bool((self.variances <= 0).any()) or bool((self.weights <= 0).any()):
            raise ValueError("gmm weights and variances must be > 0")
        if abs(float(self.weights.sum()) - 1.0) > 1e-4:
            raise ValueError(f"gmm weights must sum to 1; got {float(self.weights.sum()):.6f}")

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, *args, **kwargs) -> DiagonalGMM:
        """The same mixture with every tensor moved / cast by ``Tensor.to``."""
        return DiagonalGMM(*(t.to(*args, **kwargs) for t in (self.weights, self.means,
                                                             self.variances)))


def fit_diagonal_gmm(descriptors: Tensor | np.ndarray, k: int, seed: int = 0,
                     iterations: int = 100, reg_covar: float = 1e-6) -> DiagonalGMM:
    """Fit a ``k``-component diagonal GMM to ``descriptors`` (M, C) with scikit-learn (EM).

    ``GaussianMixture(covariance_type="diag", random_state=seed)`` with k-means initialisation;
    ``reg_covar`` is added to every variance.
    """
    from sklearn.mixture import GaussianMixture

    array, k = _training_matrix(descriptors, k)
    iterations = _check_count(iterations, "iterations")
    if not math.isfinite(reg_covar) or reg_covar < 0:
        raise ValueError(f"reg_covar must be a finite number >= 0; got {reg_covar}")
    mixture = GaussianMixture(n_components=k, covariance_type="diag", random_state=seed,
                              max_iter=iterations, reg_covar=reg_covar).fit(array)
    weights = mixture.weights_ / mixture.weights_.sum()
    return DiagonalGMM(*(_like(a, descriptors) for a in (weights, mixture.means_,
                                                         mixture.covariances_)))


def fit_codebook(maps: Tensor | Sequence[Tensor], method: str, k: int, seed: int = 0,
                 normalize_descriptors: bool = False) -> Tensor | DiagonalGMM:
    """The codebook of ``method`` learned from the local descriptors of ``maps``.

    ``maps`` is a batch (B, C, H, W) or a list of maps (C, h, w) of any sizes. BoW and VLAD
    get k-means centroids, ``"fv"`` a diagonal GMM.
    """
    _check_method(method)
    descriptors = _maps_to_matrix(maps, normalize_descriptors).detach()
    if method == "fv":
        return fit_diagonal_gmm(descriptors, k, seed)
    return kmeans_codebook(descriptors, k, seed)


# ---------------------------------------------------------------------------- embeddings
def signed_sqrt(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Power normalisation ``sign(x) * sqrt(|x|)``; its gradient is finite at 0."""
    return torch.sign(x) * torch.sqrt(x.abs().clamp_min(eps))


def assign_nearest(descriptors: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid (Euclidean; first one on ties), shape (..., T): Eq. 2.5."""
    batch, single = _batched(descriptors)
    _check_centroids(centroids, batch.shape[-1])
    words = centroids.to(batch.dtype).expand(batch.shape[0], -1, -1)
    distances = torch.cdist(batch.detach(), words.detach(),
                            compute_mode="donot_use_mm_for_euclid_dist")
    nearest = distances.argmin(dim=-1)
    return nearest[0] if single else nearest


def bow(descriptors: Tensor, centroids: Tensor, normalize: bool = True) -> Tensor:
    """Bag of visual words, Eqs. 2.4-2.6: the fraction of descriptors per nearest word.

    ``g(c_k) = (1/T) sum_t phi(x_t, c_k)``; dimension K. With ``normalize`` (default) the
    histogram is then L2-normalised. (The thesis gives no tf-idf weighting, so none is applied.)
    """
    batch, single = _batched(descriptors)
    phi = TF.one_hot(assign_nearest(batch, centroids), centroids.shape[0]).to(batch.dtype)
    histogram = phi.mean(dim=1)
    if normalize:
        histogram = TF.normalize(histogram, dim=-1)
    return histogram[0] if single else histogram


def vlad(descriptors: Tensor, centroids: Tensor, intra_norm: bool = True,
         power_norm: bool = True, normalize: bool = True) -> Tensor:
    """VLAD, Eqs. 2.7-2.8: per word, the mean residual of the descriptors assigned to it.

    ``g(c_k) = (1/T) sum_t phi(x_t, c_k) (x_t - c_k)``, stacked word by word into a K*C vector.
    Then, each optional and in this order: ``intra_norm`` L2-normalises every word's residual
    (Arandjelovic & Zisserman 2013; empty words stay zero), ``power_norm`` applies the signed
    square root (Jegou et al. 2012) and ``normalize`` the global L2 normalisation. The 1/T of
    Eq. 2.7 cancels in any of the normalisations.
    """
    batch, single = _batched(descriptors)
    phi = TF.one_hot(assign_nearest(batch, centroids), centroids.shape[0]).to(batch.dtype)
    words = centroids.to(batch.dtype)
    summed = torch.einsum("btk,btc->bkc", phi, batch) - phi.sum(dim=1)[..., None] * words
    residuals = summed / batch.shape[1]
    if intra_norm:
        residuals = TF.normalize(residuals, dim=-1)
    encoding = residuals.flatten(1)
    if power_norm:
        encoding = signed_sqrt(encoding)
    if normalize:
        encoding = TF.normalize(encoding, dim=-1)
    return encoding[0] if single else encoding


def gmm_posteriors(descriptors: Tensor, gmm: DiagonalGMM) -> Tensor:
    """Soft assignments gamma_k(x_t) of Eq. 2.9, shape (..., T, K), summing to 1 over K."""
    batch, single = _batched(descriptors)
    if gmm.dim != batch.shape[-1]:
        raise ValueError(f"gmm has dimension {gmm.dim} but the descriptors have "
                         f"{batch.shape[-1]}")
    weights, means, variances = (t.to(batch.dtype) for t in (gmm.weights, gmm.means,
                                                             gmm.variances))
    precision = 1.0 / variances
    mahalanobis = ((batch**2) @ precision.T - 2 * batch @ (means * precision).T
                   + (means**2 * precision).sum(dim=1))
    log_norm = torch.log(2 * math.pi * variances).sum(dim=1)
    log_joint = torch.log(weights) - 0.5 * (log_norm + mahalanobis)
    gamma = torch.softmax(log_joint, dim=-1)
    return gamma[0] if single else gamma


def fisher_vector(descriptors: Tensor, gmm: DiagonalGMM, power_norm: bool = True,
                  normalize: bool = True, include_weights: bool = False) -> Tensor:
    """Improved Fisher Vector (Perronnin et al. 2010), Eqs. 2.9-2.11; dimension 2*K*C.

    With gamma of Eq. 2.9 and sigma_k = sqrt(variances_k), per component k:
    ``g_mu_k = 1/(T sqrt(w_k)) sum_t gamma_k(x_t) (x_t - mu_k) / sigma_k`` and
    ``g_sigma_k = 1/(T sqrt(2 w_k)) sum_t gamma_k(x_t) [((x_t - mu_k) / sigma_k)^2 - 1]``.
    gamma sits inside the sums (Eq. 2.10 prints it outside, a misprint). The output is
    ``[g_mu_1..g_mu_K, g_sigma_1..g_sigma_K]``; ``include_weights`` prepends the K weight
    gradients ``g_w_k = 1/(T sqrt(w_k)) sum_t (gamma_k(x_t) - w_k)`` as in Eq. 2.11 (dimension
    K + 2*K*C). Then the signed square root (``power_norm``) and L2 (``normalize``).
    """
    batch, single = _batched(descriptors)
    gamma = gmm_posteriors(batch, gmm)
    weights, means, variances = (t.to(batch.dtype) for t in (gmm.weights, gmm.means,
                                                             gmm.variances))
    count = batch.shape[1]
    sigma = variances.sqrt()
    s0 = gamma.sum(dim=1)  # (B, K) zeroth-order statistics
    s1 = torch.einsum("btk,btc->bkc", gamma, batch)
    s2 = torch.einsum("btk,btc->bkc", gamma, batch**2)
    centred = (s1 - s0[..., None] * means) / sigma
    squared = (s2 - 2 * means * s1 + s0[..., None] * means**2) / variances - s0[..., None]
    g_mu = centred / (count * weights.sqrt()[:, None])
    g_sigma = squared / (count * (2 * weights).sqrt()[:, None])
    parts = [g_mu.flatten(1), g_sigma.flatten(1)]
    if include_weights:
        parts.insert(0, (s0 - count * weights) / (count * weights.sqrt()))
    encoding = torch.cat(parts, dim=1)
    if power_norm:
        encoding = signed_sqrt(encoding)
    if normalize:
        encoding = TF.normalize(encoding, dim=-1)
    return encoding[0] if single else encoding


# -------------------------------------------------------------------- maps -> descriptors
def _check_method(method: str) -> None:
    if method not in AGGREGATIONS:
        raise ValueError(f"method must be one of {', '.join(AGGREGATIONS)}; got {method!r}")


def _check_codebook(method: str, codebook) -> None:
    _check_method(method)
    if method == "fv" and not isinstance(codebook, DiagonalGMM):
        raise ValueError(f"method 'fv' needs a DiagonalGMM codebook; got "
                         f"{type(codebook).__name__}")
    if method != "fv" and not isinstance(codebook, Tensor):
        raise ValueError(f"method {method!r} needs centroids (K, C) as a Tensor; got "
                         f"{type(codebook).__name__}")


def embedding_dim(method: str, codebook: Tensor | DiagonalGMM) -> int:
    """Length D of the (default) embedding of ``method`` with ``codebook``: K, K*C or 2*K*C."""
    _check_codebook(method, codebook)
    if method == "fv":
        return 2 * codebook.num_components * codebook.dim
    k, dim = codebook.shape
    return k if method == "bow" else k * dim


def embed_maps(maps: Tensor, method: str, codebook: Tensor | DiagonalGMM,
               normalize_descriptors: bool = False, **options) -> Tensor:
    """Embed conv maps (B, C, H, W) into (B, D) with ``method`` in :data:`AGGREGATIONS`.

    ``codebook`` is the centroids (K, C) for ``"bow"`` and ``"vlad"`` or a :class:`DiagonalGMM`
    for ``"fv"``; ``options`` go to :func:`bow`, :func:`vlad` or :func:`fisher_vector`.
    """
    _check_codebook(method, codebook)
    descriptors = local_descriptors(maps, normalize=normalize_descriptors)
    if method == "fv":
        return fisher_vector(descriptors, codebook, **options)
    return (bow if method == "bow" else vlad)(descriptors, codebook, **options)


class LocalAggregation(nn.Module):
    """BoW / VLAD / FV of conv maps as a module, (B, C, H, W) -> (B, D); codebook as buffers."""

    def __init__(self, method: str, codebook: Tensor | DiagonalGMM,
                 normalize_descriptors: bool = False, **options):
        super().__init__()
        _check_codebook(method, codebook)
        self.method, self.normalize_descriptors, self.options = (method, normalize_descriptors,
                                                                 dict(options))
        parts = ((codebook.weights, codebook.means, codebook.variances) if method == "fv"
                 else (codebook,))
        for name, part in zip(("c0", "c1", "c2"), parts, strict=False):
            self.register_buffer(name, part.detach().clone())

    def codebook(self) -> Tensor | DiagonalGMM:
        return DiagonalGMM(self.c0, self.c1, self.c2) if self.method == "fv" else self.c0

    def forward(self, maps: Tensor) -> Tensor:
        return embed_maps(maps, self.method, self.codebook(), self.normalize_descriptors,
                          **self.options)

    def extra_repr(self) -> str:
        return (f"method={self.method!r}, dim={embedding_dim(self.method, self.codebook())}, "
                f"normalize_descriptors={self.normalize_descriptors}")
