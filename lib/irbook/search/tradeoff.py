"""Accuracy against speed of the search backends (the analogue of thesis Table 2.1).

Every :data:`~irbook.search.index.INDEX_KINDS` backend is built once on a labelled database
and queried at several settings of its query parameter (:data:`SWEEPS`). Each setting is a
point: the mean AP of the top ``k`` results (relevance = same label, :func:`map_at_k`), the
recall@10 of the exact neighbours, and the milliseconds per query of ``repeats`` timed
searches. The binary backend searches sign codes of a seeded random rotation of the vectors
(``n_bits`` = dimension; sign random projections). Build parameters follow FAISS's guidance:
``nlist`` the power of two nearest 4·sqrt(N), PQ with one byte per 8 dimensions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .index import build_index, recall_at

__all__ = ["SWEEPS", "build_params", "map_at_k", "settings_of", "sign_codes_of",
           "sweep_backends"]

SWEEPS: dict[str, list[dict[str, int]]] = {
    "exact": [{}],
    "ivf_flat": [{"nprobe": p} for p in (1, 4, 16, 64)],
    "ivf_pq": [{"nprobe": p} for p in (1, 4, 16, 64)],
    "hnsw": [{"ef_search": e} for e in (16, 64, 256)],
    "binary": [{}],
}
"""The query settings of every backend: one point each."""


def map_at_k(ids: np.ndarray, db_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """Per-query AP (percent) of the top-k lists ``ids`` (Q, k): the sum of precision@i over
    the relevant ranks i ≤ k, divided by min(k, number of relevant items); ids of -1 (padding)
    count as wrong. Queries without relevant items give NaN."""
    ids = np.asarray(ids)
    db_labels, query_labels = np.asarray(db_labels), np.asarray(query_labels)
    if ids.ndim != 2 or len(ids) != len(query_labels):
        raise ValueError(f"ids must be (Q, k) with Q = {len(query_labels)} queries; got "
                         f"{ids.shape}")
    hits = (ids >= 0) & (db_labels[np.clip(ids, 0, None)] == query_labels[:, None])
    ranks = np.arange(1, ids.shape[1] + 1)
    precision = np.cumsum(hits, axis=1) / ranks
    relevant = (db_labels[None, :] == query_labels[:, None]).sum(axis=1)
    denominator = np.minimum(ids.shape[1], relevant).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * hits).sum(axis=1) / denominator
    return np.where(relevant > 0, 100 * ap, np.nan)


def build_params(n: int, dim: int) -> dict[str, dict[str, int]]:
    """Build parameters of every approximate backend for ``n`` vectors of ``dim``."""
    nlist = max(1, min(n // 39, 2 ** round(math.log2(4 * math.sqrt(n)))))
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return {"exact": {}, "ivf_flat": {"nlist": nlist}, "ivf_pq": {"nlist": nlist, "m": m},
            "hnsw": {"M": 32, "ef_construction": 40}, "binary": {}}


def sign_codes_of(vectors: np.ndarray, seed: int) -> np.ndarray:
    """{0, 1} codes (N, dim) as int8 (uint8 would read as packed codes): the signs of a seeded
    random rotation of the vectors."""
    dim = vectors.shape[1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (vectors @ rotation.astype(np.float32) > 0).astype(np.int8)


def _timed(index: Any, queries: np.ndarray, k: int, params: Mapping[str, int],
           repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids of one search and the ms per query of each of ``repeats`` timed searches."""
    _, ids = index.search(queries, k, **params)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        index.search(queries, k, **params)
        times.append(1000 * (time.perf_counter() - started) / len(queries))
    return ids, np.asarray(times)


def settings_of(kind: str, build: Mapping[str, int]) -> list[dict[str, int]]:
    """:data:`SWEEPS` of ``kind`` with ``nprobe`` clipped to ``nlist`` (duplicates dropped)."""
    out = []
    for params in SWEEPS[kind]:
        if "nprobe" in params:
            params = {"nprobe": min(params["nprobe"], build["nlist"])}
        if params not in out:
            out.append(params)
    return out


def _label(kind: str, params: Mapping[str, int]) -> str:
    return kind + "".join(f" {name}={value}" for name, value in params.items())


def sweep_backends(database: np.ndarray, queries: np.ndarray, db_labels: np.ndarray,
                   query_labels: np.ndarray, *, k: int = 100, repeats: int = 3, seed: int = 0,
                   kinds: Sequence[str] = tuple(SWEEPS)) -> tuple[pd.DataFrame, dict]:
    """Every setting of :data:`SWEEPS` for ``kinds``: a table (backend, setting, mAP@k,
    recall@10, ms per query, build s, MB) and, per setting, the per-query AP and the timed
    repeats (``{setting: {"ap": (Q,), "ms": (repeats,)}}``) for the claims' bootstrap."""
    exact = build_index(database, "exact")
    true_ids = exact.search(queries, 10)[1]
    build = build_params(len(database), database.shape[1])
    rows, per_setting = [], {}
    for kind in kinds:
        data, asked = ((sign_codes_of(database, seed), sign_codes_of(queries, seed))
                       if kind == "binary" else (database, queries))
        started = time.perf_counter()
        index = build_index(data, kind, seed=seed, **build[kind])
        built = time.perf_counter() - started
        for params in settings_of(kind, build[kind]):
            ids, ms = _timed(index, asked, k, params, repeats)
            ap = map_at_k(ids, db_labels, query_labels)
            label = _label(kind, params)
            per_setting[label] = {"ap": ap, "ms": ms}
            rows.append({"backend": kind, "setting": label, "mAP@k": float(np.nanmean(ap)),
                         "recall@10": recall_at(ids, true_ids, 10),
                         "ms per query": float(np.median(ms)), "build s": built,
                         "MB": index.memory_bytes() / 2**20})
    return pd.DataFrame(rows), per_setting
