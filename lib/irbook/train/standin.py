"""The book's stand-in for ImageNet pre-training, shared by chapters 2, 5 and 6.

A :class:`~irbook.models.SmallCNN` is trained as a classifier (cross-entropy, thesis
Eq. (2.13)) on the synthetic object classes of :func:`irbook.data.synth.ensure_classification`,
written under ``synthetic_dir()/<scale>/pretraining``. The trained backbone is cached under
``cache_dir()`` by :func:`irbook.train.pretrain_classifier`; the cache is reused only while the
training recipe, the generator version and a fingerprint of the training files are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from irbook.data import synth
from irbook.data.images import ImageFolderDataset
from irbook.data.synth import classification as synth_classification
from irbook.distributed import main_first
from irbook.models import SmallCNN, make_backbone
from irbook.paths import cache_dir, synthetic_dir
from irbook.train.pretrain import pretrain_classifier

__all__ = ["STANDIN_DEPTH", "STANDIN_IMAGE_SIZE", "standin_backbone", "standin_data",
           "standin_head", "standin_weights", "standin_weights_path", "training_fingerprint"]

STANDIN_IMAGE_SIZE = 64  # pixels of the synthetic training images and crops
STANDIN_LR = 3e-3
STANDIN_BATCH_SIZE = 64


def standin_data(*, seed: int, scale: str) -> Path:
    """The synthetic classification set (written if missing); train on ``<result>/train``."""
    # under torchrun rank 0 writes the data, then the others read it
    return main_first(lambda: synth.ensure_classification(
        synthetic_dir() / scale / "pretraining", seed=seed, scale=scale,
        image_size=STANDIN_IMAGE_SIZE))


def training_fingerprint(folder: str | Path) -> str:
    """SHA-1 over the relative path and the bytes of every file under ``folder``, sorted."""
    folder = Path(folder)
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


STANDIN_DEPTH = 4
"""Conv blocks of the stand-in :class:`~irbook.models.SmallCNN` (other depths: Fig. 2.13a)."""


def standin_weights_path(*, seed: int, scale: str, epochs: int,
                         depth: int = STANDIN_DEPTH) -> Path:
    """Where the stand-in backbone of (seed, scale, epochs, depth) is cached (it may not exist
    yet); the default depth keeps its historical name."""
    name = "smallcnn" if depth == STANDIN_DEPTH else f"smallcnn-d{depth}"
    return cache_dir() / f"{name}-synthetic-{scale}-seed{seed}-ep{epochs}.pt"


def standin_backbone(*, seed: int, scale: str, epochs: int, device: str,
                     progress: bool = True, depth: int = STANDIN_DEPTH) -> nn.Module:
    """The pre-trained stand-in ``smallcnn`` backbone (``depth`` conv blocks), on ``device``
    in eval mode.

    Trained once per (seed, scale, epochs, depth, training data) and then read from
    :func:`standin_weights_path`. ``scale`` is a key of
    :data:`irbook.data.synth.CLASSIFICATION_SCALES`.
    """
    root = standin_data(seed=seed, scale=scale)
    train_set = ImageFolderDataset(Path(root) / "train", image_size=STANDIN_IMAGE_SIZE,
                                   train=True)
    extra = {"dataset": "synthetic-classification", "scale": scale,
             "image_size": STANDIN_IMAGE_SIZE,
             "generator_version": synth_classification.GENERATOR_VERSION,
             "train_files": training_fingerprint(Path(root) / "train"), "init": "seeded",
             "head": "saved"}
    if depth != STANDIN_DEPTH:
        extra["depth"] = depth
    backbone = _seeded_smallcnn(seed, depth)  # the same initial weights in every process
    return pretrain_classifier(backbone, train_set, len(train_set.classes),
                               epochs=epochs, lr=STANDIN_LR, batch_size=STANDIN_BATCH_SIZE,
                               seed=seed, device=device,
                               cache_path=standin_weights_path(seed=seed, scale=scale,
                                                               epochs=epochs, depth=depth),
                               progress=progress, extra_config=extra)


def _seeded_smallcnn(seed: int, depth: int) -> nn.Module:
    """A SmallCNN of ``depth`` blocks initialised from ``seed`` (the global state untouched)."""
    if depth == STANDIN_DEPTH:
        return make_backbone("smallcnn", seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN(depth=depth)


def standin_weights(*, seed: int, scale: str, epochs: int, device: str,
                    progress: bool = True) -> Path:
    """The cached weight file of :func:`standin_backbone` (trained first when needed), for
    ``IncrementalConfig(backbone="smallcnn", pretrained=False, backbone_weights=...)``."""
    standin_backbone(seed=seed, scale=scale, epochs=epochs, device=device, progress=progress)
    return standin_weights_path(seed=seed, scale=scale, epochs=epochs)


def standin_head(*, seed: int, scale: str, epochs: int, device: str,
                 progress: bool = True) -> tuple:
    """The linear classifier (weight (classes, C), bias) trained with the stand-in backbone on
    its synthetic classes (trained first when needed): its FC layer."""
    from irbook.train.pretrain import cached_head

    standin_backbone(seed=seed, scale=scale, epochs=epochs, device=device, progress=progress)
    return cached_head(standin_weights_path(seed=seed, scale=scale, epochs=epochs))
