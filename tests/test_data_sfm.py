"""retrieval-SfM-120k loader, hard-negative tuple mining and the synthetic writer."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError
from irbook.data.sfm import (
    HOW_TO_GET,
    SFM_NAME,
    SfmSplit,
    TupleSampler,
    cid2filename,
    hardest_negatives,
    load_sfm120k,
    mine_tuples,
    subset_split,
)
from irbook.data.synth.instance import _object_texture
from irbook.data.synth.sfm import cluster_texture, write_sfm120k

# ----------------------------------------------------------------------------- fixture

TRAIN = {
    "cids": ["a1b2c3d4e5f6", "00112233aabb", "ffeeddccbbaa", "0a0b0c0d0e0f"],
    "cluster": [7, 7, 3, 3],
    "qidxs": [0, 2, 1],
    "pidxs": [1, 3, 0],
    "bbxs": [None, [1, 2, 6, 5], None, None],
}
VAL = {"cids": ["9988776655443322", "1234567890ab"], "cluster": [11, 11], "qidxs": [0],
       "pidxs": [1]}


def _write_fixture(root: Path, db: dict | None = None, skip_image: str | None = None) -> Path:
    """Official layout: extension-less JPEGs in cid2filename folders + the split pickle."""
    db = {"train": TRAIN, "val": VAL} if db is None else db
    folder = root / SFM_NAME
    for split in ("train", "val"):
        for k, cid in enumerate(db.get(split, {}).get("cids", [])):
            if cid != skip_image:
                path = cid2filename(cid, folder / "ims")
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 6), (40 * k, 90, 20)).save(path, "JPEG")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ims").mkdir(exist_ok=True)
    with open(folder / f"{SFM_NAME}.pkl", "wb") as f:
        pickle.dump(db, f)
    return folder


def test_cid2filename_uses_the_last_six_characters():
    assert cid2filename("abcdef123456", "/data/ims") == Path("/data/ims/56/34/12/abcdef123456")


def test_loader_reads_official_layout(tmp_path):
    folder = _write_fixture(tmp_path)
    data = load_sfm120k(tmp_path)
    train = data.split("train")
    assert train.image_paths[0] == folder / "ims" / "f6" / "e5" / "d4" / "a1b2c3d4e5f6"
    assert train.cids == TRAIN["cids"] and train.n_images == 4 and train.n_pairs == 3
    assert train.clusters.tolist() == [7, 7, 3, 3] and train.clusters.dtype == np.int64
    assert train.qidxs.tolist() == [0, 2, 1] and train.pidxs.tolist() == [1, 3, 0]
    assert train.boxes == [None, (1.0, 2.0, 6.0, 5.0), None, None]
    assert data.val.boxes is None and data.val.clusters.tolist() == [11, 11]
    assert data.val.image_paths[1] == folder / "ims" / "ab" / "90" / "78" / "1234567890ab"
    with pytest.raises(ValueError, match="split must be one of"):
        data.split("test")


def test_missing_dataset_names_path_and_how_to_get(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_sfm120k(tmp_path)
    assert str(tmp_path / SFM_NAME) in str(err.value) and HOW_TO_GET in str(err.value)
    (tmp_path / SFM_NAME / "ims").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=f"{SFM_NAME}.pkl"):
        load_sfm120k(tmp_path)


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ({"train": TRAIN}, r"missing splits \['val'\]"),
        ({"train": {k: v for k, v in TRAIN.items() if k != "pidxs"}, "val": VAL},
         r"\['train'\] lacks keys \['pidxs'\]"),
        ({"train": {**TRAIN, "qidxs": [0, 4, 1]}, "val": VAL}, r"qidxs'\] has indices outside"),
        ({"train": TRAIN, "val": {**VAL, "pidxs": [-1]}}, r"pidxs'\] has indices outside"),
        ({"train": {**TRAIN, "cluster": [7, 7, 3]}, "val": VAL}, "3 ids for 4 images"),
        ({"train": {**TRAIN, "pidxs": [1, 3]}, "val": VAL}, "3 qidxs but 2 pidxs"),
        ({"train": {**TRAIN, "bbxs": [None, [6, 2, 1, 5], None, None]}, "val": VAL},
         r"bbxs'\]\[1\] must be"),
        ({"train": {**TRAIN, "cluster": [7.5, 7, 3, 3]}, "val": VAL}, "flat list of integers"),
    ],
)
def test_damaged_pickle_names_the_file_and_the_problem(tmp_path, db, message):
    folder = _write_fixture(tmp_path, db)
    with pytest.raises(DatasetCorruptError, match=message) as err:
        load_sfm120k(tmp_path)
    assert err.value.path == folder / f"{SFM_NAME}.pkl"


def test_missing_image_and_unreadable_pickle_are_reported(tmp_path):
    folder = _write_fixture(tmp_path, skip_image="ffeeddccbbaa")
    with pytest.raises(DatasetCorruptError, match="ffeeddccbbaa") as err:
        load_sfm120k(tmp_path)
    assert "1 images of ['train']['cids'] are missing" in str(err.value)
    (folder / f"{SFM_NAME}.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetCorruptError, match="cannot be unpickled"):
        load_sfm120k(tmp_path)


# ----------------------------------------------------------------------------- mining


def _brute_force_negatives(scores, query_cluster, pool, clusters, k):
    """Written-out cirtorch rule: walk the pool by decreasing score, keep new clusters."""
    ranked = sorted(range(len(pool)), key=lambda j: (-scores[j], j))
    used, found = [query_cluster], []
    for j in ranked:
        if clusters[pool[j]] not in used:
            found.append(pool[j])
            used.append(clusters[pool[j]])
        if len(found) == k:
            break
    return found


def test_hardest_negatives_match_a_brute_force_loop():
    rng = np.random.default_rng(3)
    clusters = rng.integers(0, 9, size=60)
    vecs = rng.normal(size=(60, 5))
    pool = rng.permutation(60)[:40]
    queries = np.arange(12)
    got = hardest_negatives(vecs[queries], clusters[queries], vecs[pool], pool, clusters, 4)
    for row, q in enumerate(queries):
        scores = [float(vecs[q] @ vecs[j]) for j in pool]
        want = _brute_force_negatives(scores, clusters[q], list(pool), clusters, 4)
        assert got[row].tolist() == want
        negative_clusters = clusters[got[row]]
        assert clusters[q] not in negative_clusters
        assert len(set(negative_clusters.tolist())) == 4
        sims = vecs[got[row]] @ vecs[q]
        assert np.all(np.diff(sims) <= 0)  # hardest first


def test_hardest_negatives_hand_computed():
    # 1-D descriptors: similarity to the query (value 1) is the pool value itself
    clusters = np.array([0, 0, 1, 1, 2, 3])
    vecs = np.array([[1.0], [0.9], [0.8], [0.7], [0.1], [0.5]])
    pool = np.arange(6)
    got = hardest_negatives(vecs[:1], clusters[:1], vecs, pool, clusters, 2)
    assert got.tolist() == [[2, 5]]  # image 1 is the query's cluster, image 3 repeats cluster 1
    with pytest.raises(ValueError, match="raise pool_size or lower n_negatives"):
        hardest_negatives(vecs[:1], clusters[:1], vecs, pool, clusters, 4)


def _toy_split(n_clusters=8, per_cluster=5, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(n_clusters), per_cluster)
    qidxs = np.arange(clusters.size)
    pidxs = np.array([(i // per_cluster) * per_cluster + (i + 1) % per_cluster for i in qidxs])
    vecs = rng.normal(size=(clusters.size, dim))
    return clusters, qidxs, pidxs, vecs


def test_mine_tuples_pairs_negatives_and_determinism():
    clusters, qidxs, pidxs, vecs = _toy_split()
    calls = []

    def describe(idx):
        calls.append(idx.copy())
        return vecs[idx]

    kwargs = dict(n_queries=10, n_negatives=3, pool_size=25, seed=5)
    tuples = mine_tuples(clusters, qidxs, pidxs, describe, epoch=0, **kwargs)
    assert tuples.shape == (10, 5) and tuples.dtype == np.int64
    pair_of = dict(zip(qidxs.tolist(), pidxs.tolist(), strict=True))
    for q, p, *negs in tuples.tolist():
        assert pair_of[q] == p and clusters[q] == clusters[p]
        assert clusters[q] not in clusters[negs] and len(set(clusters[negs])) == 3
    queries, pool = calls
    assert queries.tolist() == tuples[:, 0].tolist() and pool.size == 25
    assert len(set(pool.tolist())) == 25
    for q, _, *negs in tuples.tolist():
        scores = [float(vecs[q] @ vecs[j]) for j in pool]
        assert negs == _brute_force_negatives(scores, clusters[q], pool.tolist(), clusters, 3)
    again = mine_tuples(clusters, qidxs, pidxs, lambda i: vecs[i], epoch=0, **kwargs)
    other = mine_tuples(clusters, qidxs, pidxs, lambda i: vecs[i], epoch=1, **kwargs)
    assert np.array_equal(tuples, again) and not np.array_equal(tuples, other)


def test_the_descriptors_decide_the_negatives():
    clusters, qidxs, pidxs, vecs = _toy_split()
    kwargs = dict(n_queries=6, n_negatives=2, pool_size=40, seed=1, epoch=0)
    base = mine_tuples(clusters, qidxs, pidxs, lambda i: vecs[i], **kwargs)
    planted = vecs.copy()
    target = next(j for j in range(40) if clusters[j] != clusters[base[0, 0]])
    planted[target] = 10 * planted[base[0, 0]]  # now the hardest negative of the first query
    moved = mine_tuples(clusters, qidxs, pidxs, lambda i: planted[i], **kwargs)
    assert moved[0, 2] == target and base[0, 2] != target
    assert np.array_equal(base[:, :2], moved[:, :2])  # the pairs do not depend on descriptors


def test_mine_tuples_caps_sizes_and_skips_description_without_negatives():
    clusters, qidxs, pidxs, vecs = _toy_split(n_clusters=3, per_cluster=2)

    def never(_):
        raise AssertionError("describe must not be called without negatives")

    pairs = mine_tuples(clusters, qidxs, pidxs, never, n_queries=100, n_negatives=0,
                        pool_size=5, seed=0, epoch=0)
    assert pairs.shape == (6, 2) and sorted(pairs[:, 0].tolist()) == list(range(6))
    full = mine_tuples(clusters, qidxs, pidxs, lambda i: vecs[i], n_queries=100,
                       n_negatives=2, pool_size=10_000, seed=0, epoch=0)
    assert full.shape == (6, 4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_queries": 0}, "n_queries must be a positive integer"),
        ({"n_negatives": -1}, "n_negatives must be a non-negative integer"),
        ({"pool_size": 2.5}, "pool_size must be a positive integer"),
        ({"seed": -3}, "seed must be a non-negative integer"),
        ({"epoch": True}, "epoch must be a non-negative integer"),
        ({"describe": lambda i: np.full((i.size, 3), np.nan)}, "NaN"),
        ({"describe": lambda i: np.zeros((i.size + 1, 3))}, "describe must return"),
    ],
)
def test_mine_tuples_rejects_bad_arguments(change, message):
    clusters, qidxs, pidxs, vecs = _toy_split()
    kwargs = dict(describe=lambda i: vecs[i], n_queries=4, n_negatives=2, pool_size=20, seed=0,
                  epoch=0)
    kwargs.update(change)
    describe = kwargs.pop("describe")
    with pytest.raises(ValueError, match=message):
        mine_tuples(clusters, qidxs, pidxs, describe, **kwargs)


def test_tuple_sampler_on_a_loaded_split(tmp_path):
    _write_fixture(tmp_path)
    train = load_sfm120k(tmp_path).train
    vecs = np.eye(4)
    sampler = TupleSampler(train, n_queries=10, n_negatives=1, pool_size=4, seed=2)
    assert len(sampler) == 3
    tuples = sampler.tuples(0, lambda i: vecs[i])
    assert tuples.shape == (3, 3)
    for q, p, n in tuples.tolist():
        assert train.clusters[q] == train.clusters[p] != train.clusters[n]
    paths = sampler.paths(tuples)
    assert paths[0] == [train.image_paths[i] for i in tuples[0]]
    with pytest.raises(ValueError, match="pool_size"):
        TupleSampler(train, pool_size=0)


def _named_split(sizes=(3, 5, 2, 4)):
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    names = [f"c{c}-i{i}" for i, c in enumerate(clusters)]
    qidxs = np.arange(clusters.size)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[clusters]
    pidxs = starts + (qidxs - starts + 1) % np.asarray(sizes)[clusters]
    boxes = [(0.0, 0.0, float(i), float(i)) for i in range(clusters.size)]
    return SfmSplit("train", [Path(n) for n in names], names, clusters, qidxs, pidxs, boxes)


def test_subset_split_keeps_whole_clusters_and_reindexes_their_pairs():
    split = _named_split()
    small = subset_split(split, 8, seed=1)
    assert small.n_images <= 8
    kept = set(small.clusters.tolist())
    assert small.n_images == sum((split.clusters == c).sum() for c in kept)  # whole clusters
    for left_out in set(split.clusters.tolist()) - kept:  # no cluster left out would fit
        assert small.n_images + (split.clusters == left_out).sum() > 8
    original = {name: i for i, name in enumerate(split.cids)}
    pairs = {(split.cids[q], split.cids[p])
             for q, p in zip(split.qidxs, split.pidxs, strict=True) if split.clusters[q] in kept}
    assert {(small.cids[q], small.cids[p])
            for q, p in zip(small.qidxs, small.pidxs, strict=True)} == pairs
    for i, name in enumerate(small.cids):
        assert small.image_paths[i] == Path(name)
        assert small.boxes[i] == split.boxes[original[name]]
        assert small.clusters[i] == split.clusters[original[name]]
    assert subset_split(split, 8, seed=1).cids == small.cids  # seeded
    assert subset_split(split, 14) is split
    with pytest.raises(ValueError, match="smaller than every cluster"):
        subset_split(split, 1)
    with pytest.raises(ValueError, match="max_images"):
        subset_split(split, 0)


# ----------------------------------------------------------------------------- synthetic


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


SMALL = dict(n_clusters=6, images_per_cluster=3, image_size=64, val_clusters=2)


def test_synthetic_sfm_loads_with_the_official_loader(tmp_path):
    root = write_sfm120k(tmp_path, seed=4, **SMALL)
    data = load_sfm120k(root)
    assert data.train.n_images == 12 and data.val.n_images == 6
    assert sorted(set(data.train.clusters.tolist())) == [0, 1, 2, 3]
    assert sorted(set(data.val.clusters.tolist())) == [4, 5]
    for split in (data.train, data.val):
        assert split.n_pairs == split.n_images and split.boxes == [None] * split.n_images
        assert np.all(split.clusters[split.qidxs] == split.clusters[split.pidxs])
        assert np.all(split.qidxs != split.pidxs)
        assert all(len(c) == 32 and p.suffix == "" for c, p in
                   zip(split.cids, split.image_paths, strict=True))
        with Image.open(split.image_paths[0]) as img:
            assert img.format == "JPEG" and img.size == (64, 64)
    # clusters interleave in image order, as in the release
    assert not np.array_equal(data.train.clusters, np.sort(data.train.clusters))
    vecs = np.random.default_rng(0).normal(size=(data.train.n_images, 4))
    tuples = TupleSampler(data.train, n_queries=5, n_negatives=3, pool_size=12).tuples(
        0, lambda i: vecs[i])
    for q, p, *negs in tuples.tolist():
        assert data.train.clusters[q] == data.train.clusters[p]
        assert len({*data.train.clusters[negs].tolist(), data.train.clusters[q]}) == 4


def test_synthetic_sfm_is_deterministic_and_written_once(tmp_path):
    a = write_sfm120k(tmp_path / "a", seed=4, **SMALL) / SFM_NAME
    b = write_sfm120k(tmp_path / "b", seed=4, **SMALL) / SFM_NAME
    c = write_sfm120k(tmp_path / "c", seed=5, **SMALL) / SFM_NAME
    assert _digest(a) == _digest(b) and _digest(a) != _digest(c)
    pkl = a / f"{SFM_NAME}.pkl"
    stamp = pkl.stat().st_mtime_ns
    write_sfm120k(tmp_path / "a", seed=4, **SMALL)
    assert pkl.stat().st_mtime_ns == stamp  # same configuration: nothing rewritten
    write_sfm120k(tmp_path / "a", seed=4, **{**SMALL, "images_per_cluster": 2})
    assert load_sfm120k(tmp_path / "a").train.n_images == 8


def _thumb(texture: Image.Image) -> np.ndarray:
    return np.asarray(texture.convert("RGB").resize((16, 16), Image.Resampling.BOX), float)


def test_training_landmarks_are_not_evaluation_landmarks():
    seed, size = 0, 64
    train = [_thumb(cluster_texture(seed, c, size)) for c in range(12)]
    evaluation = [_thumb(_object_texture(seed, name, role, lm, size))
                  for name, role in [("roxford5k", "landmark"), ("rparis6k", "landmark"),
                                     ("oxford5k", "landmark"), ("paris6k", "landmark"),
                                     ("holidays", "scene"), ("ukbench", "object")]
                  for lm in range(12)]
    gaps = [np.abs(t - e).mean() for t in train for e in evaluation]
    assert min(gaps) > 5.0  # mean absolute difference in 0-255 units: no shared pattern
    # the check can fail: the same stream gives the same pattern
    same = _thumb(_object_texture(seed, "roxford5k", "landmark", 3, size))
    assert np.abs(evaluation[3] - same).mean() == 0.0


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="images_per_cluster must be an integer >= 2"):
        write_sfm120k(tmp_path, seed=0, images_per_cluster=1)
    with pytest.raises(ValueError, match="at least 2 training clusters"):
        write_sfm120k(tmp_path, seed=0, n_clusters=4, val_clusters=3)
    with pytest.raises(ValueError, match="seed"):
        write_sfm120k(tmp_path, seed=-1)
