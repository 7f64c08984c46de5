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

_INCREMENTAL = (
    *_COMMON,
    Param("dataset", str, "fine-grained dataset(s): both = CUB-200-2011 and Stanford Dogs",
          choices=("cub200", "dogs", "both")),
    Param("backbone", str, "network under the embedding head (googlenet stands in for "
          "BN-Inception)", choices=BACKBONE_CHOICES),
    Param("pretrained", bool, "ImageNet weights from the local torch cache (torchvision nets)"),
    Param("image_size", int, "training and test crop in pixels", low=16, high=512),
    Param("embedding_dim", int, "size of the L2-normalised embedding", low=8, high=2048),
    Param("epochs_first", int, "epochs on the old classes (first stage)", low=1, high=5000),
    Param("epochs_incremental", int, "epochs of every incremental stage", low=1, high=5000),
    Param("batches_per_epoch", int, "0: ceil(#classes / classes_per_batch), as in the "
          "reference code", low=0, high=100000),
    Param("lr", float, "Adam learning rate of the embedding head", low=1e-8, high=1.0),
    Param("backbone_lr_scale", float, "backbone learning rate = lr × this", low=0.0, high=1.0),
    Param("margin", float, "margin of the metric loss", low=0.0, high=2.0),
    Param("classes_per_batch", int, "P of the class-balanced P×K sampler", low=2, high=512),
    Param("samples_per_class", int, "K of the class-balanced P×K sampler", low=2, high=64),
    Param("experiments", str, "main: the one-step tables only; all: every table and figure",
          choices=("all", "main")),
    Param("experiment_datasets", str, "datasets of the experiments after the one-step tables "
          "(Tables 5.4-5.5, 5.9-5.10; Figs. 6.7-6.8): the first of dataset, or all",
          choices=("first", "all")),
)
_INCREMENTAL_PROFILES = {
    "smoke": dict(seed=0, device="cpu", data_root=None, synthetic=True, dataset="both",
                  backbone="smallcnn", pretrained=False, image_size=32, embedding_dim=32,
                  epochs_first=2, epochs_incremental=1, batches_per_epoch=3, lr=1e-3,
                  backbone_lr_scale=1.0, margin=0.1, classes_per_batch=4, samples_per_class=3,
                  experiments="all", experiment_datasets="all"),
    "demo": dict(seed=0, device="cpu", data_root=None, synthetic=True, dataset="both",
                 backbone="smallcnn", pretrained=False, image_size=48, embedding_dim=128,
                 epochs_first=20, epochs_incremental=5, batches_per_epoch=15, lr=1e-3,
                 backbone_lr_scale=1.0, margin=0.1, classes_per_batch=8, samples_per_class=4,
                 experiments="all", experiment_datasets="first"),
    "full": dict(seed=0, device="auto", data_root=None, synthetic=False, dataset="both",
                 backbone="googlenet", pretrained=True, image_size=224, embedding_dim=512,
                 epochs_first=1500, epochs_incremental=800, batches_per_epoch=0, lr=1e-5,
                 backbone_lr_scale=0.1, margin=0.1, classes_per_batch=16, samples_per_class=5,
                 experiments="all", experiment_datasets="all"),
}

CH05 = Chapter(
    key="ch05",
    title="Incremental learning for fine-grained image retrieval",
    notebook="notebooks/ch05_incremental_fgir.ipynb",
    preflight="irbook.incremental.chapter5:preflight",
    spec=ParamSpec(
        params=(
            *_INCREMENTAL,
            Param("alpha", float, "weight of the distillation term (Eq. 5.6)", low=0.0,
                  high=100.0),
            Param("beta", float, "weight of the MMD term (Eq. 5.6)", low=0.0, high=100.0),
        ),
        profiles={name: {**values, "alpha": 1.0, "beta": 1.0}
                  for name, values in _INCREMENTAL_PROFILES.items()},
    ),
)

CH06 = Chapter(
    key="ch06",
    title="Correlation distillation with feature estimation",
    notebook="notebooks/ch06_correlation_distillation.ipynb",
    preflight="irbook.incremental.experiments:preflight",
    spec=ParamSpec(
        params=(
            *_INCREMENTAL,
            Param("n_tasks", int, "tasks of the multi-step run (the thesis: 4; see n_tasks_long)",
                  low=2, high=50),
            Param("corr_weight", float, "weight of the correlation distillation (Eq. 6.3)",
                  low=0.0, high=1000.0),
            Param("n_tasks_long", int, "tasks of the long run of Fig. 6.10 (the thesis uses "
                  "10); 0 skips it", low=0, high=100),
        ),
        profiles={name: {**values, "n_tasks": 4,
                         "corr_weight": 100.0 if name == "demo" else 10.0,
                         "n_tasks_long": 4 if name == "smoke" else 10}
                  for name, values in _INCREMENTAL_PROFILES.items()},
    ),
)

CHAPTERS: dict[str, Chapter] = {c.key: c for c in (CH02, CH05, CH06)}


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
