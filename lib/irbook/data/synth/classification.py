"""Synthetic object classes in an ImageFolder layout: the book's stand-in for ImageNet
pre-training.

A class is a pattern specification of the ``toy`` style (palette, outline, layout, motifs);
each sample redraws the pattern with new motif positions and jittered colours and photographs
it under the view changes of :mod:`irbook.data.synth.patterns`. The class streams are separate
from the retrieval objects' streams, so no retrieval object is seen in pre-training.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from irbook.data.synth.instance import require_positive, texture_size
from irbook.data.synth.patterns import (
    PatternSpec,
    ViewKind,
    draw_pattern,
    make_rng,
    render_labelled_view,
    sample_spec,
)
from irbook.data.synth.store import ensure_generated, save_png

GENERATOR_VERSION = 1
PALETTE_JITTER = 18.0  # std of the per-sample RGB offset of the class palette
STREAM = "classification"

CLASSIFICATION_SCALES: dict[str, dict[str, int]] = {
    "smoke": {"n_classes": 8, "per_class": 10, "val_per_class": 4, "image_size": 64},
    "demo": {"n_classes": 30, "per_class": 40, "val_per_class": 10, "image_size": 96},
}


def class_name(index: int) -> str:
    return f"class_{index:03d}"


def class_spec(seed: int, index: int) -> PatternSpec:
    """The fixed pattern specification of class ``index``."""
    return sample_spec(make_rng(seed, STREAM, "class", index), "toy")


def write_classification(
    root: str | PathLike[str], *, seed: int, n_classes: int, per_class: int, image_size: int,
    val_per_class: int | None = None,
) -> Path:
    """Write ``<root>/train/<class>/<i>.png`` and ``<root>/val/<class>/<i>.png``.

    ``val_per_class`` defaults to ``max(2, per_class // 4)``. Returns ``root``.
    """
    val = max(2, per_class // 4) if val_per_class is None else val_per_class
    require_positive(n_classes=n_classes, per_class=per_class, image_size=image_size,
                     val_per_class=val)
    root = Path(root)
    for c in range(n_classes):
        spec = class_spec(seed, c)
        for split, count in (("train", per_class), ("val", val)):
            for i in range(count):
                rng = make_rng(seed, STREAM, split, c, i)
                texture = draw_pattern(spec, rng, texture_size(image_size), PALETTE_JITTER)
                kind: ViewKind = "easy" if rng.random() < 0.6 else "hard"
                img, _ = render_labelled_view(rng, texture, kind, image_size)
                save_png(img, root / split / class_name(c) / f"{i:04d}.png")
    return root


def ensure_classification(
    root: str | PathLike[str], *, seed: int, scale: str, image_size: int | None = None
) -> Path:
    """Write the classification set with preset ``scale`` (a key of
    :data:`CLASSIFICATION_SCALES`) under ``root`` unless it is already there for the same
    configuration. Returns ``root``; train on ``root/train``, validate on ``root/val``."""
    if scale not in CLASSIFICATION_SCALES:
        raise ValueError(f"scale must be one of {sorted(CLASSIFICATION_SCALES)}, got {scale!r}")
    preset = dict(CLASSIFICATION_SCALES[scale])
    if image_size is not None:
        preset["image_size"] = image_size
    make_rng(seed)  # validates the seed
    config = {"kind": "classification", "version": GENERATOR_VERSION, "seed": seed,
              "scale": scale, **preset}

    return ensure_generated(
        Path(root), "classification", config, ("train", "val"),
        lambda folder: write_classification(folder, seed=seed, **preset),
    )
