"""Fine-tuning experiments on SfM tuples that chapters share: a fine-tuning run cached by its
configuration, descriptors of a split's images, and the learned whitening of Radenović et al.
(cirtorch's ``Lw``) from a split's matching pairs.

A cached run is the checkpoint of :func:`irbook.instance.finetuning.finetune` itself: its file
name is a digest of everything the result depends on (the configuration, the backbone's weights
and the training split's list and, for synthetic data, its generator metadata), so a finished
checkpoint is read back without training and an interrupted one resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.data.images import load_image
from irbook.data.sfm import SFM_NAME, SfmSplit
from irbook.instance.finetuning import FinetuneConfig, FinetuneResult, finetune, training_image
from irbook.models.extract import extract_descriptors, extract_feature_maps
from irbook.models.whitening import Whitening, fit_learned_whitening

__all__ = ["SplitImages", "SquareSplitImages", "cached_finetune", "finetune_key",
           "module_digest", "split_conv_maps", "split_descriptors", "split_digest",
           "split_learned_whitening"]

IGNORED_FIELDS = ("progress", "device")
"""Configuration fields that do not change the trained weights."""


def module_digest(module: nn.Module) -> str:
    """SHA-1 over the names, shapes and bytes of every tensor of ``module``'s state dict."""
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.numpy().tobytes() if value.dtype != torch.bfloat16
                      else value.float().numpy().tobytes())
    return digest.hexdigest()


def split_digest(split: SfmSplit) -> str:
    """SHA-1 of what a split's training depends on: its image names, clusters and pairs, and
    the synthetic generator's metadata next to the release pickle when there is one."""
    digest = hashlib.sha1()
    digest.update(split.name.encode())
    digest.update("\n".join(Path(p).name for p in split.image_paths).encode())
    for array in (split.clusters, split.qidxs, split.pidxs):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    meta = _release_folder(split) / "synth_meta.json"
    if meta.is_file():
        digest.update(meta.read_bytes())
    return digest.hexdigest()


def _release_folder(split: SfmSplit) -> Path:
    """``<root>/retrieval-SfM-120k`` of a split (its image paths lie below ``ims/``)."""
    for parent in Path(split.image_paths[0]).parents:
        if parent.name == SFM_NAME:
            return parent
    return Path(split.image_paths[0]).parent


def finetune_key(backbone: nn.Module, split: SfmSplit, config: FinetuneConfig) -> str:
    """The digest naming a fine-tuning run's checkpoint (see the module docstring)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in IGNORED_FIELDS}
    payload = json.dumps({"config": fields, "backbone": module_digest(backbone),
                          "split": split_digest(split)}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def cached_finetune(backbone: nn.Module, split: SfmSplit, config: FinetuneConfig,
                    folder: str | PathLike[str], prefix: str = "finetune") -> FinetuneResult:
    """:func:`finetune` with its checkpoint at ``folder/<prefix>-<finetune_key>.pt``: a finished
    run is read back (no training, no mining), an interrupted one resumes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"{prefix}-{finetune_key(backbone, split, config)}.pt"
    return finetune(backbone, split, config, checkpoint=checkpoint)


class SplitImages(Dataset):
    """The images of a split as cirtorch's test-time tensors (:func:`training_image`)."""

    def __init__(self, split: SfmSplit, image_size: int) -> None:
        self.paths, self.image_size = list(split.image_paths), image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return training_image(self.paths[index], self.image_size)


def split_descriptors(net: nn.Module, split: SfmSplit, image_size: int, device: str,
                      batch_size: int = 1, progress: bool = True) -> np.ndarray:
    """Descriptors (N, D) of every image of ``split`` from ``net`` (eval mode, no gradients)."""
    return extract_descriptors(net, SplitImages(split, image_size), device=device,
                               progress=progress, batch_size=batch_size)


class SquareSplitImages(SplitImages):
    """The images of a split resized to ``image_size`` x ``image_size`` (aspect not kept), so
    that their conv maps share one shape and stack (:func:`split_conv_maps`)."""

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.paths[index])
        image = image.resize((self.image_size, self.image_size), Image.BILINEAR)
        return TF.normalize(TF.to_tensor(image), list(IMAGENET_MEAN), list(IMAGENET_STD))


def split_conv_maps(backbone: nn.Module, split: SfmSplit, image_size: int, device: str,
                    batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """The backbone's conv maps (N, C, h, w), float32 on the CPU, of every image of ``split``
    resized to a square of ``image_size`` (:class:`SquareSplitImages`): the frozen inputs of a
    layer trained on the maps, such as NetVLAD (eval mode, no gradients)."""
    maps = extract_feature_maps(backbone, SquareSplitImages(split, image_size), device=device,
                                progress=progress, batch_size=batch_size)
    return torch.stack(maps).float()


def split_learned_whitening(descriptors: np.ndarray, split: SfmSplit,
                            dim: int | None = None) -> Whitening:
    """Radenović's learned whitening (``P1 = chol(cov(q - p))^-1``, then PCA) from the
    matching pairs (qidxs, pidxs) of ``split``, whose images ``descriptors`` describe."""
    if len(descriptors) != split.n_images:
        raise ValueError(f"descriptors must have one row per image of split {split.name!r} "
                         f"({split.n_images}); got {len(descriptors)}")
    return fit_learned_whitening(descriptors, split.qidxs, split.pidxs, dim=dim)
