"""Convolutional backbones that map images (B, 3, H, W) to feature maps (B, C, h, w).

torchvision networks are cut before their global pooling, as in cnnimageretrieval-pytorch
(VGG16 also loses its last max-pooling layer). Pretrained ImageNet weights are read only from
the local torch hub cache and are never downloaded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from irbook.constants import BACKBONES, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PretrainedWeightsMissingError",
    "SmallCNN",
    "make_backbone",
    "pretrained_head",
    "pretrained_weights_path",
]

# The classic ImageNet-1k weights of each torchvision network (the first release of each).
_WEIGHTS = {
    "resnet18": tvm.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": tvm.ResNet101_Weights.IMAGENET1K_V1,
    "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
    "mobilenet_v2": tvm.MobileNet_V2_Weights.IMAGENET1K_V1,
    "googlenet": tvm.GoogLeNet_Weights.IMAGENET1K_V1,
}


class PretrainedWeightsMissingError(FileNotFoundError):
    """Pretrained weights are not in the local torch hub cache (or cannot be read)."""


class SmallCNN(nn.Module):
    """A small CPU-friendly CNN: ``depth`` conv(3x3, stride 2)-BN-ReLU blocks.

    Channels double at every block, from ``width`` to ``out_channels = width * 2**(depth-1)``
    (256 for the defaults, about 0.39M parameters); a 64 px image gives a 4x4 map.
    """

    def __init__(self, width: int = 32, depth: int = 4):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be an integer >= 1; got {width}")
        if depth < 1:
            raise ValueError(f"depth must be an integer >= 1; got {depth}")
        blocks, channels = [], 3
        for i in range(depth):
            out = width * 2**i
            blocks += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.out_channels = channels

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)


class _TorchvisionTrunk(nn.Module):
    """The convolutional part of a torchvision network, with its ``out_channels``."""

    def __init__(self, layers: list[nn.Module], out_channels: int, half_range_input: bool = False):
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.out_channels = out_channels
        # GoogLeNet's ImageNet weights expect inputs scaled to [-1, 1] ("transform_input").
        self.half_range_input = half_range_input

    def forward(self, images: Tensor) -> Tensor:
        if self.half_range_input:
            mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            images = (images * std + mean - 0.5) / 0.5
        return self.features(images)


def pretrained_weights_path(name: str) -> Path:
    """Where the ImageNet weights of torchvision network ``name`` must lie in the hub cache."""
    _check_name(name)
    if name not in _WEIGHTS:
        raise ValueError(f"backbone {name!r} has no torchvision weights; choose one of "
                         f"{', '.join(_WEIGHTS)}")
    file_name = _WEIGHTS[name].url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _how_to_get(name: str, path: Path) -> str:
    return (f"Download {_WEIGHTS[name].url} on a machine with internet access and copy the "
            f"file, keeping its name, into {path.parent}/ (torch.hub.get_dir() is set by "
            "$TORCH_HOME). Nothing is downloaded at run time.")


def require_pretrained_weights(name: str) -> Path:
    """The cached ImageNet weight file of ``name``; a clear error naming it when absent."""
    path = pretrained_weights_path(name)
    if not path.is_file():
        raise PretrainedWeightsMissingError(
            f"Pretrained weights for {name} not found: expected {path}. {_how_to_get(name, path)}")
    return path


def _load_pretrained_state(name: str) -> dict[str, Tensor]:
    path = require_pretrained_weights(name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise PretrainedWeightsMissingError(
            f"Pretrained weights for {name} at {path} cannot be read ({error}). "
            f"{_how_to_get(name, path)}") from error


def _torchvision_trunk(name: str, pretrained: bool) -> _TorchvisionTrunk:
    state = _load_pretrained_state(name) if pretrained else None  # fail before building
    if name == "googlenet":
        net = tvm.googlenet(weights=None, aux_logits=False, init_weights=not pretrained,
                            transform_input=False)
    else:
        net = getattr(tvm, name)(weights=None)
    if state is not None:
        if name == "googlenet":  # the released file also holds the auxiliary classifiers
            state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        net.load_state_dict(state)
    if name.startswith("resnet"):
        layers = list(net.children())[:-2]  # drop avgpool and fc
        return _TorchvisionTrunk(layers, net.fc.in_features)
    if name == "vgg16":
        return _TorchvisionTrunk(list(net.features.children())[:-1], 512)  # drop last max-pool
    if name == "mobilenet_v2":
        return _TorchvisionTrunk(list(net.features.children()), net.last_channel)
    children = dict(net.named_children())
    keep = list(children)[: list(children).index("inception5b") + 1]
    return _TorchvisionTrunk([children[k] for k in keep], 1024, half_range_input=pretrained)


_HEADS = {"resnet18": "fc", "resnet50": "fc", "resnet101": "fc", "googlenet": "fc",
          "mobilenet_v2": "classifier.1"}
"""The linear ImageNet classifier on the globally pooled last conv maps, per torchvision net."""


def pretrained_head(name: str) -> tuple[Tensor, Tensor]:
    """The ImageNet classifier (weight (1000, C), bias) that ``name`` applies to its globally
    average-pooled feature maps, from the cached weights (FC features, class activation
    maps). VGG16's classifier works on the flattened 7x7 maps and is refused."""
    if name not in _HEADS:
        raise ValueError(f"backbone {name!r} has no linear classifier on pooled maps; choose "
                         f"one of {', '.join(_HEADS)} (or smallcnn with its stand-in head)")
    state = _load_pretrained_state(name)
    return state[f"{_HEADS[name]}.weight"], state[f"{_HEADS[name]}.bias"]


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {name!r}")


def make_backbone(name: str, pretrained: bool = False, seed: int | None = None) -> nn.Module:
    """Backbone ``name`` (one of :data:`BACKBONES`) with an ``out_channels`` attribute.

    ``pretrained=True`` loads torchvision's ImageNet weights from
    ``torch.hub.get_dir()/checkpoints/`` and raises :class:`PretrainedWeightsMissingError`
    when they are absent. Inputs are expected normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``.
    ``seed`` draws the initial weights from a generator seeded with it, leaving the global
    random state untouched (``None``: from the global generator, whose start differs between
    processes unless seeded).
    """
    _check_name(name)
    if name == "smallcnn" and pretrained:
        raise ValueError("smallcnn has no downloadable weights: pre-train it with "
                         "irbook.train.pretrain.pretrain_classifier")
    with contextlib.ExitStack() as scope:
        if seed is not None:
            scope.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
        return SmallCNN() if name == "smallcnn" else _torchvision_trunk(name, pretrained)
