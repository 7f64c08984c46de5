"""One build/query API over FAISS indexes: exact, IVF-Flat, IVF-PQ, HNSW and binary Hamming.

``build_index(database, kind, metric, **params)`` returns an :class:`Index` whose ``search``
follows the conventions of :func:`irbook.search.knn`: ``(scores float32 (Q, k), ids int64
(Q, k))``, best first; inner products descending for ``metric="ip"``, squared L2 distances
ascending for ``metric="l2"``; for ``kind="binary"`` int32 Hamming distances ascending (the
codes of :mod:`irbook.search.binary`). ``k`` is clipped to the database size; an approximate
index that finds fewer than ``k`` candidates (IVF with a small ``nprobe``) pads with id -1
(score -FLT_MAX for ``"ip"``, FLT_MAX for ``"l2"``).

Parameters (:data:`INDEX_PARAMS`): build parameters are fixed when the index is built; query
parameters (``nprobe``, ``ef_search``) get their default at build time and can be changed per
``search`` call (passed to FAISS as ``SearchParameters``, the index itself is not modified).

- ``exact``: ``IndexFlatIP``/``IndexFlatL2`` (``backend="faiss"``), or the chunked torch search
  of :mod:`irbook.search.knn` (``backend="torch"``, for a GPU without FAISS; a CUDA float16 or
  bfloat16 database tensor is kept in that dtype).
- ``ivf_flat``: ``nlist`` k-means cells, ``nprobe`` visited per query (an inverted
  file); the quantizer is trained on ``train_size`` sampled vectors (default all, at most
  256 x nlist), k-means seeded by ``seed``.
- ``ivf_pq``: IVF with residuals product-quantized into ``m`` sub-vectors of ``nbits`` bits.
- ``hnsw``: ``IndexHNSWFlat`` with ``M`` links per node, ``ef_construction``, ``ef_search``.
  With ``ef_search < k`` FAISS silently enlarges its candidate queue to ``k``, but its stopping
  rule still uses ``ef_search``: measured here (FAISS 1.15), recall@20 at ``ef_search = 1`` is
  far below that at ``ef_search = 20``, so ``ef_search < k`` is not the same as ``= k``;
  :meth:`Index.describe` notes it when it happens.
- ``binary``: ``IndexBinaryFlat`` with ``use_heap = False`` (faster for k = 100, REFERENCE_
  PROTOCOLS "Library pitfalls"). The database is ±1 / {0, 1} codes ``(N, n_bits)`` or, when the
  array's dtype is ``uint8``, codes already packed by :func:`~irbook.search.binary.pack_codes`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .binary import as_bits
from .knn import (
    CHUNK_ELEMENTS,
    METRICS,
    _as_float32_numpy,
    _check_choice,
    _check_k,
    _is_torch,
    _score_block,
    _top_k_block,
    _torch_device,
    resolve_backend,
)

__all__ = ["INDEX_KINDS", "INDEX_PARAMS", "Index", "build_index", "recall_at"]

INDEX_KINDS = ("exact", "ivf_flat", "ivf_pq", "hnsw", "binary")
INDEX_PARAMS: dict[str, dict[str, dict[str, int]]] = {
    "exact": {"build": {}, "query": {}},
    "ivf_flat": {"build": {"nlist": 1024}, "query": {"nprobe": 16}},
    "ivf_pq": {"build": {"nlist": 1024, "m": 16, "nbits": 8}, "query": {"nprobe": 16}},
    "hnsw": {"build": {"M": 32, "ef_construction": 40}, "query": {"ef_search": 64}},
    "binary": {"build": {}, "query": {}},
}
BINARY_METRIC = "hamming"
TRAIN_PER_CENTROID = 256  # default training sample: at most this many vectors per IVF cell
MAX_CUDA_CHUNK_ELEMENTS = 1 << 32  # largest torch score block on a CUDA device


def _check_positive_int(value: Any, name: str) -> int:
    """A positive integer (NaN, negatives, zero, floats and bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _default_params(kind: str, which: tuple[str, ...] = ("build", "query")) -> dict[str, int]:
    return {name: value for group in which for name, value in INDEX_PARAMS[kind][group].items()}


def _resolve_params(kind: str, given: dict[str, Any], allowed: dict[str, int]) -> dict[str, int]:
    """``allowed`` (name -> default) updated by ``given``; unknown names and bad values refused."""
    for name in given:
        if name not in allowed:
            names = ", ".join(allowed) or "none"
            raise ValueError(f"unknown parameter {name!r} for kind {kind!r}; allowed: {names}")
    return {name: _check_positive_int(given.get(name, default), name)
            for name, default in allowed.items()}


def _check_build_params(params: dict[str, int], n: int, dim: int, train_size: int) -> None:
    """Constraints between parameters and the data that FAISS would otherwise abort on."""
    if "nlist" in params:
        if params["nlist"] > train_size:
            raise ValueError(f"nlist ({params['nlist']}) must be <= the number of training "
                             f"vectors ({train_size} of the {n} in the database)")
        if params["nprobe"] > params["nlist"]:
            raise ValueError(f"nprobe ({params['nprobe']}) must be <= nlist ({params['nlist']})")
    if "m" in params:
        if dim % params["m"]:
            raise ValueError(f"m ({params['m']}) must divide the dimension ({dim})")
        if params["nbits"] > 16 or 2 ** params["nbits"] > train_size:
            raise ValueError(f"nbits ({params['nbits']}) must be <= 16 with 2**nbits <= the "
                             f"number of training vectors ({train_size})")


def _training_sample(database: np.ndarray, train_size: int | None, nlist: int,
                     seed: int) -> np.ndarray:
    """``train_size`` rows drawn without replacement (default all, at most 256 x nlist)."""
    n = database.shape[0]
    size = min(n, TRAIN_PER_CENTROID * nlist) if train_size is None else train_size
    if size >= n:
        return database
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return database[rows]


def _faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def _new_float_index(kind: str, dim: int, metric: str, params: dict[str, int], seed: int) -> Any:
    """An empty (untrained) FAISS index of ``kind`` with seeded k-means."""
    import faiss

    if kind == "exact":
        return faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"], _faiss_metric(metric))
        index.hnsw.efConstruction = params["ef_construction"]
        return index
    quantizer = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
    if kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], _faiss_metric(metric))
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"],
                                 _faiss_metric(metric))
        index.pq.cp.seed = seed
    index.cp.seed = seed
    return index


