"""Image features of a frozen backbone, computed once per run for the cross-modal trainers.

The chapters' CPU profiles train only the projection, hashing and text networks; the image
backbone (the book's stand-in pre-training, or a torchvision network with ImageNet weights)
stays fixed, so its features are computed once here and fed to every configuration.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..models.functional import spoc
from ..progress import progress_bar

__all__ = ["image_features", "to_input_tensor"]


def to_input_tensor(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 RGB images (N, H, W, 3) → float (N, 3, H, W), ImageNet-normalised; resized
    (bilinear) to ``size`` × ``size`` when given."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape (N, H, W, 3); got {images.dtype} "
                         f"{images.shape}")
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    if size is not None and batch.shape[-2:] != (size, size):
        batch = nn.functional.interpolate(batch, size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


@torch.no_grad()
def image_features(images: np.ndarray, backbone: nn.Module, device: str = "cpu", *,
                   size: int | None = None, batch_size: int = 256, grid: int = 1,
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
        maps = backbone(batch)
        pooled = (spoc(maps, center_prior=False) if grid == 1
                  else nn.functional.adaptive_avg_pool2d(maps, grid))
        chunks.append(pooled.flatten(1).cpu())
    if not chunks:
        return np.zeros((0, getattr(backbone, "out_channels", 0)), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)
