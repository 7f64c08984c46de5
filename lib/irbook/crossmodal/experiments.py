"""What the cross-modal chapters (3, 4 and later 8) share: the image-branch parameters, opening
a dataset (synthetic or real) in its official layout, the frozen image backbone and its
features, and the protocol wording of both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..constants import BACKBONE_NAMES
from ..distributed import main_first
from ..params import Param
from ..paths import data_root

IMAGE_PARAMS = (
    Param("backbone", str, "image backbone; smallcnn = the book's CPU stand-in",
          choices=BACKBONE_NAMES),
    Param("pretrained", bool, "smallcnn: the stand-in pre-training on synthetic classes; "
          "torchvision networks: ImageNet weights from the local torch cache"),
    Param("pretrain_epochs", int, "epochs of the smallcnn stand-in pre-training (cached)",
          low=1, high=500),
    Param("image_size", int, "side (px) the images are resized to before the backbone",
          low=16, high=1024),
    Param("backbone_lr", float, "learning rate of the image backbone when it is fine-tuned end "
          "to end; 0 = frozen (its features are computed once)", low=0.0, high=1.0),
)
"""The image branch of every cross-modal chapter (its backbone stays frozen on the CPU
profiles, so its features are computed once per run; ``backbone_lr > 0`` fine-tunes it)."""

HOW_TO_GET = {
    "mirflickr": "download MIRFlickr-25K and the DCMH pre-processed FLICKR-25K.mat "
                 "(https://github.com/jiangqy/DCMH-CVPR2017)",
    "nuswide": "download NUS-WIDE and the 21-concept .mat files of the DCMH/SSAH code",
    "flickr8k": "download Flickr8K images and Karpathy's dataset_flickr8k.json",
    "flickr30k": "download Flickr30K images and Karpathy's dataset_flickr30k.json",
    "coco": "download MS-COCO 2014 images and Karpathy's dataset_coco.json",
    "pedes": "request CUHK-PEDES from its authors (reid_raw.json and imgs/)",
}


def synth_scale(profile: str) -> str:
    """The smoke profile gets the tiny synthetic sets, every other one the demo sets."""
    return "smoke" if profile == "smoke" else "demo"


def dataset_root(params: Mapping[str, Any], kinds: Iterable[str]):
    """The folder holding ``kinds`` in their official layouts; synthetic sets are written
    there first (once, cached)."""
    from ..data.synth import ensure_crossmodal

    root = data_root(params["synthetic"], params["data_root"])
    if not params["synthetic"]:
        return root
    scale = synth_scale(params["profile"])
    folder = (root if params["data_root"] else root / scale) / "crossmodal"
    # under torchrun rank 0 writes the data, then the others read it
    return main_first(lambda: ensure_crossmodal(folder, list(kinds), scale=scale,
                                                seed=params["seed"]))


def open_tagged(params: Mapping[str, Any], name: str, n_query: int, n_train: int):
    """MIRFlickr-25K or NUS-WIDE (``name``) as :class:`~irbook.data.crossmodal.TaggedPairs`,
    split with the run's seed."""
    from ..data import crossmodal as data

    loaders = {"mirflickr": data.load_mirflickr, "nuswide": data.load_nuswide}
    if name not in loaders:
        raise ValueError(f"dataset must be one of {', '.join(loaders)}; got {name!r}")
    root = dataset_root(params, [name])
    return loaders[name](root, n_query=n_query, n_train=n_train, seed=params["seed"])


def open_captioned(params: Mapping[str, Any], name: str):
    """A captioned-image set (``flickr8k``, ``flickr30k``, ``coco``, ``pedes``)."""
    from ..data import crossmodal as data

    root = dataset_root(params, [name])
    return data.load_pedes(root) if name == "pedes" else data.load_karpathy(root, name)


