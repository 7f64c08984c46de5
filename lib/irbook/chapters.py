"""The executable chapters: their notebooks and their parameters.

Adding a chapter means adding one :class:`Chapter` here and one notebook in ``notebooks/`` whose
parameters cell holds exactly the names declared below (a test checks this).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .params import Param, ParamSpec
from .paths import REPO_ROOT

BACKBONE_CHOICES = ("smallcnn", "resnet18", "resnet50", "resnet101", "vgg16", "mobilenet_v2",
                    "googlenet")
POOLING_CHOICES = ("all", "mac", "spoc", "gem", "rmac", "crow")
BENCHMARK_CHOICES = ("all", "roxford5k", "rparis6k", "holidays", "ukbench")


@dataclass(frozen=True)
class Chapter:
    """One thesis chapter as an executable notebook."""

    key: str
    title: str
    notebook: str
    spec: ParamSpec
    preflight: str | None = None

    def check_inputs(self, params: Mapping[str, Any]) -> None:
        """Run the chapter's preflight (``module:function``): missing data or weights fail here,
        before a kernel starts."""
        if self.preflight:
            module, function = self.preflight.split(":")
            getattr(importlib.import_module(module), function)(dict(params))

    @property
    def notebook_path(self) -> Path:
        return REPO_ROOT / self.notebook

    def resolve(self, profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated parameters of a run (profile values updated by ``overrides``)."""
        return self.spec.resolve(profile, overrides)


_COMMON = (
    Param("seed", int, "seed of every random generator (data, training, sampling)", low=0,
          high=2**31 - 1),
    Param("device", str, "compute device; auto picks a GPU when torch sees one",
          choices=("auto", "cpu", "cuda")),
    Param("data_root", str, "folder holding the datasets; empty: data/synthetic or data/datasets",
          nullable=True),
    Param("synthetic", bool, "write and use synthetic data in the official layouts"),
)

CH02 = Chapter(
    key="ch02",
    title="Deep image retrieval: off-the-shelf features",
    notebook="notebooks/ch02_deep_image_retrieval.ipynb",
    preflight="irbook.retrieval:preflight",
    spec=ParamSpec(
        params=(
            *_COMMON,
            Param("backbone", str, "network whose last conv maps are pooled",
                  choices=BACKBONE_CHOICES),
            Param("pretrained", bool, "smallcnn: pre-train on synthetic classes; torchvision: "
                  "ImageNet weights from the local torch cache"),
            Param("pretrain_epochs", int, "epochs of the smallcnn stand-in pre-training",
                  low=0, high=500),
            Param("pooling", str, "pooling of the conv maps; all compares the five",
                  choices=POOLING_CHOICES),
            Param("whitening", str, "PCA-whitening: both compares with and without",
                  choices=("both", "none", "pca")),
            Param("whitening_dim", int, "dimensions kept by PCA-whitening; 0 keeps all that "
                  "the whitening set supports", low=0, high=8192),
            Param("image_size", int, "longer image side in pixels", low=32, high=2048),
            Param("dataset", str, "benchmark(s) to evaluate", choices=BENCHMARK_CHOICES),
            Param("gallery_queries", int, "queries shown in the retrieval gallery", low=0,
                  high=20),
        ),
        profiles={
            "smoke": dict(seed=0, device="cpu", data_root=None, synthetic=True,
                          backbone="smallcnn", pretrained=True, pretrain_epochs=2,
                          pooling="all", whitening="both", whitening_dim=0, image_size=64,
                          dataset="all", gallery_queries=2),
            "demo": dict(seed=0, device="cpu", data_root=None, synthetic=True,
                         backbone="smallcnn", pretrained=True, pretrain_epochs=12,
                         pooling="all", whitening="both", whitening_dim=128, image_size=128,
                         dataset="all", gallery_queries=3),
            "full": dict(seed=0, device="auto", data_root=None, synthetic=False,
                         backbone="resnet101", pretrained=True, pretrain_epochs=0,
                         pooling="all", whitening="both", whitening_dim=0, image_size=1024,
                         dataset="all", gallery_queries=3),
        },
    ),
)

CHAPTERS: dict[str, Chapter] = {c.key: c for c in (CH02,)}


def get_chapter(key: str) -> Chapter:
    """The chapter called ``key`` (e.g. ``ch02``); a clear error lists the known ones."""
    try:
        return CHAPTERS[key]
    except KeyError:
        raise ValueError(
            f"unknown chapter {key!r}; available: {', '.join(CHAPTERS)}"
        ) from None


def resolve_in_notebook(key: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the parameters cell of a notebook: call with ``globals()``.

    Names left as ``None`` take the profile's value, so ``papermill -p profile smoke`` alone
    selects the whole smoke profile.
    """
    chapter = get_chapter(key)
    given = {name: namespace.get(name) for name in chapter.spec.names}
    return chapter.resolve(given.pop("profile") or "demo", given)
