"""Feature-map and descriptor extraction over a dataset (one image at a time by default)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from irbook.models.functional import l2n
from irbook.models.pooling import make_pooling

from ..progress import progress_bar

__all__ = ["extract_descriptors", "extract_feature_maps", "extract_pooled", "pool_maps",
           "sample_local_descriptors"]


def _image_of(item) -> Tensor:
    """A dataset item is an image tensor (C, H, W) or a tuple whose first element is one."""
    image = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(image, Tensor) or image.dim() != 3:
        raise TypeError("dataset items must be image tensors (C, H, W) or (image, ...) tuples; "
                        f"got {type(image).__name__}")
    return image


def _image_batches(dataset, batch_size: int) -> Iterator[Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size}")
    batch: list[Tensor] = []
    for index in range(len(dataset)):
        batch.append(_image_of(dataset[index]))
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


@torch.no_grad()
def _run_on_device(model: nn.Module, dataset, device, progress: bool, desc: str,
                   batch_size: int = 1) -> Iterator[Tensor]:
    """Model outputs batch by batch, left on ``device``; eval mode, no gradients."""
    was_training = model.training
    model.eval().to(device)
    try:
        with progress_bar(enabled=progress, total=len(dataset), desc=desc, unit="img") as bar:
            for images in _image_batches(dataset, batch_size):
                output = model(images.to(device))
                bar.update(len(images))
                yield output
    finally:
        model.train(was_training)


def _run(model: nn.Module, dataset, device, progress: bool, desc: str,
         batch_size: int) -> Iterator[Tensor]:
    for output in _run_on_device(model, dataset, device, progress, desc, batch_size):
        yield output.cpu()


def extract_feature_maps(backbone: nn.Module, dataset, device: str | torch.device = "cpu",
                         progress: bool = True, batch_size: int = 1) -> list[Tensor]:
    """Backbone feature maps (C, h, w) of every image of ``dataset``, on the CPU.

    Runs in eval mode without gradients. ``batch_size`` > 1 needs images of one size.
    """
    maps: list[Tensor] = []
    for output in _run(backbone, dataset, device, progress, "feature maps", batch_size):
        maps.extend(output.unbind(0))
    return maps


def pool_maps(maps: Sequence[Tensor], pooling: nn.Module | str) -> np.ndarray:
    """Pool each map (C, h, w) into an L2-normalised float32 row of an (N, C) array."""
    pool = make_pooling(pooling) if isinstance(pooling, str) else pooling
    device = next(pool.parameters(), torch.empty(0)).device
    with torch.no_grad():
        rows = [l2n(pool(m.unsqueeze(0).float().to(device))).cpu() for m in maps]
    if not rows:
        raise ValueError("maps must hold at least one feature map")
    return torch.cat(rows).numpy().astype(np.float32)


def extract_pooled(backbone: nn.Module, dataset, poolings: Sequence[str] | Mapping[str, nn.Module],
                   device: str | torch.device = "cpu", progress: bool = True,
                   desc: str = "feature maps") -> dict[str, np.ndarray]:
    """Several poolings of every image's feature maps, without keeping the maps.

    ``poolings`` are names of :func:`make_pooling` or modules by name (e.g. a
    :class:`~irbook.models.aggregation.LocalAggregation`). Returns ``{name: (N, D) float32}``,
    rows L2-normalised. Memory stays at one map at a time, which matters for full-size images
    (a ResNet map at 1024 px is 8 MB).
    """
    pools = (dict(poolings) if isinstance(poolings, Mapping)
             else {name: make_pooling(name) for name in poolings})
    pools = {name: pool.to(device) for name, pool in pools.items()}
    rows: dict[str, list[Tensor]] = {name: [] for name in pools}
    for maps in _run_on_device(backbone, dataset, device, progress, desc):
        with torch.no_grad():
            for name, pool in pools.items():
                rows[name].append(l2n(pool(maps.float())).cpu())
    if not len(dataset):
        raise ValueError("dataset must hold at least one image")
    return {name: torch.cat(r).numpy().astype(np.float32) for name, r in rows.items()}


def sample_local_descriptors(backbone: nn.Module, dataset, per_image: int, seed: int = 0,
                             device: str | torch.device = "cpu", progress: bool = True,
                             desc: str = "local descriptors") -> np.ndarray:
    """Up to ``per_image`` local descriptors (the C-vectors at the map's positions) of every
    image, drawn without replacement (seeded), as one (M, C) float32 array: the training set
    of a codebook (BoW/VLAD k-means, the Fisher-vector GMM)."""
    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise ValueError(f"per_image must be an integer >= 1; got {per_image!r}")
    generator = torch.Generator().manual_seed(int(seed))
    rows: list[Tensor] = []
    for maps in _run_on_device(backbone, dataset, device, progress, desc):
        for local in maps.float().flatten(2).transpose(1, 2).cpu():  # (H*W, C) per image
            keep = torch.randperm(len(local), generator=generator)[:per_image]
            rows.append(local[keep])
    if not rows:
        raise ValueError("dataset must hold at least one image")
    return torch.cat(rows).numpy().astype(np.float32)


def extract_descriptors(net: nn.Module, dataset, device: str | torch.device = "cpu",
                        progress: bool = True, batch_size: int = 1) -> np.ndarray:
    """Descriptors (N, D) float32 of every image of ``dataset`` from ``net`` (eval, no grad)."""
    rows = list(_run(net, dataset, device, progress, "descriptors", batch_size))
    if not rows:
        raise ValueError("dataset must hold at least one image")
    return torch.cat(rows).numpy().astype(np.float32)
