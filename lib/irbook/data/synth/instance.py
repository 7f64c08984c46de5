"""Synthetic instance-retrieval benchmarks written in the official on-disk layouts.

Each "landmark" is one procedural planar pattern (:mod:`irbook.data.synth.patterns`); its
database views are labelled easy / hard / junk from what they show, and each query is a fresh
view with the object's box. Distractors show other patterns of the same style, or clutter only.
:mod:`irbook.data.instance` reads the result unchanged.

Choices that follow the real data:

- Revisited (``roxford5k``/``rparis6k``): query images live in ``jpg/`` and ``qimlist`` but are
  not database images (rOxford5k's 4,993 = Oxford5k's 5,063 minus its 70 queries), so a query
  never retrieves itself. All queries of a landmark share its easy/hard/junk lists.
- Original (``oxford5k``/``paris6k``): the query images are database images and, being photos
  of their landmark, are listed in the ``good`` file of every query of that landmark; ``good``
  holds the easy views, ``ok`` the hard ones, ``junk`` the junk ones. Oxford's query files
  prefix the image name with ``oxc1_``, Paris's do not; Paris images sit in one folder per
  landmark (``jpg/<landmark>/``), distractors in ``jpg/general/``.
- Holidays: group ``g`` is ``(1000 + g) * 100 + k`` (``k = 0`` is the query); UKBench: 4 views
  per object, ``ukbench{4g + k:05d}.jpg``.

Each dataset folder also gets ``synth_meta.json`` (per image: landmark, kind, visible fraction,
size), which no loader needs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image

from irbook.constants import INSTANCE_BENCHMARKS, REVISITED_BENCHMARKS
from irbook.data.synth.patterns import (
    ViewInfo,
    ViewKind,
    draw_pattern,
    make_rng,
    render_labelled_view,
    render_view,
    sample_spec,
)
from irbook.data.synth.store import ensure_generated, save_jpeg, write_json

GENERATOR_VERSION = 1
DATASET_STYLE = {
    "roxford5k": "facade",
    "oxford5k": "facade",
    "rparis6k": "poster",
    "paris6k": "poster",
    "holidays": "scene",
    "ukbench": "product",
}
SUITE_PARTS = INSTANCE_BENCHMARKS
DISTRACTOR_OBJECT_RATE = 0.7  # share of distractors that show a (non-landmark) pattern

SCALES: dict[str, dict] = {
    "smoke": {
        "image_size": 96,
        "roxford5k": {"n_landmarks": 4, "queries_per_landmark": 2, "easy": 3, "hard": 2,
                      "junk": 1, "n_distractors": 20},
        "rparis6k": {"n_landmarks": 4, "queries_per_landmark": 2, "easy": 3, "hard": 2,
                     "junk": 1, "n_distractors": 20},
        "holidays": {"n_groups": 8, "group_size": (2, 4)},
        "ukbench": {"n_groups": 10},
    },
    "demo": {
        "image_size": 160,
        "roxford5k": {"n_landmarks": 11, "queries_per_landmark": 3, "easy": 6, "hard": 5,
                      "junk": 3, "n_distractors": 150},
        "rparis6k": {"n_landmarks": 10, "queries_per_landmark": 4, "easy": 6, "hard": 5,
                     "junk": 3, "n_distractors": 150},
        "holidays": {"n_groups": 40, "group_size": (2, 5)},
        "ukbench": {"n_groups": 60},
    },
}


def require_positive(**values: int) -> None:
    """Raise ValueError naming the first value that is not a positive integer."""
    for key, value in values.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _non_negative(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")


def texture_size(image_size: int) -> int:
    """Resolution of a pattern texture for views of ``image_size`` pixels."""
    return max(96, round(1.25 * image_size))


def _object_texture(seed: int, dataset: str, role: str, index: int, image_size: int) -> Image.Image:
    rng = make_rng(seed, dataset, role, index)
    return draw_pattern(sample_spec(rng, DATASET_STYLE[dataset]), rng, texture_size(image_size))


def _meta(landmark: int | None, info: ViewInfo) -> dict:
    return {"landmark": landmark, "kind": info.kind, "visible": round(info.visible, 4),
            "scale": round(info.scale, 4)}


@dataclass
class _Rendered:
    """One landmark set: images saved under their names, with labels."""

    queries: list[tuple[int, str, tuple[float, float, float, float]]]  # landmark, name, box
    views: dict[int, dict[str, list[str]]]  # landmark -> kind -> names
    distractors: list[str]
    meta: dict[str, dict]


def _render_landmark_set(
    seed: int, dataset: str, n_landmarks: int, queries_per_landmark: int,
    counts: dict[str, int], n_distractors: int, image_size: int, save,
    view_name, query_name, distractor_name,
) -> _Rendered:
    """Render queries, labelled views and distractors; ``save(name, img, landmark)`` writes."""
    out = _Rendered([], {}, [], {})
    for lm in range(n_landmarks):
        texture = _object_texture(seed, dataset, "landmark", lm, image_size)
        for q in range(queries_per_landmark):
            img, info = render_labelled_view(make_rng(seed, dataset, "query", lm, q), texture,
                                             "query", image_size)
            name = query_name(lm, q)
            save(name, img, lm)
            out.queries.append((lm, name, info.box))
            out.meta[name] = _meta(lm, info)
        kinds: list[ViewKind] = [k for k in ("easy", "hard", "junk") for _ in range(counts[k])]
        order = make_rng(seed, dataset, "order", lm).permutation(len(kinds))
        out.views[lm] = {"easy": [], "hard": [], "junk": []}
        for k, pos in enumerate(order):
            kind = kinds[pos]
            img, info = render_labelled_view(make_rng(seed, dataset, "view", lm, k), texture,
                                             kind, image_size)
            name = view_name(lm, k)
            save(name, img, lm)
            out.views[lm][kind].append(name)
            out.meta[name] = _meta(lm, info)
    for d in range(n_distractors):
        img, info = _distractor(seed, dataset, d, image_size)
        name = distractor_name(d)
        save(name, img, None)
        out.distractors.append(name)
        out.meta[name] = _meta(None, info)
    return out


def _distractor(
    seed: int, dataset: str, index: int, image_size: int
) -> tuple[Image.Image, ViewInfo]:
    rng = make_rng(seed, dataset, "distractor", index)
    if rng.random() < DISTRACTOR_OBJECT_RATE:
        texture = _object_texture(seed, dataset, "distractor-object", index, image_size)
        kind: ViewKind = "easy" if rng.random() < 0.6 else "hard"
        img, info = render_labelled_view(rng, texture, kind, image_size)
        return img, ViewInfo("distractor", info.visible, info.scale, info.box)
    img, info = render_view(rng, None, "easy", image_size)
    return img, ViewInfo("clutter", 0.0, 0.0, None)


def write_revisited(
    root: str | PathLike[str], name: str, *, seed: int, n_landmarks: int,
    queries_per_landmark: int, easy: int, hard: int, junk: int, n_distractors: int,
    image_size: int,
) -> Path:
    """Write ``<root>/<name>/jpg/*.jpg`` and ``gnd_<name>.pkl`` like the revisitop release.

    ``easy``, ``hard`` and ``junk`` are numbers of database views per landmark. Returns the
    dataset folder.
    """
    if name not in REVISITED_BENCHMARKS:
        raise ValueError(f"name must be 'roxford5k' or 'rparis6k', got {name!r}")
    require_positive(n_landmarks=n_landmarks, queries_per_landmark=queries_per_landmark,
                     image_size=image_size)
    _non_negative(easy=easy, hard=hard, junk=junk, n_distractors=n_distractors)
    folder = Path(root) / name

    def save(image_name: str, img: Image.Image, _landmark: int | None) -> None:
        save_jpeg(img, folder / "jpg" / f"{image_name}.jpg")

    rendered = _render_landmark_set(
        seed, name, n_landmarks, queries_per_landmark,
        {"easy": easy, "hard": hard, "junk": junk}, n_distractors, image_size, save,
        view_name=lambda lm, k: f"{name}_lm{lm:02d}_{k:03d}",
        query_name=lambda lm, q: f"{name}_lm{lm:02d}_query{q}",
        distractor_name=lambda d: f"{name}_other_{d:04d}",
    )
    imlist = sorted([n for views in rendered.views.values() for v in views.values() for n in v]
                    + rendered.distractors)
    position = {n: i for i, n in enumerate(imlist)}

    def indices(names: list[str]) -> np.ndarray:
        return np.array(sorted(position[n] for n in names), dtype=np.int64)

    gnd = [
        {"bbx": np.array(box, dtype=np.float64),
         **{kind: indices(rendered.views[lm][kind]) for kind in ("easy", "hard", "junk")}}
        for lm, _, box in rendered.queries
    ]
    cfg = {"imlist": imlist, "qimlist": [n for _, n, _ in rendered.queries], "gnd": gnd}
    with open(folder / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump(cfg, f, protocol=4)
    write_json({"seed": seed, "generator_version": GENERATOR_VERSION, "images": rendered.meta},
               folder / "synth_meta.json")
    return folder


def write_oxford_original(
    root: str | PathLike[str], name: str, *, seed: int, n_landmarks: int,
    queries_per_landmark: int, good: int, ok: int, junk: int, n_distractors: int,
    image_size: int,
) -> Path:
    """Write ``<root>/<name>/jpg/`` and ``gt_files/<landmark>_<q>_{query,good,ok,junk}.txt``
    like the Oxford VGG release (``name`` = ``oxford5k`` or ``paris6k``)."""
    if name not in ("oxford5k", "paris6k"):
        raise ValueError(f"name must be 'oxford5k' or 'paris6k', got {name!r}")
    require_positive(n_landmarks=n_landmarks, queries_per_landmark=queries_per_landmark,
                     image_size=image_size)
    _non_negative(good=good, ok=ok, junk=junk, n_distractors=n_distractors)
    folder = Path(root) / name
    paris = name == "paris6k"
    prefix = "paris_" if paris else ""

    def save(image_name: str, img: Image.Image, landmark: int | None) -> None:
        sub = ("general" if landmark is None else f"lm{landmark:02d}") if paris else ""
        save_jpeg(img, folder / "jpg" / sub / f"{image_name}.jpg")

    # queries are database images: number them after the views of their landmark
    total = good + ok + junk
    rendered = _render_landmark_set(
        seed, name, n_landmarks, queries_per_landmark, {"easy": good, "hard": ok, "junk": junk},
        n_distractors, image_size, save,
        view_name=lambda lm, k: f"{prefix}lm{lm:02d}_{k:06d}",
        query_name=lambda lm, q: f"{prefix}lm{lm:02d}_{total + q:06d}",
        distractor_name=lambda d: f"{'paris_general' if paris else 'oxford'}_{d:06d}",
    )
    gt_dir = folder / "gt_files"
    gt_dir.mkdir(parents=True, exist_ok=True)
    per_landmark: dict[int, int] = {}
    for lm, qname, box in rendered.queries:
        q = per_landmark[lm] = per_landmark.get(lm, 0) + 1
        stem = gt_dir / f"lm{lm:02d}_{q}"
        shown = qname if paris else f"oxc1_{qname}"
        coords = " ".join(f"{v:.1f}" for v in box)
        Path(f"{stem}_query.txt").write_text(f"{shown} {coords}\n")
        own_queries = [n for m, n, _ in rendered.queries if m == lm]
        lists = {"good": rendered.views[lm]["easy"] + own_queries,
                 "ok": rendered.views[lm]["hard"], "junk": rendered.views[lm]["junk"]}
        for kind, names in lists.items():
            Path(f"{stem}_{kind}.txt").write_text("".join(f"{n}\n" for n in sorted(names)))
    write_json({"seed": seed, "generator_version": GENERATOR_VERSION, "images": rendered.meta},
               folder / "synth_meta.json")
    return folder


def write_holidays(
    root: str | PathLike[str], *, seed: int, n_groups: int,
    group_size: tuple[int, int] = (2, 4), image_size: int,
) -> Path:
    """Write ``<root>/holidays/jpg/NNNNNN.jpg``: ``n_groups`` scenes with ``group_size``
    (inclusive range) photos each; the first (``NNNN00``) is the query."""
    require_positive(n_groups=n_groups, image_size=image_size)
    lo, hi = group_size
    if not (2 <= lo <= hi <= 100):
        raise ValueError(f"group_size must be (lo, hi) with 2 <= lo <= hi <= 100, got {group_size}")
    folder = Path(root) / "holidays"
    meta = {}
    for g in range(n_groups):
        rng = make_rng(seed, "holidays", "group", g)
        n = int(rng.integers(lo, hi + 1))
        texture = _object_texture(seed, "holidays", "scene", g, image_size)
        for k in range(n):
            kind: ViewKind = "easy" if k == 0 or rng.random() < 0.6 else "hard"
            img, info = render_labelled_view(make_rng(seed, "holidays", "view", g, k), texture,
                                             kind, image_size)
            name = f"{(1000 + g) * 100 + k:06d}"
            save_jpeg(img, folder / "jpg" / f"{name}.jpg")
            meta[name] = _meta(g, info)
    write_json({"seed": seed, "generator_version": GENERATOR_VERSION, "images": meta},
               folder / "synth_meta.json")
    return folder


def write_ukbench(root: str | PathLike[str], *, seed: int, n_groups: int, image_size: int) -> Path:
    """Write ``<root>/ukbench/full/ukbenchNNNNN.jpg``: 4 views of each of ``n_groups`` objects."""
    require_positive(n_groups=n_groups, image_size=image_size)
    folder = Path(root) / "ukbench"
    meta = {}
    for g in range(n_groups):
        rng = make_rng(seed, "ukbench", "group", g)
        texture = _object_texture(seed, "ukbench", "object", g, image_size)
        for k in range(4):
            kind: ViewKind = "easy" if rng.random() < 0.65 else "hard"
            img, info = render_labelled_view(make_rng(seed, "ukbench", "view", g, k), texture,
                                             kind, image_size)
            name = f"ukbench{4 * g + k:05d}"
            save_jpeg(img, folder / "full" / f"{name}.jpg")
            meta[name] = _meta(g, info)
    write_json({"seed": seed, "generator_version": GENERATOR_VERSION, "images": meta},
               folder / "synth_meta.json")
    return folder


def ensure_instance_suite(
    root: str | PathLike[str], *, seed: int, scale: str, image_size: int | None = None
) -> Path:
    """Write roxford5k, rparis6k, holidays and ukbench under ``root`` with preset ``scale``
    (a key of :data:`SCALES`) unless they are already there for the same configuration.

    ``image_size`` overrides the preset's. Returns ``root`` (pass it to the loaders).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    preset = SCALES[scale]
    size = preset["image_size"] if image_size is None else image_size
    require_positive(image_size=size)
    make_rng(seed)  # validates the seed
    config = {"kind": "instance_suite", "version": GENERATOR_VERSION, "seed": seed,
              "scale": scale, "image_size": size, "preset": preset}

    def write(folder: Path) -> None:
        for name in ("roxford5k", "rparis6k"):
            write_revisited(folder, name, seed=seed, image_size=size, **preset[name])
        write_holidays(folder, seed=seed, image_size=size, **preset["holidays"])
        write_ukbench(folder, seed=seed, image_size=size, **preset["ukbench"])

    return ensure_generated(Path(root), "instance_suite", config, SUITE_PARTS, write)


def ensure_oxford_original(root: str | PathLike[str], *, seed: int, scale: str,
                           image_size: int | None = None) -> Path:
    """Write oxford5k and paris6k in the original (2007) layout under ``root`` with the
    landmark counts of the revisited presets of ``scale`` (their easy images become "good",
    their hard ones "ok"), unless already there. Returns ``root``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    preset = SCALES[scale]
    size = preset["image_size"] if image_size is None else image_size
    require_positive(image_size=size)
    make_rng(seed)
    config = {"kind": "oxford_original", "version": GENERATOR_VERSION, "seed": seed,
              "scale": scale, "image_size": size, "preset": preset}

    def write(folder: Path) -> None:
        for name, revisited in (("oxford5k", "roxford5k"), ("paris6k", "rparis6k")):
            counts = dict(preset[revisited])
            counts["good"], counts["ok"] = counts.pop("easy"), counts.pop("hard")
            write_oxford_original(folder, name, seed=seed, image_size=size, **counts)

    return ensure_generated(Path(root), "oxford_original", config, ("oxford5k", "paris6k"),
                            write)
