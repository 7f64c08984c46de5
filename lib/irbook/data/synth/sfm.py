"""Synthetic fine-tuning data (retrieval-SfM-120k layout) and distractors (revisitop1m layout).

Both are written with the renderer of :mod:`irbook.data.synth.instance` and read unchanged by
:func:`irbook.data.sfm.load_sfm120k` and :func:`irbook.data.distractors.load_distractors`.

retrieval-SfM-120k (``<root>/retrieval-SfM-120k/``): a cluster is one synthetic landmark (a
"facade" or "poster" pattern, the styles of the Oxford and Paris stand-ins) photographed under
changed viewpoints, scale, light and occlusion, as the images registered to one 3-D model are.
Its textures come from the random stream ``(seed, "retrieval-SfM-120k", "landmark", cluster)``,
which no evaluation benchmark uses, so no test landmark appears in training. The first
``n_clusters - val_clusters`` clusters form ``train``, the others ``val``. Each split's images are
shuffled (clusters interleave, as in the release), named by a 32-hex-digit ``cid`` and stored as
extension-less JPEG files in the ``cid2filename`` folders under ``ims/``. Every image is the
query of one pair whose positive is another image of its cluster; ``bbxs`` holds None for every
image.

revisitop1m (``<root>/revisitop1m/``): ``n`` images without any landmark - a non-landmark
pattern of a random style on clutter, or clutter only - listed in ``revisitop1m.txt`` as
``<hh>/<hash>.jpg`` below ``jpg/``. This scaled-down set stands in for R1M and for the thesis's
Flickr100k ("+100k").

Both writers skip the work when ``root`` already holds the same configuration (the marker files
of :func:`irbook.data.synth.store.ensure_generated`); the same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import pickle
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image

from irbook.data.distractors import DISTRACTOR_NAME, LIST_NAME
from irbook.data.sfm import SFM_NAME, SFM_SPLITS, cid2filename
from irbook.data.synth.instance import (
    DISTRACTOR_OBJECT_RATE,
    require_positive,
    texture_size,
)
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
TRAIN_STYLES = ("facade", "poster")
DISTRACTOR_STYLES = ("facade", "poster", "scene", "product")
HARD_VIEW_RATE = 0.4  # share of a cluster's views (after the first) rendered as "hard"

SFM_SCALES: dict[str, dict[str, int]] = {
    "smoke": {"n_clusters": 40, "images_per_cluster": 6, "image_size": 96, "val_clusters": 8},
    "demo": {"n_clusters": 120, "images_per_cluster": 8, "image_size": 160, "val_clusters": 20},
}
DISTRACTOR_SCALES: dict[str, dict[str, int]] = {
    "smoke": {"n": 100, "image_size": 96},
    "demo": {"n": 600, "image_size": 160},
}


def _hex_name(*keys: object) -> str:
    return hashlib.md5("/".join(str(k) for k in keys).encode()).hexdigest()


def cluster_texture(seed: int, cluster: int, image_size: int) -> Image.Image:
    """RGBA texture of training cluster ``cluster`` (its own random stream, see module doc)."""
    rng = make_rng(seed, SFM_NAME, "landmark", cluster)
    style = TRAIN_STYLES[int(rng.integers(len(TRAIN_STYLES)))]
    return draw_pattern(sample_spec(rng, style), rng, texture_size(image_size))


def _meta(cluster: int | None, info: ViewInfo) -> dict:
    return {"cluster": cluster, "kind": info.kind, "visible": round(info.visible, 4),
            "scale": round(info.scale, 4)}


def _write_split(
    folder: Path, seed: int, split: str, clusters: range, images_per_cluster: int,
    image_size: int,
) -> tuple[dict, dict]:
    """Render and save one split; return its pickle entry and its per-image metadata."""
    rendered = []  # (cid, cluster, image, info)
    for c in clusters:
        texture = cluster_texture(seed, c, image_size)
        kind_rng = make_rng(seed, SFM_NAME, "kinds", c)
        for v in range(images_per_cluster):
            kind: ViewKind = "hard" if v and kind_rng.random() < HARD_VIEW_RATE else "easy"
            img, info = render_labelled_view(make_rng(seed, SFM_NAME, "view", c, v), texture,
                                             kind, image_size)
            rendered.append((_hex_name("sfm", seed, split, c, v), c, img, info))
    order = make_rng(seed, SFM_NAME, "order", split).permutation(len(rendered))
    rendered = [rendered[i] for i in order]
    ims_root = folder / "ims"
    for cid, _, img, _ in rendered:
        save_jpeg(img, cid2filename(cid, ims_root))
    cluster_of = np.array([c for _, c, _, _ in rendered], dtype=np.int64)
    pair_rng = make_rng(seed, SFM_NAME, "pairs", split)
    pidxs = []
    for q in range(len(rendered)):
        others = np.flatnonzero((cluster_of == cluster_of[q]) & (np.arange(len(rendered)) != q))
        pidxs.append(int(pair_rng.choice(others)))
    db = {"cids": [cid for cid, _, _, _ in rendered], "cluster": cluster_of.tolist(),
          "qidxs": list(range(len(rendered))), "pidxs": pidxs, "bbxs": [None] * len(rendered)}
    meta = {cid: _meta(c, info) for cid, c, _, info in rendered}
    return db, meta


def write_sfm120k(
    root: str | PathLike[str], *, seed: int, n_clusters: int = 40, images_per_cluster: int = 6,
    image_size: int = 96, val_clusters: int = 8,
) -> Path:
    """Write a synthetic ``<root>/retrieval-SfM-120k/`` (layout of :mod:`irbook.data.sfm`)
    unless it is already there; returns ``root`` (pass it to ``load_sfm120k``).

    ``n_clusters`` landmarks in all, the last ``val_clusters`` of them in ``val``, with
    ``images_per_cluster`` views of ``image_size`` pixels each.
    """
    require_positive(n_clusters=n_clusters, val_clusters=val_clusters, image_size=image_size)
    if isinstance(images_per_cluster, bool) or not isinstance(images_per_cluster, int) \
            or images_per_cluster < 2:
        raise ValueError(f"images_per_cluster must be an integer >= 2 (a query needs a "
                         f"positive), got {images_per_cluster!r}")
    if n_clusters - val_clusters < 2:
        raise ValueError(f"n_clusters - val_clusters must leave at least 2 training clusters, "
                         f"got n_clusters={n_clusters}, val_clusters={val_clusters}")
    make_rng(seed)  # validates the seed
    n_train = n_clusters - val_clusters
    splits = dict(zip(SFM_SPLITS, (range(n_train), range(n_train, n_clusters)), strict=True))
    config = {"kind": "sfm120k", "version": GENERATOR_VERSION, "seed": seed,
              "n_clusters": n_clusters, "images_per_cluster": images_per_cluster,
              "image_size": image_size, "val_clusters": val_clusters}

    def write(staging: Path) -> None:
        folder = staging / SFM_NAME
        db, meta = {}, {}
        for split, clusters in splits.items():
            db[split], split_meta = _write_split(folder, seed, split, clusters,
                                                 images_per_cluster, image_size)
            meta.update(split_meta)
        with open(folder / f"{SFM_NAME}.pkl", "wb") as f:
            pickle.dump(db, f, protocol=4)
        write_json({"seed": seed, "generator_version": GENERATOR_VERSION,
                    "landmark_stream": [SFM_NAME, "landmark"], "images": meta},
                   folder / "synth_meta.json")

    return ensure_generated(Path(root), "sfm120k", config, (SFM_NAME,), write)


def distractor_texture(seed: int, index: int, image_size: int) -> Image.Image:
    """RGBA pattern that distractor ``index`` shows when it shows one (its own stream)."""
    rng = make_rng(seed, DISTRACTOR_NAME, "object", index)
    style = DISTRACTOR_STYLES[int(rng.integers(len(DISTRACTOR_STYLES)))]
    return draw_pattern(sample_spec(rng, style), rng, texture_size(image_size))


def distractor_image(seed: int, index: int, image_size: int) -> tuple[Image.Image, ViewInfo]:
    """Distractor ``index``: :func:`distractor_texture` on clutter (share
    :data:`~irbook.data.synth.instance.DISTRACTOR_OBJECT_RATE`) or clutter only."""
    rng = make_rng(seed, DISTRACTOR_NAME, "image", index)
    if rng.random() < DISTRACTOR_OBJECT_RATE:
        texture = distractor_texture(seed, index, image_size)
        kind: ViewKind = "easy" if rng.random() < 0.6 else "hard"
        img, info = render_labelled_view(rng, texture, kind, image_size)
        return img, ViewInfo("distractor", info.visible, info.scale, info.box)
    img, _ = render_view(rng, None, "easy", image_size)
    return img, ViewInfo("clutter", 0.0, 0.0, None)


def write_distractors(
    root: str | PathLike[str], *, seed: int, n: int = 100, image_size: int = 96
) -> Path:
    """Write ``n`` synthetic distractors as ``<root>/revisitop1m/`` (layout of
    :mod:`irbook.data.distractors`) unless already there; returns ``root``."""
    require_positive(n=n, image_size=image_size)
    make_rng(seed)  # validates the seed
    config = {"kind": "revisitop1m", "version": GENERATOR_VERSION, "seed": seed, "n": n,
              "image_size": image_size}

    def write(staging: Path) -> None:
        folder = staging / DISTRACTOR_NAME
        entries, meta = [], {}
        for i in range(n):
            name = _hex_name("revisitop1m", seed, i)
            entry = f"{name[:2]}/{name}.jpg"
            img, info = distractor_image(seed, i, image_size)
            save_jpeg(img, folder / "jpg" / entry)
            entries.append(entry)
            meta[entry] = _meta(None, info)
        (folder / LIST_NAME).write_text("".join(f"{e}\n" for e in entries))
        write_json({"seed": seed, "generator_version": GENERATOR_VERSION, "images": meta},
                   folder / "synth_meta.json")

    return ensure_generated(Path(root), "revisitop1m", config, (DISTRACTOR_NAME,), write)