def prepare_captioned(params: Mapping[str, Any], name: str, device: str, backbone,
                      region_grid: int = 0) -> dict[str, Any]:
    """One captioned set ready for training: its train and test parts with the uint8 images,
    caption tokens and lengths (vocabulary of the training captions, ``max_len`` words), the
    frozen global image features and, when ``region_grid`` > 0, region features
    ``(n, grid², C)`` (the map averaged over each cell of a grid × grid partition); the
    COCO 1K folds for ``coco``."""
    from ..data.crossmodal import coco_1k_folds, load_image_array
    from ..data.text import Vocabulary, encode_captions

    data = open_captioned(params, name)
    parts = {"train": data.subset("train"), "test": data.subset("test")}
    vocab = Vocabulary.from_captions(parts["train"].captions)
    out: dict[str, Any] = {"data": data, "vocab": vocab}
    for split, part in parts.items():
        images = load_image_array(part.image_paths, params["image_size"])
        tokens, lengths = encode_captions(vocab, part.captions, params["max_len"])
        out[split] = dict(part=part, images=images, tokens=tokens, lengths=lengths,
                          features=image_features_of(images, params, device, backbone))
        if region_grid:
            grid = image_features_of(images, params, device, backbone, grid=region_grid)
            out[split]["regions"] = np.ascontiguousarray(
                grid.reshape(len(grid), -1, region_grid ** 2).transpose(0, 2, 1))
    n_test = out["test"]["part"].n_images
    out["folds"] = coco_1k_folds(n_test) if name == "coco" else None
    return out


def preflight_weights(params: Mapping[str, Any]) -> None:
    """Refuse a run that asks for ImageNet weights the local torch cache lacks."""
    from ..models import require_pretrained_weights

    if params["backbone"] != "smallcnn" and params["pretrained"]:
        require_pretrained_weights(params["backbone"])


def image_backbone(params: Mapping[str, Any], device: str):
    """The frozen image backbone: the cached stand-in for ``smallcnn`` (trained on first use),
    a torchvision network otherwise."""
    from ..models import make_backbone

    if params["backbone"] == "smallcnn" and params["pretrained"]:
        from ..train.standin import standin_backbone

        return standin_backbone(seed=params["seed"], scale=synth_scale(params["profile"]),
                                epochs=params["pretrain_epochs"], device=device)
    return make_backbone(params["backbone"], pretrained=params["pretrained"],
                         seed=params["seed"]).to(device)


def image_features_of(images: np.ndarray, params: Mapping[str, Any], device: str,
                      backbone=None, grid: int = 1) -> np.ndarray:
    """Features (N, D) of uint8 images (N, H, W, 3) under the run's frozen backbone, average
    pooled over a ``grid`` × ``grid`` partition of the map."""
    from .features import image_features

    backbone = backbone if backbone is not None else image_backbone(params, device)
    return image_features(images, backbone, device, size=params["image_size"], grid=grid)


def describe_backbone(params: Mapping[str, Any]) -> str:
    """The image branch in the words of the protocol tables."""
    if params["backbone"] == "smallcnn":
        weights = ("stand-in pre-training on synthetic classes" if params["pretrained"]
                   else "random weights")
        return f"small CNN, {weights}, {_training_of(params)}"
    weights = "ImageNet" if params["pretrained"] else "random weights"
    return f"{params['backbone']}, {weights}, {_training_of(params)}"


def _training_of(params: Mapping[str, Any]) -> str:
    lr = params["backbone_lr"]
    return f"fine-tuned with lr {lr:g}" if lr > 0 else "frozen"


def image_branch_reason(params: Mapping[str, Any]) -> str:
    """Why the run's image branch differs from the thesis' (fine-tuned ImageNet networks)."""
    if params["backbone_lr"] > 0:
        return "the network is set by the backbone parameter"
    return ("the backbone stays frozen (features computed once) so that every configuration "
            "fits the CPU budget; the thesis fine-tunes it (backbone_lr > 0 does)")


SHARED_REASONS = {
    "batch size": "set by the batch_size parameter",
    "epochs": "the thesis does not state its epochs; the profile fixes them",
    "seeds": "the book measures the uncertainty of every claim",
}
"""Why chapters 3 and 4 depart from the thesis on the items they share."""
