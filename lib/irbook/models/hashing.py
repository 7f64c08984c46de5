"""Hashing networks of chapter 3 (Fig. 3.1, Section 3.4.1) on precomputed image features.

- :class:`ImageHashNet`: backbone feature (``in_dim``; FC7 = 4096 in the thesis) -> linear ->
  the real-valued common feature ``F`` (``common_dim``, N of Table 3.1) -> dropout -> linear
  -> ``n_bits`` logits; the relaxed code is ``H = tanh(logits)`` and the binary code
  ``B = sign(H)``.
- :class:`TextHashNet`: tag bag-of-words (``V``) -> SSAH's multi-scale fusion
  (:class:`MultiScaleFusion`) -> 2000 -> ReLU, dropout -> ``F`` (``common_dim``) -> dropout
  -> ``n_bits``, ``H = tanh``. ``multiscale=False`` drops the fusion (a plain MLP on the
  bag-of-words, as DCMH's text network).
- :class:`LabelPredictor` (``common_dim -> 256 -> c``, sigmoid probabilities, Eq. 3.6) and
  :class:`DomainPredictor` (``in_dim -> 256 -> 2``, softmax probabilities, Eq. 3.2). The
  thesis calls them "3 FC layers" and lists three layer sizes; here that is two linear maps
  through the three sizes.
- :class:`LabelHashNet`: SSAH's label network (multi-hot labels -> hidden -> ``F`` -> codes, and
  a label head), sized down.

Choices: ``F`` is a linear output (signed, no ReLU), so the inner products of Eqs. (3.3) and
(3.5) can be negative for dissimilar pairs, and no ReLU sits between ``F`` and the hash layer
(with one, DCMH's column-balance term drove every ReLU unit of ``F`` to zero in a test run and
the codes collapsed). On frozen backbone features the image branch is therefore linear up to
the tanh, as DCMH's last layer on a fixed CNN-F. Dropout precedes every linear layer after the
first (the thesis uses 0.9 on every FC layer).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MULTISCALE_LEVELS", "BagOfWordsLinear", "DomainPredictor", "HashOutput",
           "Dropout", "ImageHashNet", "LabelHashNet", "LabelPredictor", "MultiScaleFusion",
           "MultiScaleLinear", "TextHashNet", "bow_matmul", "sign_codes"]

MULTISCALE_LEVELS = (10, 6, 3, 2, 1)
"""SSAH's five pooling levels; the window (and stride) of level ``l`` is ``5 l`` words, i.e.
average pooling over 50, 30, 15, 10 and 5 consecutive bag-of-words entries (SSAH
``interp_block`` / ``MultiScaleTxt``)."""
TEXT_HIDDEN = 2000
PREDICTOR_HIDDEN = 256


class HashOutput(NamedTuple):
    """One branch's outputs: common feature ``F``, hash-layer logits, relaxed codes ``tanh``."""

    features: Tensor
    logits: Tensor
    codes: Tensor


def sign_codes(h: Any) -> np.ndarray:
    """Binary codes ``B = sign(h)`` as int8 in {-1, +1}, with sign(0) = +1."""
    if isinstance(h, Tensor):
        h = h.detach().cpu().numpy()
    return np.where(np.asarray(h) >= 0, 1, -1).astype(np.int8)


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


