"""Names and numbers shared by the library, the chapters and the CLI; imports no torch.

The chapter specifications and the command line read their choices from here, so they can be
listed without loading torch; :mod:`irbook.models` and :mod:`irbook.data` re-export them under
their historical names.
"""

from __future__ import annotations

__all__ = [
    "BACKBONES",
    "BACKBONE_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INSTANCE_BENCHMARKS",
    "POOLINGS",
    "REFERENCE_BGR_MEAN",
    "REVISITED_BENCHMARKS",
]

BACKBONE_NAMES: tuple[str, ...] = ("smallcnn", "resnet18", "resnet50", "resnet101", "vgg16",
                                   "mobilenet_v2", "googlenet")
"""Backbones of :func:`irbook.models.make_backbone` (``googlenet`` stands in for BN-Inception;
``smallcnn`` is the CPU stand-in pre-trained by :mod:`irbook.train.standin`)."""

BACKBONES = BACKBONE_NAMES  # the name irbook.models has always exported

POOLINGS: tuple[str, ...] = ("mac", "spoc", "gem", "rmac", "crow")
"""Global poolings of chapter 2 (thesis Figure 2.6), in the order of the book's tables."""

REVISITED_BENCHMARKS: tuple[str, ...] = ("roxford5k", "rparis6k")
"""Revisited Oxford and Paris (Radenovic et al. 2018): easy / medium / hard protocols."""

INSTANCE_BENCHMARKS: tuple[str, ...] = (*REVISITED_BENCHMARKS, "holidays", "ukbench")
"""The instance-retrieval benchmarks evaluated in chapter 2 (the original Oxford5k/Paris6k
readers of :mod:`irbook.data.instance` are not part of the book's tables)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet on [0, 1] images (torchvision's normalisation)."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet on [0, 1] images."""

REFERENCE_BGR_MEAN: tuple[float, float, float] = (104.0, 117.0, 128.0)
"""Mean subtracted from BGR 0-255 inputs by the thesis author's chapter-6 code (BN-Inception,
REFERENCE_PROTOCOLS.md); the book feeds torchvision networks RGB normalised by
:data:`IMAGENET_MEAN`/:data:`IMAGENET_STD` instead, and records this only for comparison."""
