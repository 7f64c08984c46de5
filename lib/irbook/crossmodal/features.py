"""Image features of a backbone for the cross-modal trainers: computed once per run from a frozen
backbone, or batch by batch, with gradient, from a backbone fine-tuned end to end.

The chapters' CPU profiles train only the projection, hashing and text networks; the image
backbone (the book's stand-in pre-training, or a torchvision network with ImageNet weights)
stays fixed, so its features are computed once here and fed to every configuration. With a
``backbone_lr > 0`` the trainers wrap a copy of the backbone in :class:`PooledBackbone` and
update it with the heads (chapter 4 fine-tunes ResNet-152 / MobileNet / VGG, chapter 3 CNN-F).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..models.functional import spoc
from ..progress import progress_bar

__all__ = ["IMAGE_BATCH", "PooledBackbone", "check_images", "image_features", "pooled_features",
           "to_input_tensor"]

IMAGE_BATCH = 256
"""Images per backbone forward pass when features are computed without gradient."""


def check_images(images: object, name: str = "images", context: str = "") -> np.ndarray:
    """``images`` as a uint8 array (N, H, W, 3); a ValueError naming ``name`` (and why images
    are needed, ``context``) otherwise."""
    array = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 images of shape (N, H, W, 3){context}; got "
                         f"{array.dtype} {array.shape}")
    return array


def to_input_tensor(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 RGB images (N, H, W, 3) → float (N, 3, H, W), ImageNet-normalised; resized
    (bilinear) to ``size`` × ``size`` when given."""
    images = check_images(images)
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    if size is not None and batch.shape[-2:] != (size, size):
        batch = nn.functional.interpolate(batch, size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def pooled_features(backbone: nn.Module, batch: Tensor, grid: int = 1) -> Tensor:
    """(B, C·grid²) features of a normalised input batch (B, 3, H, W): the backbone's map
    averaged over each cell of a ``grid`` × ``grid`` partition (1 = global average pooling).
    Gradients flow to the backbone unless the caller disables them."""
    maps = backbone(batch)
    pooled = (spoc(maps, center_prior=False) if grid == 1
              else nn.functional.adaptive_avg_pool2d(maps, grid))
    return pooled.flatten(1)


@torch.no_grad()
def image_features(images: np.ndarray, backbone: nn.Module, device: str = "cpu", *,
                   size: int | None = None, batch_size: int = IMAGE_BATCH, grid: int = 1,
                   progress: bool = True) -> np.ndarray:
    """Average-pooled feature maps of ``backbone`` for uint8 images (N, H, W, 3): float32
    (N, C·grid²), the map averaged over each cell of a ``grid`` × ``grid`` partition (1 = global
    average pooling; 2 keeps where in the image a feature fired). The backbone is put in eval
    mode; its weights are not changed."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    backbone = backbone.to(device).eval()
    chunks = []
    starts = range(0, len(images), batch_size)
    for start in progress_bar(starts, enabled=progress, desc="image features", leave=False):
        batch = to_input_tensor(images[start:start + batch_size], size).to(device)
        chunks.append(pooled_features(backbone, batch, grid).cpu())
    if not chunks:
        return np.zeros((0, getattr(backbone, "out_channels", 0)), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)


class PooledBackbone(nn.Module):
    """A trainable copy of ``backbone`` with its input pipeline: uint8 images → normalised
    input (:meth:`inputs`) → pooled features with gradient (``forward``).

    The caller's module is deep-copied, so fine-tuning never changes it (a chapter reuses one
    backbone for many configurations); every parameter of the copy is trainable. BatchNorm
    layers stay in eval mode even in ``train()`` (running statistics of the pre-training, only
    their affine weights learn): fine-tuning batches of 32-64 images on one GPU give noisy
    batch statistics."""

    def __init__(self, backbone: nn.Module, size: int | None = None, grid: int = 1) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        if grid < 1:
            raise ValueError(f"grid must be >= 1; got {grid}")
        self.backbone = copy.deepcopy(backbone)
        if not any(True for _ in self.backbone.parameters()):
            raise ValueError("backbone has no parameters to fine-tune")
        self.backbone.requires_grad_(True)
        self.size, self.grid = size, grid
        self.train()

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def train(self, mode: bool = True) -> PooledBackbone:
        super().train(mode)
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def inputs(self, images: np.ndarray) -> Tensor:
        """Normalised (and resized) input batch of uint8 images, on the backbone's device."""
        return to_input_tensor(images, self.size).to(self.device)

    def forward(self, batch: Tensor) -> Tensor:
        return pooled_features(self.backbone, batch, self.grid)

    def features_of(self, images: np.ndarray, batch_size: int = IMAGE_BATCH) -> Tensor:
        """(N, C·grid²) features of all ``images`` in eval mode without gradient, on the
        backbone's device (the training mode is restored)."""
        was_training = self.training
        features = image_features(check_images(images), self.backbone, str(self.device),
                                  size=self.size, batch_size=batch_size, grid=self.grid,
                                  progress=False)
        self.train(was_training)
        return torch.from_numpy(features).to(self.device)

    def out_dim(self, images: np.ndarray) -> int:
        """Width of the pooled features (one probe image, eval mode, no gradient)."""
        return int(self.features_of(images[:1], batch_size=1).shape[1])