def _binary_codes(codes: Any, name: str) -> np.ndarray:
    """Packed uint8 codes ``(n, n_bytes)``: uint8 arrays are taken as packed already."""
    if _is_torch(codes):
        codes = codes.detach().cpu().numpy()
    array = np.asarray(codes)
    if array.dtype == np.uint8:
        if array.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (n, n_bytes) array, got shape {array.shape}")
        return np.ascontiguousarray(array)
    return np.packbits(as_bits(array, name), axis=1)


def _cuda_chunk_elements(element_size: int) -> int:
    """Score-block size on CUDA: an eighth of the free memory, within [2**25, 2**32]."""
    import torch

    free_bytes, _ = torch.cuda.mem_get_info()
    return int(min(max(free_bytes // (8 * element_size), CHUNK_ELEMENTS),
                   MAX_CUDA_CHUNK_ELEMENTS))


class Index:
    """A built search index; use :func:`build_index` to make one."""

    def __init__(self, kind: str, metric: str, params: dict[str, int], engine: Any,
                 n_database: int, dim: int, backend: str = "faiss") -> None:
        self.kind, self.metric, self.params = kind, metric, dict(params)
        self.engine, self.backend = engine, backend  # FAISS index, or the torch database
        self.ntotal, self.dim = n_database, dim
        self._notes: list[str] = []
        self._sq_norms: Any = None  # torch l2: squared norms of the database, on first search
        self._search_params: dict[tuple, Any] = {}  # FAISS SearchParameters per query params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def search(self, queries: Any, k: int, **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query: ``(scores (Q, k), ids int64 (Q, k))``, best first.

        ``query_params`` (``nprobe`` for IVF, ``ef_search`` for HNSW) override the build-time
        defaults for this call only.
        """
        defaults = {name: self.params[name] for name in INDEX_PARAMS[self.kind]["query"]}
        params = _resolve_params(self.kind, query_params, defaults) if query_params else defaults
        k = _check_k(k, self.ntotal)
        if self.backend == "torch":
            return self._search_torch(queries, k)
        q = self._faiss_queries(queries)
        search_params = self._search_parameters(params, k)
        scores, ids = self.engine.search(q, k, params=search_params)
        if self.kind == "binary":
            return scores.astype(np.int32, copy=False), ids.astype(np.int64, copy=False)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def _faiss_queries(self, queries: Any) -> np.ndarray:
        if self.kind == "binary":
            q = _binary_codes(queries, "queries")
            width = 8 * q.shape[1]
        else:
            q = _as_float32_numpy(queries, "queries")
            width = q.shape[1]
        if width != self.dim:
            unit = "bits" if self.kind == "binary" else "dimensions"
            raise ValueError(f"queries have {width} {unit}, the index {self.dim}")
        return q

    def _search_parameters(self, params: dict[str, int], k: int) -> Any:
        """FAISS ``SearchParameters`` for ``params`` (made once per value, then reused)."""
        if not params:
            return None
        if "ef_search" in params:
            ef = params["ef_search"]
            self._notes = ([f"last search had ef_search {ef} < k {k}: FAISS raised the "
                            f"candidate queue to k but still stopped by ef_search, so recall "
                            f"stays below that of ef_search >= k"] if ef < k else [])
        key = tuple(params.items())
        if key not in self._search_params:
            self._search_params[key] = self._make_search_parameters(params)
        return self._search_params[key]

    def _make_search_parameters(self, params: dict[str, int]) -> Any:
        import faiss

        if "nprobe" in params:
            if params["nprobe"] > self.params["nlist"]:
                raise ValueError(f"nprobe ({params['nprobe']}) must be <= nlist "
                                 f"({self.params['nlist']})")
            return faiss.SearchParametersIVF(nprobe=params["nprobe"])
        return faiss.SearchParametersHNSW(efSearch=params["ef_search"])

    def _search_torch(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        database = self.engine
        if _is_torch(queries):
            q = queries.detach().to(device=database.device, dtype=database.dtype)
        else:
            q = torch.from_numpy(_as_float32_numpy(queries, "queries")).to(
                device=database.device, dtype=database.dtype)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (n, {self.dim}), got shape {tuple(q.shape)}")
        if self.metric == "l2" and self._sq_norms is None:
            norms = torch.linalg.vector_norm(database, dim=1, dtype=torch.float32)
            self._sq_norms = norms.square_().to(database.dtype)
        chunk_elements = (_cuda_chunk_elements(database.element_size())
                          if database.device.type == "cuda" else CHUNK_ELEMENTS)
        chunk = max(1, chunk_elements // self.ntotal)
        scores, ids = [], []
        with torch.no_grad():
            for start in range(0, q.shape[0], chunk):
                block = _score_block(q[start:start + chunk], database, self._sq_norms,
                                     self.metric)
                top_scores, top_ids = _top_k_block(block, k, self.metric == "ip", True)
                scores.append(top_scores.float())
                ids.append(top_ids)
        if not scores:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return torch.cat(scores).numpy(), torch.cat(ids).numpy().astype(np.int64, copy=False)

    def memory_bytes(self) -> int:
        """Size of the index: FAISS's serialization length, or the torch database's bytes."""
        if self.backend == "torch":
            return int(self.engine.element_size() * self.engine.nelement())
        import faiss

        if self.kind == "binary":
            return int(len(faiss.serialize_index_binary(self.engine)))
        return int(len(faiss.serialize_index(self.engine)))

    def _engine_text(self) -> str:
        """What searches: the torch device and dtype, or the FAISS version and index type."""
        if self.backend == "torch":
            return f"torch exact on {self.engine.device} ({self.engine.dtype})"
        import faiss

        return f"faiss {faiss.__version__} {type(self.engine).__name__}"

    def describe(self) -> str:
        """One line: engine, kind, metric, parameters, size, and notes of the last search."""
        engine = self._engine_text()
        settings = ", ".join(f"{name}={value}" for name, value in self.params.items())
        unit = "bits" if self.kind == "binary" else "dims"
        text = (f"{engine}: {self.kind}, metric {self.metric}"
                f"{'; ' + settings if settings else ''}; {self.ntotal} vectors of "
                f"{self.dim} {unit}")
        return "; ".join([text, *self._notes])


def _build_torch_exact(database: Any, metric: str, device: Any) -> Index:
    """Exact torch search over a float32 copy on ``device`` (default: the tensor's device, else
    CUDA when torch sees one); a float16/bfloat16 tensor bound for CUDA keeps its dtype."""
    import torch

    if _is_torch(database):
        tensor = database.detach()
        target = tensor.device if device is None else torch.device(device)
        keep = target.type == "cuda" and tensor.dtype in (torch.float16, torch.bfloat16)
        tensor = tensor.to(device=target, dtype=tensor.dtype if keep else torch.float32)
        tensor = tensor.contiguous()
    else:
        tensor = torch.from_numpy(_as_float32_numpy(database, "database"))
        tensor = tensor.to(_torch_device(device))
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(f"database must be a non-empty 2-D array, got shape "
                         f"{tuple(tensor.shape)}")
    return Index("exact", metric, {}, tensor, int(tensor.shape[0]), int(tensor.shape[1]),
                 backend="torch")


def _build_binary(database: Any) -> Index:
    import faiss

    codes = _binary_codes(database, "database")
    if codes.shape[0] == 0:
        raise ValueError("database must hold at least one code")
    index = faiss.IndexBinaryFlat(8 * codes.shape[1])
    index.use_heap = False
    index.add(codes)
    return Index("binary", BINARY_METRIC, {}, index, codes.shape[0], 8 * codes.shape[1])


def _float_database(database: Any) -> np.ndarray:
    """``database`` as float32 ``(N, d)`` numpy, non-empty and finite (checked in row blocks,
    so a memory-mapped array is not copied whole)."""
    vectors = _as_float32_numpy(database, "database")
    if vectors.shape[0] == 0:
        raise ValueError("database must hold at least one vector")
    rows = max(1, CHUNK_ELEMENTS // max(1, vectors.shape[1]))
    for start in range(0, vectors.shape[0], rows):
        if not np.isfinite(vectors[start:start + rows]).all():
            raise ValueError("database must hold finite values (no NaN or inf)")
    return vectors


def _check_train_size(train_size: Any, n: int) -> int | None:
    """``None`` (the default sample) or a positive integer, capped at ``n``."""
    return None if train_size is None else min(_check_positive_int(train_size, "train_size"), n)


def _trained_float_index(vectors: np.ndarray, kind: str, metric: str, params: dict[str, int],
                         seed: int, train_size: int | None) -> Any:
    """An empty FAISS index of ``kind``, trained on the seeded sample when it is an IVF."""
    n, dim = vectors.shape
    _check_build_params(params, n, dim, n if train_size is None else train_size)
    index = _new_float_index(kind, dim, metric, params, seed)
    if kind in ("ivf_flat", "ivf_pq"):
        index.train(_training_sample(vectors, train_size, params["nlist"], seed))
        index.nprobe = params["nprobe"]
    return index


def _build_float(database: Any, kind: str, metric: str, params: dict[str, int], seed: int,
                 train_size: int | None) -> Index:
    vectors = _float_database(database)
    n, dim = vectors.shape
    train_size = _check_train_size(train_size, n)
    index = _trained_float_index(vectors, kind, metric, params, seed, train_size)
    index.add(vectors)
    return Index(kind, metric, params, index, n, dim)


def _check_metric(kind: str, metric: str | None) -> str:
    """``metric`` or the default of ``kind`` (``"hamming"`` for binary, else ``"ip"``)."""
    if kind == "binary":
        metric = BINARY_METRIC if metric is None else metric
        return _check_choice(metric, (BINARY_METRIC,), "metric")
    metric = "ip" if metric is None else metric
    return _check_choice(metric, METRICS, "metric")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not (
            0 <= seed < 2 ** 31):
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    return int(seed)


def _kind_params(kind: str, params: dict[str, Any]) -> dict[str, int]:
    """Build and query parameters of ``kind``: defaults updated by ``params``, the default
    ``nprobe`` clipped to ``nlist``."""
    resolved = _resolve_params(kind, params, _default_params(kind))
    if "nprobe" in resolved and "nprobe" not in params:  # the default never exceeds nlist
        resolved["nprobe"] = min(resolved["nprobe"], resolved["nlist"])
    return resolved


def build_index(database: Any, kind: str, metric: str | None = None, *, seed: int = 0,
                train_size: int | None = None, backend: str = "auto", device: Any = None,
                **params: Any) -> Index:
    """Build an index of ``kind`` (one of :data:`INDEX_KINDS`) over ``database``.

    ``database``: (N, d) float vectors (numpy or torch), or binary codes for ``"binary"``.
    ``metric``: ``"ip"`` (default) or ``"l2"``; ``"hamming"`` (the only one) for ``"binary"``.
    ``params``: build and default query parameters of :data:`INDEX_PARAMS` (the default
    ``nprobe`` is clipped to ``nlist``); an unknown name or a value that is not a positive
    integer raises ``ValueError``. ``seed`` seeds the
    training sample and k-means of IVF; ``train_size`` caps the training sample (default all
    vectors, at most 256 x nlist). ``backend``/``device``: ``"exact"`` only (``"faiss"``,
    ``"torch"`` or ``"auto"`` as in :func:`~irbook.search.knn`).
    """
    _check_choice(kind, INDEX_KINDS, "kind")
    metric = _check_metric(kind, metric)
    seed = _check_seed(seed)
    resolved = _kind_params(kind, params)
    chosen = resolve_backend(backend)
    if kind != "exact" and backend not in ("auto", "faiss"):
        raise ValueError(f"backend={backend!r} is for kind 'exact' only; {kind!r} needs faiss")
    if kind == "exact" and chosen == "torch":
        return _build_torch_exact(database, metric, device)
    if chosen != "faiss":
        raise ValueError(f"kind {kind!r} needs the faiss package")
    if kind == "binary":
        return _build_binary(database)
    return _build_float(database, kind, metric, resolved, seed, train_size)


def recall_at(found_ids: np.ndarray, true_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the true top-``k`` ids that appear in the found top-``k`` (recall@k)."""
    found, true = np.asarray(found_ids)[:, :k], np.asarray(true_ids)[:, :k]
    if found.shape != true.shape:
        raise ValueError(f"found_ids and true_ids must give the same shape at k={k}, got "
                         f"{found.shape} and {true.shape}")
    hits = (found[:, :, None] == true[:, None, :]).any(axis=1).sum(axis=1)
    return float(np.mean(hits / max(1, true.shape[1]))) if true.size else math.nan
