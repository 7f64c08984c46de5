"""Tests of irbook.search.knn: both backends against numpy brute force."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from irbook.search import describe_backend, knn, rank_all

knn_module = importlib.import_module("irbook.search.knn")  # the package re-exports knn()
HAS_FAISS = knn_module.faiss_available()
NEEDS_FAISS = pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed")
BACKENDS = ["torch", pytest.param("faiss", marks=NEEDS_FAISS)]


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


@NEEDS_FAISS
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
