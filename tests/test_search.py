"""Tests of irbook.search.knn: both backends against numpy brute force.

FAISS is a requirement of the book (extra ``cpu`` or ``gpu``): its absence fails
``test_faiss_is_installed`` and every faiss-backend test, and is never skipped."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from irbook.search import describe_backend, knn, rank_all, top_k_excluding_self

knn_module = importlib.import_module("irbook.search.knn")  # the package re-exports knn()
BACKENDS = ["torch", "faiss"]


def _data(n_queries: int = 7, n_db: int = 50, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    database = rng.standard_normal((n_db, dim)).astype(np.float32)
    return queries, database


def _brute_force(queries: np.ndarray, database: np.ndarray, metric: str) -> np.ndarray:
    """Score matrix in float64: inner products or squared L2 distances."""
    q, db = queries.astype(np.float64), database.astype(np.float64)
    if metric == "ip":
        return q @ db.T
    return ((q[:, None, :] - db[None, :, :]) ** 2).sum(axis=-1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_knn_matches_brute_force(backend: str, metric: str) -> None:
    queries, database = _data()
    scores, indices = knn(queries, database, 5, metric=metric, backend=backend)
    reference = _brute_force(queries, database, metric)
    order = np.argsort(-reference if metric == "ip" else reference, axis=1)[:, :5]
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert scores.shape == indices.shape == (7, 5)
    np.testing.assert_array_equal(indices, order)
    expected_scores = np.take_along_axis(reference, order, axis=1)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_and_ip_agree_on_normalised_vectors(backend: str) -> None:
    queries, database = _data()
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    ip_scores, ip_idx = knn(queries, database, 10, metric="ip", backend=backend)
    l2_scores, l2_idx = knn(queries, database, 10, metric="l2", backend=backend)
    np.testing.assert_array_equal(ip_idx, l2_idx)
    np.testing.assert_allclose(l2_scores, 2 - 2 * ip_scores, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_is_clipped_and_rank_all_is_a_full_ranking(backend: str) -> None:
    queries, database = _data(n_db=6)
    scores, indices = knn(queries, database, 100, backend=backend)
    assert scores.shape == indices.shape == (7, 6)
    ranking = rank_all(queries, database, backend=backend)
    np.testing.assert_array_equal(ranking, np.argsort(-_brute_force(queries, database, "ip"), 1))


def _top_scores(reference: np.ndarray, k: int, metric: str) -> np.ndarray:
    """The k best scores of each row, best first (independent of how ties are ordered)."""
    ordered = np.sort(reference, axis=1)
    return ordered[:, ::-1][:, :k] if metric == "ip" else ordered[:, :k]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("k", [4, 50, 80])  # 80 > N: clipped to 50
def test_scores_are_the_brute_force_scores_of_the_returned_pairs(
    backend: str, metric: str, k: int
) -> None:
    queries, database = _data(n_queries=9, n_db=50, dim=16, seed=3)
    scores, indices = knn(torch.from_numpy(queries), database, k, metric=metric, backend=backend)
    reference = _brute_force(queries, database, metric)
    assert scores.shape == indices.shape == (9, min(k, 50))
    # each score is the inner product / squared L2 distance of its (query, database) pair ...
    np.testing.assert_allclose(scores, np.take_along_axis(reference, indices, axis=1),
                               rtol=1e-4, atol=1e-4)
    # ... and the returned pairs are the k best ones
    np.testing.assert_allclose(scores, _top_scores(reference, min(k, 50), metric),
                               rtol=1e-4, atol=1e-4)
    if k >= 50:
        assert (np.sort(indices, axis=1) == np.arange(50)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_scores(backend: str) -> None:
    database = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    query = np.array([[1.0, 1.0]], dtype=np.float32)
    ip_scores, ip_idx = knn(query, database, 2, metric="ip", backend=backend)
    assert ip_idx.tolist() == [[2, 1]] and ip_scores.tolist() == [[6.0, 2.0]]
    l2_scores, l2_idx = knn(query, database, 5, metric="l2", backend=backend)
    assert l2_idx.tolist() == [[0, 1, 2]] and l2_scores.tolist() == [[1.0, 2.0, 8.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_top_k_excluding_self_matches_brute_force_without_the_diagonal(
    backend: str, metric: str
) -> None:
    embeddings, _ = _data(n_queries=12, dim=8, seed=5)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    embeddings[7] = embeddings[2]  # an exact duplicate: self and twin tie
    scores, indices = top_k_excluding_self(embeddings, 4, metric=metric, backend=backend)
    assert scores.shape == indices.shape == (12, 4)
    assert not (indices == np.arange(12)[:, None]).any()
    reference = _brute_force(embeddings, embeddings, metric)
    np.fill_diagonal(reference, -np.inf if metric == "ip" else np.inf)
    np.testing.assert_allclose(scores, _top_scores(reference, 4, metric), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, np.take_along_axis(reference, indices, axis=1),
                               rtol=1e-4, atol=1e-4)
    assert indices[2, 0] == 7 and indices[7, 0] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_k_excluding_self_drops_the_last_column_when_self_is_not_found(backend: str) -> None:
    # Inner products of unnormalised vectors: row 0's own score (1) is its worst.
    embeddings = np.array([[1.0, 0.0], [10.0, 0.0], [20.0, 0.0]], dtype=np.float32)
    scores, indices = top_k_excluding_self(embeddings, 1, backend=backend)
    assert indices.tolist() == [[2], [2], [1]]
    assert scores.tolist() == [[20.0], [200.0], [200.0]]
    scores, indices = top_k_excluding_self(embeddings, 10, metric="l2", backend=backend)
    assert indices.tolist() == [[1, 2], [0, 2], [1, 0]]  # k clipped to N - 1 = 2
    assert scores.tolist() == [[81.0, 361.0], [81.0, 100.0], [100.0, 361.0]]
    with pytest.raises(ValueError, match="n >= 2"):
        top_k_excluding_self(embeddings[:1], 1, backend=backend)


def test_torch_chunks_and_tensor_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn_module, "CHUNK_ELEMENTS", 100)  # 2 queries per chunk with N = 50
    queries, database = _data()
    expected = np.argsort(-_brute_force(queries, database, "ip"), axis=1)
    for k in (3, 50):  # torch.topk path and the numpy full-sort path
        _, indices = knn(torch.from_numpy(queries), torch.from_numpy(database), k, backend="torch")
        np.testing.assert_array_equal(indices, expected[:, :k])


def test_auto_backend_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn_module, "faiss_available", lambda: False)
    assert knn_module.resolve_backend("auto") == "torch"
    assert describe_backend().startswith("torch ")
    with pytest.raises(ValueError, match="backend='faiss' needs the faiss package"):
        knn(*_data(), 3, backend="faiss")


def test_faiss_is_installed() -> None:
    import faiss

    index = faiss.IndexFlatIP(2)
    index.add(np.eye(2, dtype=np.float32))
    scores, indices = index.search(np.array([[3.0, 1.0]], dtype=np.float32), 2)
    assert indices.tolist() == [[0, 1]] and scores.tolist() == [[3.0, 1.0]]
    assert knn_module.resolve_backend("auto") == "faiss"


def test_describe_backend_names_the_index() -> None:
    assert "IndexFlatL2" in describe_backend("faiss", metric="l2")
    assert describe_backend("faiss").startswith(("faiss-cpu", "faiss-gpu"))


def test_bad_arguments_raise() -> None:
    queries, database = _data()
    with pytest.raises(ValueError, match=r"metric must be one of \('ip', 'l2'\)"):
        knn(queries, database, 3, metric="cosine")
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'faiss', 'torch'\)"):
        knn(queries, database, 3, backend="annoy")
    with pytest.raises(ValueError, match="same dim"):
        knn(queries, database[:, :4], 3)
    with pytest.raises(ValueError, match="2-D"):
        knn(queries[0], database, 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn(queries, database, 0)
    with pytest.raises(ValueError, match="at least one vector"):
        knn(queries, database[:0], 3)
    with pytest.raises(ValueError, match="metric"):
        rank_all(queries, database, metric="dot")
