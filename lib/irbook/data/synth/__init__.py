"""Deterministic synthetic datasets written in the official on-disk layouts, so that the real
loaders of :mod:`irbook.data` read them unchanged."""

from irbook.data.synth.classification import (
    CLASSIFICATION_SCALES,
    ensure_classification,
    write_classification,
)
from irbook.data.synth.crossmodal import (
    CROSSMODAL_KINDS,
    CROSSMODAL_SCALES,
    ensure_crossmodal,
    write_karpathy,
    write_mirflickr,
    write_nuswide,
    write_pedes,
)
from irbook.data.synth.finegrained import SCALES as FINEGRAINED_SCALES
from irbook.data.synth.finegrained import (
    ensure_finegrained,
    write_cifar100,
    write_cub200,
    write_stanford_dogs,
)
from irbook.data.synth.instance import (
    SCALES,
    ensure_instance_suite,
    ensure_oxford_original,
    write_holidays,
    write_oxford_original,
    write_revisited,
    write_ukbench,
)
from irbook.data.synth.sfm import (
    DISTRACTOR_SCALES,
    SFM_SCALES,
    write_distractors,
    write_sfm120k,
)
from irbook.data.synth.vectors import (
    clustered_queries,
    clustered_vectors,
    gaussian_vectors,
    relevance_by_cluster,
)

__all__ = [
    "CLASSIFICATION_SCALES",
    "CROSSMODAL_KINDS",
    "CROSSMODAL_SCALES",
    "FINEGRAINED_SCALES",
    "SCALES",
    "ensure_classification",
    "ensure_crossmodal",
    "ensure_finegrained",
    "ensure_instance_suite",
    "ensure_oxford_original",
    "write_cifar100",
    "write_classification",
    "write_cub200",
    "write_holidays",
    "write_karpathy",
    "write_mirflickr",
    "write_nuswide",
    "write_oxford_original",
    "write_pedes",
    "write_revisited",
    "write_stanford_dogs",
    "write_ukbench",
    "DISTRACTOR_SCALES",
    "SFM_SCALES",
    "write_distractors",
    "write_sfm120k",
    "clustered_queries",
    "clustered_vectors",
    "gaussian_vectors",
    "relevance_by_cluster",
]