class MultiScaleFusion(nn.Module):
    """SSAH's multi-scale fusion of a bag-of-words vector ``x`` (``V`` entries).

    For every level ``l`` of ``levels`` the vector is average-pooled with window = stride =
    ``5 l`` (no padding: ``V // (5 l)`` values; a window longer than ``V`` pools all of it),
    passed through a 1x1 convolution with one input and one output channel (a learnt scalar
    weight and bias) and a ReLU. SSAH resizes each pooled channel back to length ``V`` and
    concatenates it with ``x`` (6 channels) before a fully connected layer. A resize is a fixed
    linear map of full column rank, so "resize, concatenate, linear" is the same family of
    functions as a linear layer on ``[x, pooled scales]``; this module returns the latter
    (``V + sum(V // (5 l))`` values, about 1.4 V instead of 6 V), which is about 4x cheaper.
    The scalar weights start at 1 and the biases at 0 (the identity on non-negative counts;
    SSAH draws the weight from 0.01 N(0, 1) and has no bias).
    """

    def __init__(self, vocab_size: int, levels: tuple[int, ...] = MULTISCALE_LEVELS):
        super().__init__()
        _check_positive(vocab_size=vocab_size)
        if not levels or any(int(level) < 1 for level in levels):
            raise ValueError(f"levels must be positive integers, got {levels!r}")
        self.vocab_size = vocab_size
        self.windows = tuple(min(5 * int(level), vocab_size) for level in levels)
        self.weight = nn.Parameter(torch.full((len(levels),), 1.0))
        self.bias = nn.Parameter(torch.zeros(len(levels)))

    @property
    def out_dim(self) -> int:
        return self.vocab_size + sum(self.vocab_size // w for w in self.windows)

    def forward(self, x: Tensor) -> Tensor:
        """``[x, scale_1, ..., scale_5]`` (n, ``out_dim``)."""
        return torch.cat([x, *_pool_scales(x, self.windows, self.weight, self.bias)], dim=1)


def _pool_scales(x: Tensor, windows: tuple[int, ...], weight: Tensor, bias: Tensor
                 ) -> list[Tensor]:
    """``relu(w_l * avgpool_l(x) + b_l)`` for every window (no padding)."""
    parts = []
    for i, window in enumerate(windows):
        n = x.shape[1] // window
        pooled = x[:, : n * window].reshape(x.shape[0], n, window).mean(dim=2)
        parts.append(torch.relu(weight[i] * pooled + bias[i]))
    return parts


SPARSE_DENSITY = 0.05
"""Bag-of-words batches with at most this fraction of non-zero entries go through
``embedding_bag`` (a sparse product) instead of a dense matrix product."""


def bow_matmul(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight`` for a bag-of-words batch ``x`` (n, V) and ``weight`` (V, out).

    A sparse batch that needs no gradient (the network input) is multiplied through
    ``embedding_bag`` with per-sample weights, which touches only the rows of ``weight`` of
    the words present (forward and backward); otherwise a dense product. Same result.
    """
    if x.requires_grad or x.numel() == 0 \
            or torch.count_nonzero(x) > SPARSE_DENSITY * x.numel():
        return x @ weight
    rows, cols = torch.nonzero(x, as_tuple=True)
    counts = torch.bincount(rows, minlength=x.shape[0])
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, weight, offsets, mode="sum", per_sample_weights=x[rows, cols])


class BagOfWordsLinear(nn.Module):
    """A linear layer on bag-of-words vectors, computed sparsely where the batch is sparse
    (:func:`bow_matmul`); initialised as ``nn.Linear``."""

    def __init__(self, vocab_size: int, out_dim: int, fan_in: int | None = None):
        super().__init__()
        _check_positive(vocab_size=vocab_size, out_dim=out_dim)
        bound = 1.0 / math.sqrt(fan_in or vocab_size)
        self.weight = nn.Parameter(torch.empty(vocab_size, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return bow_matmul(x, self.weight) + self.bias


class MultiScaleLinear(nn.Module):
    """:class:`MultiScaleFusion` followed by a linear layer (``T -> MS -> hidden``), computed
    as ``x W_x + Σ_l pooled_l W_l + b``: the bag-of-words part sparsely and without the
    gradient of the input (which the network never needs), the pooled scales densely."""

    def __init__(self, vocab_size: int, out_dim: int,
                 levels: tuple[int, ...] = MULTISCALE_LEVELS):
        super().__init__()
        self.fusion = MultiScaleFusion(vocab_size, levels)
        fan_in = self.fusion.out_dim
        self.words = BagOfWordsLinear(vocab_size, out_dim, fan_in=fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        self.scales = nn.Parameter(torch.empty(fan_in - vocab_size, out_dim)
                                   .uniform_(-bound, bound))

    @property
    def weight(self) -> Tensor:
        """The equivalent ``(fusion.out_dim, out_dim)`` weight on ``fusion(x)``."""
        return torch.cat([self.words.weight, self.scales])

    def forward(self, x: Tensor) -> Tensor:
        f = self.fusion
        pooled = torch.cat(_pool_scales(x, f.windows, f.weight, f.bias), dim=1)
        return self.words(x) + pooled @ self.scales


class Dropout(nn.Module):
    """Inverted dropout with a mask from ``torch.rand`` (the same distribution as
    ``nn.Dropout``, about 3x faster on CPU, whose ``bernoulli_`` is slow)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_dropout(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep / (1.0 - self.p)


class _HashHead(nn.Module):
    """``F`` -> dropout -> linear ``n_bits``; returns :class:`HashOutput`."""

    def __init__(self, common_dim: int, n_bits: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(Dropout(dropout), nn.Linear(common_dim, n_bits))

    def forward(self, features: Tensor) -> HashOutput:
        logits = self.layers(features)
        return HashOutput(features, logits, torch.tanh(logits))


class ImageHashNet(nn.Module):
    """Image branch: ``in_dim -> common_dim (F) -> n_bits``, ``H = tanh`` (Fig. 3.1)."""

    def __init__(self, in_dim: int, n_bits: int, common_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        _check_positive(in_dim=in_dim, n_bits=n_bits, common_dim=common_dim)
        self.common = nn.Linear(in_dim, common_dim)
        self.head = _HashHead(common_dim, n_bits, _check_dropout(dropout))

    def forward(self, x: Tensor) -> HashOutput:
        return self.head(self.common(x))


class TextHashNet(nn.Module):
    """Text branch: BoW ``V`` -> multi-scale fusion -> 2000 -> ``F`` -> ``n_bits``
    (``T -> MS -> 2000 -> N -> K``, Section 3.4.1), ``H = tanh``. The fusion and the first
    layer are one :class:`MultiScaleLinear` (or a :class:`BagOfWordsLinear` without fusion)."""

    def __init__(self, vocab_size: int, n_bits: int, common_dim: int = 512,
                 dropout: float = 0.5, hidden: int = TEXT_HIDDEN, multiscale: bool = True):
        super().__init__()
        _check_positive(vocab_size=vocab_size, n_bits=n_bits, common_dim=common_dim,
                        hidden=hidden)
        dropout = _check_dropout(dropout)
        first = MultiScaleLinear(vocab_size, hidden) if multiscale \
            else BagOfWordsLinear(vocab_size, hidden)
        self.common = nn.Sequential(first, nn.ReLU(), Dropout(dropout),
                                    nn.Linear(hidden, common_dim))
        self.head = _HashHead(common_dim, n_bits, dropout)

    def forward(self, tags: Tensor) -> HashOutput:
        return self.head(self.common(tags))


class _TwoLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float, hidden: int):
        super().__init__()
        _check_positive(in_dim=in_dim, out_dim=out_dim, hidden=hidden)
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                    Dropout(_check_dropout(dropout)),
                                    nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (apply sigmoid / softmax for probabilities)."""
        return self.layers(x)


class LabelPredictor(_TwoLayer):
    """Label predictor ``common_dim -> 256 -> c``; ``sigmoid(logits)`` are the per-label
    probabilities ``p`` of Eq. (3.6)."""

    def __init__(self, in_dim: int, n_labels: int, dropout: float = 0.5,
                 hidden: int = PREDICTOR_HIDDEN):
        super().__init__(in_dim, n_labels, dropout, hidden)

    def probabilities(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self(x))


class DomainPredictor(_TwoLayer):
    """Domain (modality) predictor ``in_dim -> 256 -> 2``; ``softmax(logits)`` are the
    probabilities ``P_d`` of Eq. (3.2) (class 0 = image, 1 = text)."""

    def __init__(self, in_dim: int, dropout: float = 0.5, hidden: int = PREDICTOR_HIDDEN,
                 n_domains: int = 2):
        super().__init__(in_dim, n_domains, dropout, hidden)

    def probabilities(self, x: Tensor) -> Tensor:
        return torch.softmax(self(x), dim=1)


class LabelHashNet(nn.Module):
    """SSAH's label network, sized down: labels ``c -> hidden -> F (common_dim)``, then hash
    codes ``tanh(F -> n_bits)`` and label logits ``F -> c`` (SSAH: c -> 4096 -> 512)."""

    def __init__(self, n_labels: int, n_bits: int, common_dim: int = 512, hidden: int = 1024,
                 dropout: float = 0.0):
        super().__init__()
        _check_positive(n_labels=n_labels, n_bits=n_bits, common_dim=common_dim,
                        hidden=hidden)
        self.common = nn.Sequential(nn.Linear(n_labels, hidden), nn.ReLU(),
                                    Dropout(_check_dropout(dropout)),
                                    nn.Linear(hidden, common_dim))
        self.head = _HashHead(common_dim, n_bits, 0.0)
        self.label_head = nn.Linear(common_dim, n_labels)

    def forward(self, labels: Tensor) -> tuple[HashOutput, Tensor]:
        out = self.head(self.common(labels))
        return out, self.label_head(torch.relu(out.features))
