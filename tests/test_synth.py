"""Synthetic datasets: written in the official layouts, read back by the real loaders,
deterministic, labelled consistently; plus the image Datasets."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irbook.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    ImageListDataset,
    load_image,
)
from irbook.data.instance import (
    load_holidays,
    load_instance_benchmark,
    load_oxford_original,
    load_revisited,
    load_ukbench,
)
from irbook.data.synth import (
    ensure_classification,
    ensure_instance_suite,
    write_holidays,
    write_oxford_original,
    write_revisited,
    write_ukbench,
)
from irbook.data.synth.patterns import label_ok, make_rng, sample_view

TINY = {"n_landmarks": 2, "queries_per_landmark": 2, "easy": 2, "hard": 2, "junk": 1,
        "n_distractors": 3, "image_size": 48}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _meta(folder: Path) -> dict:
    return json.loads((folder / "synth_meta.json").read_text())["images"]


def test_revisited_layout_counts_labels_and_boxes(tmp_path):
    folder = write_revisited(tmp_path, "roxford5k", seed=3, **TINY)
    bench = load_revisited(tmp_path, "roxford5k")
    assert bench.n_db == 2 * (2 + 2 + 1) + 3 and bench.n_queries == 4
    # queries are in jpg/ and qimlist but not database images (as in the revisitop release)
    assert not set(bench.query_paths) & set(bench.db_paths)
    assert all(p.parent == folder / "jpg" for p in bench.query_paths)
    cfg = pickle.loads((folder / "gnd_roxford5k.pkl").read_bytes())
    assert set(cfg) == {"imlist", "qimlist", "gnd"} and cfg["imlist"] == sorted(cfg["imlist"])
    meta = _meta(folder)
    for i, g in enumerate(bench.gnd):
        easy, hard, junk = (set(g[k].tolist()) for k in ("easy", "hard", "junk"))
        assert (len(easy), len(hard), len(junk)) == (2, 2, 1)
        assert not (easy & hard or easy & junk or hard & junk)
        landmark = i // 2  # queries_per_landmark = 2
        for kind, idx in (("easy", easy), ("hard", hard), ("junk", junk)):
            for j in idx:
                info = meta[bench.db_paths[j].stem]
                assert info["landmark"] == landmark and info["kind"] == kind
                assert label_ok(kind, info["visible"], info["scale"])
        x1, y1, x2, y2 = bench.query_boxes[i]
        width, height = Image.open(bench.query_paths[i]).size
        assert (width, height) == (48, 48)
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    # the two queries of a landmark share its ground truth, other landmarks' views differ
    assert bench.gnd[0]["easy"].tolist() == bench.gnd[1]["easy"].tolist()
    assert not set(bench.gnd[0]["easy"].tolist()) & set(bench.gnd[2]["easy"].tolist())


def test_view_labels_follow_visibility():
    rng = make_rng(0, "labels")
    assert sample_view(rng, "junk").scale < 1.0
    assert label_ok("easy", 0.9, 0.4) and not label_ok("easy", 0.7, 0.4)
    assert label_ok("hard", 0.5, 0.3) and not label_ok("hard", 0.3, 0.3)
    assert label_ok("junk", 0.1, 0.4) and label_ok("junk", 0.9, 0.1)
    assert not label_ok("junk", 0.5, 0.4)
    with pytest.raises(ValueError, match="kind"):
        sample_view(rng, "medium")


def test_easy_views_match_queries_better_than_hard_and_hard_better_than_others(tmp_path):
    """Colour-histogram similarity to the cropped query: easy > hard > other landmarks' views,
    and junk (barely visible) stays below easy."""
    write_revisited(tmp_path, "rparis6k", seed=1, n_landmarks=4, queries_per_landmark=2,
                    easy=4, hard=4, junk=3, n_distractors=0, image_size=64)
    bench = load_revisited(tmp_path, "rparis6k")

    def histogram(img: Image.Image) -> np.ndarray:
        a = np.asarray(img.resize((32, 32))) // 64
        h = np.bincount((a[..., 0] * 16 + a[..., 1] * 4 + a[..., 2]).ravel(), minlength=64)
        return np.sqrt(h) / np.linalg.norm(np.sqrt(h))

    db = np.stack([histogram(load_image(p)) for p in bench.db_paths])
    mean_sim = {"easy": [], "hard": [], "junk": [], "other": []}
    for path, box, g in zip(bench.query_paths, bench.query_boxes, bench.gnd, strict=True):
        sim = db @ histogram(load_image(path).crop(tuple(round(v) for v in box)))
        for kind in ("easy", "hard", "junk"):
            mean_sim[kind].append(sim[g[kind]].mean())
        mean_sim["other"].append(np.delete(sim, np.r_[g["easy"], g["hard"], g["junk"]]).mean())
    easy, hard, junk, other = (np.mean(mean_sim[k]) for k in ("easy", "hard", "junk", "other"))
    assert easy > hard > other and easy > junk


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    write_revisited(tmp_path / "a", "roxford5k", seed=7, **TINY)
    write_revisited(tmp_path / "b", "roxford5k", seed=7, **TINY)
    write_revisited(tmp_path / "c", "roxford5k", seed=8, **TINY)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_oxford_original_gt_files_read_back(tmp_path):
    args = {"seed": 2, "n_landmarks": 2, "queries_per_landmark": 2, "good": 2, "ok": 1,
            "junk": 1, "n_distractors": 2, "image_size": 48}
    write_oxford_original(tmp_path, "oxford5k", **args)
    write_oxford_original(tmp_path, "paris6k", **args)
    first = (tmp_path / "oxford5k" / "gt_files" / "lm00_1_query.txt").read_text()
    assert first.startswith("oxc1_lm00_")
    assert not (tmp_path / "paris6k" / "gt_files" / "lm00_1_query.txt").read_text().startswith(
        "oxc1_")
    assert (tmp_path / "paris6k" / "jpg" / "general").is_dir()
    for name in ("oxford5k", "paris6k"):
        bench = load_oxford_original(tmp_path, name)
        assert bench.n_db == 2 * (2 + 2 + 1 + 1) + 2 and bench.n_queries == 4
        db_index = {p: i for i, p in enumerate(bench.db_paths)}
        for q, g in enumerate(bench.gnd):
            own = db_index[bench.query_paths[q]]  # the query image is a database image
            # good (2 easy views + the 2 query images) + ok (1 hard view)
            assert own in g["ok"] and len(g["ok"]) == 5 and len(g["junk"]) == 1
            assert not set(g["ok"].tolist()) & set(g["junk"].tolist())


def test_holidays_and_ukbench_read_back(tmp_path):
    write_holidays(tmp_path, seed=0, n_groups=5, group_size=(2, 3), image_size=40)
    write_ukbench(tmp_path, seed=0, n_groups=3, image_size=40)
    hol = load_holidays(tmp_path)
    assert hol.n_queries == 5 and 10 <= hol.n_db <= 15
    sizes = np.bincount(hol.db_groups - 1000)
    assert sizes.min() >= 2 and sizes.max() <= 3
    for q, g in zip(hol.query_db_index, hol.gnd, strict=True):
        assert g["junk"].tolist() == [q] and len(g["ok"]) == sizes[hol.db_groups[q] - 1000] - 1
    ukb = load_ukbench(tmp_path)
    assert ukb.n_db == ukb.n_queries == 12
    assert all(len(g["ok"]) == 4 for g in ukb.gnd)
    with pytest.raises(ValueError, match="group_size"):
        write_holidays(tmp_path, seed=0, n_groups=2, group_size=(1, 3), image_size=40)


def test_writers_reject_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="roxford5k"):
        write_revisited(tmp_path, "oxford5k", seed=0, **TINY)
    with pytest.raises(ValueError, match="easy"):
        write_revisited(tmp_path, "roxford5k", seed=0, **{**TINY, "easy": -1})
    with pytest.raises(ValueError, match="seed"):
        write_ukbench(tmp_path, seed=-3, n_groups=1, image_size=32)
    with pytest.raises(ValueError, match="smoke"):
        ensure_instance_suite(tmp_path, seed=0, scale="huge")


def test_instance_suite_is_cached_and_regenerated_on_config_change(tmp_path):
    root = ensure_instance_suite(tmp_path / "suite", seed=0, scale="smoke", image_size=32)
    for name in ("roxford5k", "rparis6k", "holidays", "ukbench"):
        assert load_instance_benchmark(root, name).n_queries > 0
    assert load_instance_benchmark(root, "ukbench").n_db == 40
    ox = load_instance_benchmark(root, "roxford5k")
    assert (ox.n_db, ox.n_queries) == (4 * 6 + 20, 8)
    pa = load_instance_benchmark(root, "rparis6k")
    assert Image.open(ox.db_paths[0]).tobytes() != Image.open(pa.db_paths[0]).tobytes()
    stamp = (root / "roxford5k" / "gnd_roxford5k.pkl").stat().st_mtime_ns
    ensure_instance_suite(root, seed=0, scale="smoke", image_size=32)
    assert (root / "roxford5k" / "gnd_roxford5k.pkl").stat().st_mtime_ns == stamp
    (root / "holidays" / "jpg" / "100001.jpg").unlink()  # incomplete -> written again
    ensure_instance_suite(root, seed=0, scale="smoke", image_size=32)
    assert (root / "holidays" / "jpg" / "100001.jpg").exists()
    before = _tree_digest(root / "ukbench")
    ensure_instance_suite(root, seed=1, scale="smoke", image_size=32)
    assert _tree_digest(root / "ukbench") != before
    marker = root / ".irbook_synth_instance_suite.json"
    assert json.loads(marker.read_text())["config"]["seed"] == 1


def test_instance_suite_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "roxford5k").mkdir()
    (tmp_path / "roxford5k" / "real.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="roxford5k"):
        ensure_instance_suite(tmp_path, seed=0, scale="smoke", image_size=32)
    assert (tmp_path / "roxford5k" / "real.jpg").exists()


def test_classification_set_reads_as_image_folder(tmp_path):
    ensure_instance_suite(tmp_path, seed=0, scale="smoke", image_size=32)  # may share a root
    gnd = tmp_path / "roxford5k" / "gnd_roxford5k.pkl"
    stamp = gnd.stat().st_mtime_ns
    root = ensure_classification(tmp_path, seed=0, scale="smoke", image_size=32)
    ensure_instance_suite(tmp_path, seed=0, scale="smoke", image_size=32)
    assert gnd.stat().st_mtime_ns == stamp  # neither set rewrote the other
    train = ImageFolderDataset(root / "train", image_size=24, train=True)
    val = ImageFolderDataset(root / "val", image_size=24)
    assert len(train.classes) == 8 and len(train) == 80 and len(val) == 32
    torch.manual_seed(0)
    x, y = train[13]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and y == 1
    assert val[0][0].shape == (3, 24, 24)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere", image_size=24)


# ----------------------------------------------------------------------------- image datasets


def _two_colour_image(path: Path) -> None:
    """40x30 image: left half (x < 20) red, right half blue."""
    a = np.zeros((30, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    Image.fromarray(a).save(path, "PNG")


def test_image_list_dataset_crops_then_resizes_and_normalises(tmp_path):
    path = tmp_path / "im.png"
    _two_colour_image(path)
    full = ImageListDataset([path])[0]
    assert full.shape == (3, 30, 40)
    expected_red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    expected_blue_r = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(full[0, 0, 0], torch.tensor(expected_red))
    assert torch.allclose(full[0, 0, 39], torch.tensor(expected_blue_r))
    ds = ImageListDataset([path, path, path], boxes=[(2, 5, 18, 25), None, (10.4, 0, 30.6, 30)],
                          max_size=20)
    crop_red = ds[0]
    assert crop_red.shape == (3, 20, 16)  # 16x20 crop of the red half: longer side 20
    assert torch.allclose(crop_red[0], torch.full((20, 16), expected_red))
    assert ds[1].shape == (3, 15, 20)  # 40x30 -> longer side 20
    assert ds[2].shape == (3, 20, 14)  # box rounded to (10, 0, 31, 30): 21x30
    with pytest.raises(ValueError, match="boxes"):
        ImageListDataset([path], boxes=[None, None])


def test_load_image_missing_or_unreadable(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "absent.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(bad)
    grey = tmp_path / "grey.png"
    Image.new("L", (4, 4), 7).save(grey)
    assert load_image(grey).mode == "RGB"
