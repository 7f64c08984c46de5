"""Synthetic image-text sets: written in the official layouts and read back by the real
loaders, deterministic per item, with labels, tags and captions that agree with the drawn
scenes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from irbook.data.crossmodal import (
    load_image_array,
    load_karpathy,
    load_mirflickr,
    load_nuswide,
    load_pedes,
)
from irbook.data.synth import CROSSMODAL_KINDS, CROSSMODAL_SCALES, ensure_crossmodal
from irbook.data.synth.crossmodal import (
    CAPTION_CATEGORIES,
    COLOUR_WORDS,
    GLYPHS,
    TAG_WORDS,
    _glyph_mask,
    tag_vocabulary,
    write_karpathy,
    write_mirflickr,
    write_nuswide,
    write_pedes,
)
from irbook.data.text import tokenize

GLYPHS_BY_INDEX = list(CAPTION_CATEGORIES)  # caption-set category k is drawn as this glyph


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _meta(folder: Path) -> dict:
    return json.loads((folder / "synth_meta.json").read_text())


def _has(tokens: tuple[str, ...], phrase: str) -> bool:
    words = tokenize(phrase)
    return any(list(tokens[i:i + len(words)]) == words for i in range(len(tokens)))


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    """All six kinds at the smoke scale, written once for this module (timed)."""
    root = tmp_path_factory.mktemp("crossmodal")
    start = time.perf_counter()
    ensure_crossmodal(root, CROSSMODAL_KINDS, scale="smoke", seed=0)
    return root, time.perf_counter() - start


def test_smoke_set_is_fast_cached_and_read_by_the_loaders(smoke_root):
    root, seconds = smoke_root
    assert seconds < 10.0  # about 1.5 s alone; slack for a loaded machine
    marker = root / ".irbook_synth_crossmodal_coco.json"
    stamp = marker.stat().st_mtime_ns
    ensure_crossmodal(root, ["coco"], scale="smoke", seed=0)  # cached: nothing rewritten
    assert marker.stat().st_mtime_ns == stamp
    sizes = CROSSMODAL_SCALES["smoke"]
    mir = load_mirflickr(root, n_query=sizes["mirflickr"]["n_query"],
                         n_train=sizes["mirflickr"]["n_train"])
    assert mir.images.shape == (300, 32, 32, 3) and mir.tags.shape == (300, 1386)
    assert mir.labels.shape == (300, 24) and (mir.labels.sum(1) >= 1).all()
    nus = load_nuswide(root, n_query=sizes["nuswide"]["n_query"],
                       n_train=sizes["nuswide"]["n_train"])
    assert nus.images.shape == (300, 32, 32, 3) and nus.tags.shape == (300, 1000)
    assert nus.labels.shape == (300, 21)
    for name, (train, val, test) in {"flickr8k": (60, 10, 20), "flickr30k": (60, 10, 20),
                                     "coco": (60, 10, 50)}.items():
        data = load_karpathy(root, name)
        counts = [int((data.splits == s).sum()) for s in ("train", "val", "test")]
        assert counts == [train, val, test]
        assert data.n_captions == 5 * data.n_images
    coco = json.loads((root / "COCO" / "dataset_coco.json").read_text())["images"]
    assert sum(e["split"] == "restval" for e in coco) == sizes["coco"]["restval"]
    assert {e["filepath"] for e in coco if e["split"] == "restval"} == {"val2014"}
    pedes = load_pedes(root)
    assert pedes.labels.max() + 1 == 30 and pedes.n_captions == 2 * pedes.n_images
    assert load_image_array(pedes.image_paths[:2], 32).shape == (2, 32, 32, 3)


def test_mat_files_use_matlab_orientation(smoke_root):
    root, _ = smoke_root
    with h5py.File(root / "MIRFLICKR-25K" / "FLICKR-25K.mat", "r") as f:
        assert f["images"].shape == (300, 3, 32, 32)  # MATLAB 32 x 32 x 3 x 300
        assert f["LAll"].shape == (24, 300) and f["YAll"].shape == (1386, 300)
        assert f["images"].compression == "gzip"
    header = (root / "MIRFLICKR-25K" / "FLICKR-25K.mat").read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[126:128] == b"IM"
    data = load_mirflickr(root, n_query=50, n_train=150)
    with h5py.File(root / "MIRFLICKR-25K" / "FLICKR-25K.mat", "r") as f:
        raw = f["images"][7]  # (3, W, H) of image 7
    np.testing.assert_array_equal(data.images[7], raw.transpose(2, 1, 0))


def test_tagged_labels_agree_with_scenes_and_tags(tmp_path):
    write_mirflickr(tmp_path, seed=4, n_pairs=60, image_size=32)
    data = load_mirflickr(tmp_path, n_query=10, n_train=20)
    meta = _meta(tmp_path / "MIRFLICKR-25K")
    vocab = meta["tag_vocabulary"]
    assert len(vocab) == 1386 == len(set(vocab))
    for i, objects in enumerate(meta["objects"]):
        present = sorted({o["category"] for o in objects})
        assert np.flatnonzero(data.labels[i]).tolist() == present
        assert 1 <= len(objects) <= 4 and len({o["position"] for o in objects}) == len(objects)
    # a category's words are tagged far more often when it is present than when absent
    words = [[vocab.index(w) for w in c["words"]] for c in meta["categories"]]
    hit = np.stack([data.tags[:, idx].max(1) for idx in words], 1)
    present, absent = hit[data.labels == 1].mean(), hit[data.labels == 0].mean()
    assert present > 0.7 and absent < 0.05
    assert (data.tags.sum(1) >= 1).all() and set(np.unique(data.tags)) <= {0.0, 1.0}


def test_tagged_writers_are_deterministic_and_seeded(tmp_path):
    a, b, c = (write_nuswide(tmp_path / k, seed=s, n_pairs=12, image_size=32)
               for k, s in (("a", 1), ("b", 1), ("c", 2)))
    assert _digest(a / "NUS-WIDE") == _digest(b / "NUS-WIDE")
    da, dc = load_nuswide(a, n_query=2, n_train=4), load_nuswide(c, n_query=2, n_train=4)
    assert not np.array_equal(da.images, dc.images) and not np.array_equal(da.tags, dc.tags)
    # one generator per item: image 5 does not depend on how many pairs were written
    d = load_nuswide(write_nuswide(tmp_path / "d", seed=1, n_pairs=7, image_size=32),
                     n_query=2, n_train=4)
    np.testing.assert_array_equal(d.images[5], da.images[5])
    np.testing.assert_array_equal(d.tags[5], da.tags[5])


def test_karpathy_captions_are_distinct_varied_and_match_the_scene(tmp_path):
    write_karpathy(tmp_path, "flickr30k", seed=0, train=24, val=3, test=5, image_size=32)
    data = load_karpathy(tmp_path, "flickr30k")
    meta = _meta(tmp_path / "Flickr30K")
    assert data.n_images == 32 and data.n_captions == 160
    canonical = synonyms = partial = 0
    for i, objects in enumerate(meta["objects"]):
        caps = [data.captions[j] for j in np.flatnonzero(data.caption_image == i)]
        assert len(caps) == 5 and len(set(caps)) == 5
        for tokens in caps:
            named = [o for o in objects if any(_has(tokens, w) for w in
                                               CAPTION_CATEGORIES[GLYPHS_BY_INDEX[o["category"]]])]
            assert named, f"caption {' '.join(tokens)!r} names none of the objects of image {i}"
            partial += len(named) < len(objects)
            for o in named:
                words = CAPTION_CATEGORIES[GLYPHS_BY_INDEX[o["category"]]]
                canonical += _has(tokens, words[0])
                synonyms += any(_has(tokens, w) for w in words[1:]) and not _has(tokens, words[0])
    assert synonyms > 0.3 * (canonical + synonyms)
    assert partial > 0.1 * data.n_captions  # some captions name only some of the objects
    assert len({len(c) for c in data.captions}) >= 6


def test_karpathy_writer_deterministic_and_coco_folders(tmp_path):
    a = write_karpathy(tmp_path / "a", "coco", seed=3, train=6, val=2, test=3, image_size=32,
                       restval=2)
    b = write_karpathy(tmp_path / "b", "coco", seed=3, train=6, val=2, test=3, image_size=32,
                       restval=2)
    c = write_karpathy(tmp_path / "c", "coco", seed=4, train=6, val=2, test=3, image_size=32,
                       restval=2)
    assert _digest(a / "COCO") == _digest(b / "COCO") != _digest(c / "COCO")
    data = load_karpathy(a, "coco")
    assert {p.parent.name for p in data.image_paths} == {"train2014", "val2014"}
    assert (data.splits == "train").sum() == 6
    with pytest.raises(ValueError, match="restval"):
        write_karpathy(tmp_path / "d", "coco", seed=0, train=2, val=1, test=1, image_size=32,
                       restval=2)


def test_pedes_identities_images_and_captions(tmp_path):
    write_pedes(tmp_path, seed=2, train_ids=6, val_ids=2, test_ids=2, image_size=32)
    data = load_pedes(tmp_path)
    meta = _meta(tmp_path / "CUHK-PEDES")["identities"]
    counts = np.bincount(data.labels)
    assert len(counts) == 10 and counts.min() >= 2 and counts.max() <= 4
    for ident in range(10):
        assert len(set(data.splits[data.labels == ident])) == 1  # one split per identity
    assert sorted(set(data.splits[np.unique(data.labels, return_index=True)[1]])) == [
        "test", "train", "val"]
    for i in range(data.n_images):
        caps = [data.captions[j] for j in np.flatnonzero(data.caption_image == i)]
        assert len(caps) == 2 and caps[0] != caps[1]
        person = meta[int(data.labels[i])]
        for tokens in caps:  # the upper garment's colour is always named, with a synonym
            assert any(_has(tokens, w) for w in COLOUR_WORDS[person["upper_colour"]])
    again = write_pedes(tmp_path / "again", seed=2, train_ids=6, val_ids=2, test_ids=2,
                        image_size=32)
    assert _digest(again / "CUHK-PEDES") == _digest(tmp_path / "CUHK-PEDES")
    images = load_image_array(data.image_paths, 32).astype(float)
    same = [np.abs(images[a] - images[b]).mean() for a in range(len(images))
            for b in range(a) if data.labels[a] == data.labels[b]]
    assert min(same) > 0  # views of one identity differ


def test_vocabularies_and_glyphs_are_distinct():
    for kind, size in (("mirflickr", 1386), ("nuswide", 1000)):
        vocab = tag_vocabulary(kind)
        assert len(vocab) == size == len(set(vocab))
        words = [w for ws in TAG_WORDS[kind].values() for w in ws]
        assert len(words) == len(set(words)), f"{kind}: a tag word names two categories"
    masks = {np.asarray(_glyph_mask(g, 24)).tobytes() for g in GLYPHS}
    assert len(masks) == len(GLYPHS) == 24
    assert all(np.asarray(_glyph_mask(g, 24)).mean() > 20 for g in GLYPHS)


def test_ensure_crossmodal_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kinds"):
        ensure_crossmodal(tmp_path, ["flickr9k"], scale="smoke", seed=0)
    with pytest.raises(ValueError, match="scale"):
        ensure_crossmodal(tmp_path, ["coco"], scale="huge", seed=0)
    with pytest.raises(ValueError, match="seed"):
        ensure_crossmodal(tmp_path, ["coco"], scale="smoke", seed=-1)
