"""Tests of irbook.search.index (FAISS build/query layer) and irbook.data.synth.vectors.

Exact kinds are compared with :func:`irbook.search.knn` / :func:`hamming_knn`; approximate kinds
with the exact neighbours (recall@10) on clustered data. Recall on structureless Gaussian data
is recorded (``record_property``), not asserted."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from irbook.data.synth.vectors import (
    cluster_centres,
    clustered_queries,
    clustered_vectors,
    gaussian_vectors,
    relevance_by_cluster,
)
from irbook.search import knn
from irbook.search.binary import hamming_knn, pack_codes
from irbook.search.index import INDEX_KINDS, INDEX_PARAMS, build_index, recall_at

N, DIM, N_QUERIES, SMALL_CLUSTERS = 3000, 32, 100, 300  # clusters of about 10 vectors


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    database, _ = clustered_vectors(N, DIM, SMALL_CLUSTERS, seed=0, spread=0.5)
    queries, _ = clustered_queries(N_QUERIES, DIM, SMALL_CLUSTERS, seed=0, spread=0.5)
    return database, queries


@pytest.fixture(scope="module")
def structureless():
    return gaussian_vectors(N, DIM, seed=0), gaussian_vectors(N_QUERIES, DIM, seed=1)


# --- synthetic vectors --------------------------------------------------------------------

def test_clustered_vectors_are_deterministic_unit_rows_near_their_centres():
    vectors, labels = clustered_vectors(500, 16, 5, seed=3, spread=0.1)
    again, labels_again = clustered_vectors(500, 16, 5, seed=3, spread=0.1)
    other, _ = clustered_vectors(500, 16, 5, seed=4, spread=0.1)
    assert vectors.dtype == np.float32 and vectors.shape == (500, 16)
    assert np.array_equal(vectors, again) and np.array_equal(labels, labels_again)
    assert not np.allclose(vectors, other)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    centres = cluster_centres(5, 16, seed=3)
    cosine_to_own = (vectors * centres[labels]).sum(axis=1)
    assert cosine_to_own.min() > 0.98  # noise norm 0.1 -> cos about 1 / sqrt(1.01)
    raw, _ = clustered_vectors(500, 16, 5, seed=3, spread=0.1, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(raw - centres[labels], axis=1).mean(), 0.1,
                               rtol=0.1)


def test_queries_share_the_centres_and_relevance_is_same_cluster():
    database, db_labels = clustered_vectors(400, 16, 4, seed=1, spread=0.3)
    queries, q_labels = clustered_queries(20, 16, 4, seed=1, spread=0.3)
    assert not np.isin(queries, database).all(axis=1).any()  # fresh noise
    relevance = relevance_by_cluster(q_labels, db_labels)
    assert relevance.shape == (20, 400) and relevance.dtype == bool
    assert np.array_equal(relevance[3], db_labels == q_labels[3])
    nearest = knn(queries, database, 1)[1][:, 0]
    assert (db_labels[nearest] == q_labels).all()  # tight clusters: nearest is relevant


@pytest.mark.parametrize(("kwargs", "name"), [({"n": 0}, "n"), ({"spread": float("nan")},
                         "spread"), ({"spread": -1.0}, "spread"), ({"seed": -1}, "seed")])
def test_vector_arguments_are_validated(kwargs, name):
    arguments = {"n": 10, "dim": 4, "n_clusters": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        clustered_vectors(**arguments)


# --- exact, IVF, PQ, HNSW, binary -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_equals_knn(data, backend, metric):
    database, queries = data
    index = build_index(torch.from_numpy(database), "exact", metric, backend=backend)
    scores, ids = index.search(queries, 10)
    ref_scores, ref_ids = knn(queries, database, 10, metric=metric, backend=backend)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    step = np.diff(scores, axis=1)
    assert (step <= 0).all() if metric == "ip" else (step >= 0).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_ivf_flat_probing_every_cell_is_exact_and_nprobe_is_per_call(data, structureless,
                                                                      metric):
    database, queries = data
    nlist = 16
    index = build_index(database, "ivf_flat", metric, nlist=nlist, nprobe=1)
    ref_scores, ref_ids = knn(queries, database, 10, metric=metric)
    scores, ids = index.search(queries, 10, nprobe=nlist)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    assert recall_at(ids, ref_ids, 10) >= 0.999  # equal up to the order of float near-ties
    g_database, g_queries = structureless
    g_index = build_index(g_database, "ivf_flat", metric, nlist=nlist, nprobe=1)
    g_ref = knn(g_queries, g_database, 10, metric=metric)[1]
    one_cell = recall_at(g_index.search(g_queries, 10)[1], g_ref, 10)  # build default: 1
    every_cell = recall_at(g_index.search(g_queries, 10, nprobe=nlist)[1], g_ref, 10)
    assert one_cell < 0.7 and every_cell >= 0.999
    assert g_index.params["nprobe"] == 1  # the per-call value did not stick


def test_pq_and_hnsw_reach_their_recall_on_clustered_data(data, structureless,
                                                          record_property):
    settings = {"ivf_pq": ({"nlist": 16, "m": 16, "nbits": 4, "nprobe": 4}, 0.75),
                "hnsw": ({"M": 8, "ef_construction": 40, "ef_search": 16}, 0.9)}
    for kind, (params, floor) in settings.items():
        recalls = {}
        for name, (database, queries) in {"clustered": data, "gaussian": structureless}.items():
            index = build_index(database, kind, **params)
            exact_ids = knn(queries, database, 10)[1]
            recalls[name] = recall_at(index.search(queries, 10)[1], exact_ids, 10)
            record_property(f"{kind}_recall10_{name}", round(recalls[name], 3))
        assert recalls["clustered"] >= floor, (kind, recalls)


def test_hnsw_describe_notes_ef_search_below_k(data):
    database, queries = data
    index = build_index(database, "hnsw", M=8, ef_search=5)
    index.search(queries, 20)
    assert "ef_search 5 < k 20" in index.describe()
    index.search(queries, 20, ef_search=40)
    assert "ef_search" not in index.describe().split("; ")[-1]
    exact = knn(queries, database, 20)[1]
    low = recall_at(index.search(queries, 20, ef_search=1)[1], exact, 20)
    at_k = recall_at(index.search(queries, 20, ef_search=20)[1], exact, 20)
    high = recall_at(index.search(queries, 20, ef_search=200)[1], exact, 20)
    assert low < at_k - 0.2 and at_k <= high  # ef_search < k is not searched as ef_search = k


@pytest.mark.parametrize("form", ["bits", "signs", "packed"])
def test_binary_equals_hamming_knn(form):
    rng = np.random.default_rng(0)
    db_bits = rng.integers(0, 2, size=(2000, 64)).astype(np.int8)
    q_bits = rng.integers(0, 2, size=(30, 64)).astype(np.int8)
    convert = {"bits": lambda b: b, "signs": lambda b: 2 * b - 1, "packed": pack_codes}[form]
    index = build_index(convert(db_bits), "binary")
    distances, ids = index.search(convert(q_bits), 25)
    ref_distances, ref_ids = hamming_knn(q_bits, db_bits, 25)
    assert distances.dtype == np.int32 and ids.dtype == np.int64
    assert np.array_equal(distances, ref_distances) and np.array_equal(ids, ref_ids)
    naive = (q_bits[:, None, :] != db_bits[None, :, :]).sum(axis=2)
    assert np.array_equal(distances, np.take_along_axis(naive, ids, axis=1))
    assert index.engine.use_heap is False and index.metric == "hamming"
    assert index.dim == 64 and "IndexBinaryFlat" in index.describe()


def test_same_seed_same_index_and_the_seed_is_used(data):
    database, queries = data
    params = {"nlist": 16, "m": 8, "nbits": 4, "nprobe": 2}
    first = build_index(database, "ivf_pq", seed=7, train_size=1000, **params)
    second = build_index(database, "ivf_pq", seed=7, train_size=1000, **params)
    other = build_index(database, "ivf_pq", seed=8, train_size=1000, **params)
    assert np.array_equal(first.search(queries, 10)[1], second.search(queries, 10)[1])
    codebook = [faiss.vector_to_array(i.engine.pq.centroids) for i in (first, second, other)]
    assert np.array_equal(codebook[0], codebook[1]) and not np.allclose(codebook[0], codebook[2])
    ivf = [build_index(database, "ivf_flat", seed=s, nlist=16, nprobe=2) for s in (1, 1)]
    assert np.array_equal(ivf[0].search(queries, 10)[1], ivf[1].search(queries, 10)[1])


def test_memory_params_and_describe(data):
    database, _ = data
    exact = build_index(database, "exact")
    pq = build_index(database, "ivf_pq", nlist=16, m=8, nbits=4)
    assert N * DIM * 4 <= exact.memory_bytes() <= N * DIM * 4 + 4096
    assert pq.memory_bytes() < exact.memory_bytes() / 4  # 4-byte codes instead of 128 bytes
    assert pq.params == {"nlist": 16, "m": 8, "nbits": 4, "nprobe": INDEX_PARAMS["ivf_pq"]
                         ["query"]["nprobe"]}
    assert "IndexIVFPQ" in pq.describe() and "m=8" in pq.describe()
    assert set(INDEX_PARAMS) == set(INDEX_KINDS)


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("ivf_flat", {"nlists": 8}, r"unknown parameter 'nlists'.*allowed: nlist, nprobe"),
    ("exact", {"nprobe": 4}, r"unknown parameter 'nprobe'.*allowed: none"),
    ("ivf_flat", {"nlist": float("nan")}, "nlist must be a positive integer"),
    ("hnsw", {"M": -4}, "M must be a positive integer"),
    ("ivf_pq", {"nlist": 8, "m": 5}, r"m \(5\) must divide the dimension \(32\)"),
    ("ivf_flat", {"nlist": 5000}, r"nlist \(5000\) must be <= the number of training"),
    ("ivf_flat", {"nlist": 8, "nprobe": 9}, r"nprobe \(9\) must be <= nlist \(8\)"),
])
def test_parameter_validation(data, kind, params, message):
    with pytest.raises(ValueError, match=message):
        build_index(data[0], kind, **params)


def test_argument_validation(data):
    database, queries = data
    with pytest.raises(ValueError, match="kind must be one of"):
        build_index(database, "lsh")
    with pytest.raises(ValueError, match="metric must be one of"):
        build_index(database, "hnsw", "cosine")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*31\)"):
        build_index(database, "ivf_flat", nlist=8, seed=-3)
    with pytest.raises(ValueError, match="train_size must be a positive integer"):
        build_index(database, "ivf_flat", nlist=8, train_size=-1)
    with pytest.raises(ValueError, match=r"nlist \(8\) must be <= the number of training"):
        build_index(database, "ivf_flat", nlist=8, train_size=4)
    with pytest.raises(ValueError, match="backend='torch' is for kind 'exact' only"):
        build_index(database, "hnsw", backend="torch")
    index = build_index(database, "ivf_flat", nlist=8)
    with pytest.raises(ValueError, match="unknown parameter 'ef_search'"):
        index.search(queries, 5, ef_search=10)
    with pytest.raises(ValueError, match=r"nprobe \(9\) must be <= nlist"):
        index.search(queries, 5, nprobe=9)
    with pytest.raises(ValueError, match="queries have 16 dimensions"):
        index.search(queries[:, :16], 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(queries, 0)


def test_k_is_clipped_to_the_database_size(data):
    database, queries = data
    scores, ids = build_index(database[:7], "exact").search(queries, 50)
    assert ids.shape == (N_QUERIES, 7) and sorted(ids[0]) == list(range(7))
