"""Metric-learning embedding network of chapters 5 and 6, with a classifier that can grow.

backbone feature maps -> global pooling -> Linear(C, dim) -> L2 normalisation. This mirrors the
chapter-6 reference code (BN-Inception, global max pooling, Linear 1024 -> 512, L2-normalised
output; REFERENCE_PROTOCOLS.md, "Thesis author's code"). The optional classifier used by the
chapter-5 method and the classifier-based baselines (LwF, EWC, ALASSO) sits on the linear
embedding *before* normalisation, so its logits are not bounded by the unit norm; the retrieval
descriptor is the normalised embedding.

BatchNorm: the reference code kept every BN layer in eval mode during training, so running
statistics stayed at their ImageNet values. Here ``train_bn=True`` (the default) trains BN on
the task, which chapter 7's BatchNorm inversion needs; ``train_bn=False`` reproduces the
reference (running statistics frozen; the affine BN parameters are still trained).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irbook.models.functional import l2n
from irbook.models.pooling import make_pooling

__all__ = ["EMBEDDING_POOLINGS", "EmbeddingNet", "GrowingLinear"]

# "max" = MAC (the reference code), "avg" = SPoC without centre prior, "gem" = GeM (p = 3).
EMBEDDING_POOLINGS = {"max": ("mac", {}), "avg": ("spoc", {"center_prior": False}),
                      "gem": ("gem", {})}


class GrowingLinear(nn.Module):
    """A linear layer ``in_features -> out_features`` whose output rows can be appended.

    :meth:`grow` adds ``n_new`` output units initialised like ``nn.Linear`` (uniform in
    ``±1/sqrt(in_features)``) and keeps the existing rows unchanged, as the adaptive network of
    thesis Figure 5.1(b) extends its classifier. Loading a state dict with another number of
    rows resizes the layer first, so checkpoints of any stage load into a fresh layer.
    """

    def __init__(self, in_features: int, out_features: int = 0):
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be an integer >= 1; got {in_features}")
        if out_features < 0:
            raise ValueError(f"out_features must be an integer >= 0; got {out_features}")
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(0, in_features))
        self.bias = nn.Parameter(torch.empty(0))
        if out_features:
            self.grow(out_features)

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def grow(self, n_new: int, generator: torch.Generator | None = None) -> None:
        """Append ``n_new`` output units; ``generator`` makes their initialisation reproducible.

        The parameters are replaced by new tensors: build the optimizer after growing.
        """
        if n_new < 0:
            raise ValueError(f"n_new must be an integer >= 0; got {n_new}")
        bound = 1.0 / math.sqrt(self.in_features)
        new_weight = (torch.rand(n_new, self.in_features, generator=generator) * 2 - 1) * bound
        new_bias = (torch.rand(n_new, generator=generator) * 2 - 1) * bound
        like = self.weight.detach()
        self.weight = nn.Parameter(torch.cat([like, new_weight.to(like)]))
        self.bias = nn.Parameter(torch.cat([self.bias.detach(), new_bias.to(like)]))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        incoming = state_dict.get(prefix + "weight")
        if incoming is not None and incoming.shape[0] != self.out_features:
            like = self.weight.detach()
            self.weight = nn.Parameter(like.new_empty(incoming.shape))
            self.bias = nn.Parameter(like.new_empty(incoming.shape[0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class EmbeddingNet(nn.Module):
    """Images (B, 3, H, W) -> L2-normalised embeddings (B, ``dim``), optionally with logits.

    ``backbone`` must expose ``out_channels``; ``pooling`` is one of
    :data:`EMBEDDING_POOLINGS` (``"max"`` as in the reference code). ``num_classes > 0`` adds
    a :class:`GrowingLinear` classifier on the un-normalised embedding.
    """

    def __init__(self, backbone: nn.Module, dim: int = 512, pooling: str = "max",
                 normalize: bool = True, num_classes: int = 0, train_bn: bool = True):
        super().__init__()
        if pooling not in EMBEDDING_POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(EMBEDDING_POOLINGS)}; "
                             f"got {pooling!r}")
        if dim < 1:
            raise ValueError(f"dim must be an integer >= 1; got {dim}")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone must have an out_channels attribute (see make_backbone)")
        name, kwargs = EMBEDDING_POOLINGS[pooling]
        self.backbone = backbone
        self.pooling = make_pooling(name, **kwargs)
        self.embedding = nn.Linear(backbone.out_channels, dim)
        self.classifier = GrowingLinear(dim, num_classes)
        self.normalize = normalize
        self.train_bn = train_bn

    @property
    def dim(self) -> int:
        return self.embedding.out_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def grow_classes(self, n_new: int, generator: torch.Generator | None = None) -> None:
        """Add ``n_new`` classifier outputs, keeping the old ones (thesis Section 5.3)."""
        self.classifier.grow(n_new, generator=generator)

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        if mode and not self.train_bn:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _linear_embedding(self, images: Tensor) -> Tensor:
        return self.embedding(self.pooling(self.backbone(images)))

    def _finish(self, raw: Tensor) -> Tensor:
        return l2n(raw) if self.normalize else raw

    def forward(self, images: Tensor) -> Tensor:
        return self._finish(self._linear_embedding(images))

    def forward_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(embeddings, logits)``; logits have shape (B, ``num_classes``), possibly (B, 0)."""
        raw = self._linear_embedding(images)
        return self._finish(raw), self.classifier(raw)
