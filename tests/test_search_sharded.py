"""Tests of irbook.search.sharded: FAISS IndexShards and IVF-PQ with inverted lists on disk.

A sharded index must answer exactly as the single index of the same kind (same trained cells,
so IVF results match at every ``nprobe``), with global ids; the on-disk IVF-PQ must answer as
the in-memory one built with the same seed and sample, before and after reopening."""

from __future__ import annotations

import shutil
import sys

import faiss
import numpy as np
import pytest

from irbook.data.synth.vectors import clustered_queries, clustered_vectors, gaussian_vectors
from irbook.search import (
    build_index,
    build_ondisk_ivfpq,
    build_sharded_index,
    knn,
    load_ondisk_index,
    recall_at,
    shard_bounds,
)

N, DIM, N_QUERIES, CLUSTERS = 4000, 32, 60, 400
PQ = {"nlist": 32, "m": 8, "nbits": 6}


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    database, _ = clustered_vectors(N, DIM, CLUSTERS, seed=0, spread=0.5)
    queries, _ = clustered_queries(N_QUERIES, DIM, CLUSTERS, seed=0, spread=0.5)
    return database, queries


@pytest.fixture(scope="module")
def structureless():
    return gaussian_vectors(N, DIM, seed=2), gaussian_vectors(N_QUERIES, DIM, seed=3)


def test_shard_bounds_are_contiguous_and_balanced():
    bounds = shard_bounds(10, 3)
    assert bounds == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(5, 5) == [(i, i + 1) for i in range(5)]
    sizes = [stop - start for start, stop in shard_bounds(4001, 7)]
    assert sum(sizes) == 4001 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("shards", [2, 3])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_sharded_exact_equals_single_exact(data, metric, shards):
    database, queries = data
    single = build_index(database, "exact", metric)
    sharded = build_sharded_index(database, "exact", metric, shards)
    scores, ids = sharded.search(queries, 10)
    ref_scores, ref_ids = single.search(queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (N_QUERIES, 10)
    assert np.array_equal(ids, ref_ids) and np.array_equal(scores, ref_scores)
    assert sharded.shards == shards and sharded.ntotal == N and sharded.dim == DIM
    assert sum(sharded.shard_sizes) == N and sharded.gpus == 0


def test_ids_stay_global_with_uneven_shards(data):
    database, _ = data
    index = build_sharded_index(database, "exact", "l2", shards=7)  # 4000 = 6 x 571 + 574
    assert index.shard_sizes == tuple(b - a for a, b in shard_bounds(N, 7))
    rows = np.array([0, 570, 571, 1999, 3427, 3428, N - 1])  # first/last rows of shards
    _, ids = index.search(database[rows], 1)
    assert np.array_equal(ids[:, 0], rows)  # a vector's nearest neighbour is itself
    tiny = build_sharded_index(database[:7], "exact", "ip", shards=3)  # shards of 2, 2, 3
    scores, ids = tiny.search(database[:2], 50)  # k clipped to the 7 vectors
    assert ids.shape == (2, 7) and all(sorted(row) == list(range(7)) for row in ids.tolist())
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq"])
def test_sharded_ivf_answers_as_the_single_ivf_at_every_nprobe(data, kind):
    database, queries = data
    params = PQ if kind == "ivf_pq" else {"nlist": PQ["nlist"]}
    single = build_index(database, kind, seed=3, train_size=2000, **params)
    sharded = build_sharded_index(database, kind, shards=3, seed=3, train_size=2000, **params)
    for nprobe in (1, 4):  # a shard left at the default nprobe (16) would return other ids
        ids = sharded.search(queries, 10, nprobe=nprobe)[1]
        assert np.array_equal(ids, single.search(queries, 10, nprobe=nprobe)[1]), nprobe
    assert sharded.params["nprobe"] == 16  # the per-call value did not stick


def test_sharded_ivf_flat_probing_every_cell_is_exact_and_nprobe_matters(structureless):
    database, queries = structureless
    nlist = PQ["nlist"]
    index = build_sharded_index(database, "ivf_flat", "l2", 3, nlist=nlist, nprobe=1)
    ref_scores, ref_ids = build_index(database, "exact", "l2").search(queries, 10)
    scores, ids = index.search(queries, 10, nprobe=nlist)
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    one_cell = recall_at(index.search(queries, 10)[1], ref_ids, 10)
    assert one_cell < 0.6  # measured 0.2-0.3 on Gaussian data


def test_sharded_hnsw_gets_ef_search_per_call(structureless):
    database, queries = structureless
    index = build_sharded_index(database, "hnsw", shards=3, M=8, ef_construction=40)
    exact = knn(queries, database, 10)[1]
    low = recall_at(index.search(queries, 10, ef_search=1)[1], exact, 10)
    high = recall_at(index.search(queries, 10, ef_search=128)[1], exact, 10)
    assert low < high - 0.3 and high >= 0.95  # measured about 0.2 and 1.0


def test_describe_and_memory(data):
    database, _ = data
    index = build_sharded_index(database, "ivf_pq", shards=3, **PQ)
    text = index.describe()
    assert "IndexShards of 3 IndexIVFPQ" in text and "on CPU" in text and "m=8" in text
    assert "1333, 1333, 1334 vectors" in text and repr(index).startswith("ShardedIndex(")
    assert 0 < index.memory_bytes() < N * DIM * 4 / 4  # 6-byte codes + ids, not 128-byte rows


def test_ondisk_ivfpq_matches_in_memory_and_reopens(data, tmp_path):
    database, queries = data
    folder = tmp_path / "gallery"
    built = build_ondisk_ivfpq(database, folder, shards=3, seed=5, train_size=3000, **PQ)
    memory = build_index(database, "ivf_pq", seed=5, train_size=3000, **PQ)
    scores, ids = built.search(queries, 10)
    assert np.array_equal(ids, memory.search(queries, 10)[1])
    np.testing.assert_allclose(scores, memory.search(queries, 10)[0], rtol=1e-6, atol=1e-6)
    exact = knn(queries, database, 10)[1]
    assert recall_at(ids, exact, 10) >= 0.6  # measured about 0.8 (6-byte codes, nprobe 16)
    assert sorted(p.name for p in folder.iterdir()) == ["merged.ivfdata", "populated.index",
                                                        "trained.index"]
    assert built.params == {**PQ, "nprobe": 16} and built.ntotal == N
    moved = shutil.move(folder, tmp_path / "moved")  # the lists are found next to the index
    again = load_ondisk_index(moved)
    again_scores, again_ids = again.search(queries, 10)
    assert np.array_equal(again_ids, ids) and np.array_equal(again_scores, scores)
    assert again.params == built.params and again.metric == "ip" and again.kind == "ivf_pq"
    assert "merged.ivfdata" in again.describe() and again.disk_bytes() > N * 6
    assert np.array_equal(again.search(queries, 10, nprobe=2)[1],
                          memory.search(queries, 10, nprobe=2)[1])


def test_ondisk_merge_without_faiss_contrib(data, tmp_path, monkeypatch):
    database, queries = data
    reference = build_ondisk_ivfpq(database, tmp_path / "contrib", metric="l2", **PQ)
    monkeypatch.setitem(sys.modules, "faiss.contrib.ondisk", None)  # import now fails
    by_hand = build_ondisk_ivfpq(database, tmp_path / "hand", metric="l2", keep_blocks=True,
                                 **PQ)
    assert np.array_equal(by_hand.search(queries, 10)[1], reference.search(queries, 10)[1])
    assert (tmp_path / "hand" / "block_1.index").is_file()
    assert load_ondisk_index(tmp_path / "hand").metric == "l2"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"shards": 0}, "shards must be a positive integer"),
    ({"shards": -2}, "shards must be a positive integer"),
    ({"shards": float("nan")}, "shards must be a positive integer"),
    ({"shards": 2.0}, "shards must be a positive integer"),
    ({"shards": N + 1}, r"shards \(4001\) must be <= the number of vectors \(4000\)"),
    ({"kind": "binary"}, "kind must be one of"),
    ({"metric": "cosine"}, "metric must be one of"),
    ({"gpus": -1}, "gpus must be None or a non-negative integer"),
    ({"gpus": 1}, "gpus=1 but FAISS sees 0 GPU"),
    ({"kind": "ivf_flat", "nlist": 0}, "nlist must be a positive integer"),
    ({"kind": "ivf_flat", "nlist": 8, "nprobe": 9}, r"nprobe \(9\) must be <= nlist \(8\)"),
    ({"kind": "ivf_pq", "nlist": 8, "m": 5}, r"m \(5\) must divide the dimension"),
    ({"kind": "hnsw", "ef_search": float("nan")}, "ef_search must be a positive integer"),
    ({"seed": -1}, "seed must be an integer"),
])
def test_sharded_parameters_are_validated(data, arguments, message):
    if arguments.get("gpus") == 1 and faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    call = {"database": data[0], "kind": "exact"} | arguments
    with pytest.raises(ValueError, match=message):
        build_sharded_index(**call)


