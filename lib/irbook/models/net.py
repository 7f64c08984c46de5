"""Global-descriptor network: backbone -> pooling -> L2N -> optional whitening -> L2N."""

from __future__ import annotations

from torch import Tensor, nn

from irbook.models.functional import l2n
from irbook.models.pooling import make_pooling

__all__ = ["RetrievalNet"]


class RetrievalNet(nn.Module):
    """Maps images (B, 3, H, W) to L2-normalised global descriptors (B, D).

    ``pooling`` is a module or a name from :data:`irbook.models.pooling.POOLINGS`. ``whiten``
    is an optional linear layer applied to the normalised pooled vector (as in
    cnnimageretrieval-pytorch); see :meth:`irbook.models.whitening.Whitening.as_linear`.
    """

    def __init__(self, backbone: nn.Module, pooling: nn.Module | str,
                 whiten: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.pooling = make_pooling(pooling) if isinstance(pooling, str) else pooling
        self.whiten = whiten

    @property
    def dim(self) -> int:
        """Length of the output descriptor."""
        return self.whiten.out_features if self.whiten is not None else self.backbone.out_channels

    def feature_maps(self, images: Tensor) -> Tensor:
        """The backbone's convolutional feature maps (B, C, h, w)."""
        return self.backbone(images)

    def forward(self, images: Tensor) -> Tensor:
        descriptors = l2n(self.pooling(self.feature_maps(images)))
        if self.whiten is not None:
            descriptors = l2n(self.whiten(descriptors))
        return descriptors