def test_sharded_search_and_data_are_validated(data):
    database, queries = data
    index = build_sharded_index(database, "ivf_flat", shards=2, nlist=8)
    with pytest.raises(ValueError, match=r"nprobe \(9\) must be <= nlist \(8\)"):
        index.search(queries, 5, nprobe=9)
    with pytest.raises(ValueError, match="nprobe must be a positive integer"):
        index.search(queries, 5, nprobe=-1)
    with pytest.raises(ValueError, match="unknown parameter 'ef_search'"):
        index.search(queries, 5, ef_search=4)
    with pytest.raises(ValueError, match="queries have 16 dimensions"):
        index.search(queries[:, :16], 5)
    broken = database.copy()
    broken[5, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        build_sharded_index(broken, "exact")


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"nlist": 0}, ValueError, "nlist must be a positive integer"),
    ({"m": -8}, ValueError, "m must be a positive integer"),
    ({"nbits": float("nan")}, ValueError, "nbits must be a positive integer"),
    ({"nlist": 5000}, ValueError, r"nlist \(5000\) must be <= the number of training"),
    ({"train_size": 20}, ValueError, r"nlist \(32\) must be <= .*\(20 of the 1000"),
    ({"shards": 0}, ValueError, "shards must be a positive integer"),
    ({"metric": "hamming"}, ValueError, "metric must be one of"),
    ({"directory": "missing/gallery"}, FileNotFoundError, "parent folder does not exist"),
    ({"directory": "a_file"}, ValueError, "exists and is not a folder"),
])
def test_ondisk_parameters_are_validated(data, tmp_path, arguments, error, message):
    (tmp_path / "a_file").write_text("not a folder")
    call = {"directory": "gallery", **PQ} | arguments
    call["directory"] = tmp_path / call["directory"]
    with pytest.raises(error, match=message):
        build_ondisk_ivfpq(data[0][:1000], **call)
    assert not (tmp_path / "gallery").exists()  # refused before anything is written


def test_load_ondisk_index_needs_its_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no populated.index"):
        load_ondisk_index(tmp_path)
