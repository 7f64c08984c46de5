"""Query-time re-ranking of a first search: query expansion and kNN-graph diffusion.

Both are unsupervised refinements of a ranking (thesis chapter 2, Sec. 2.4.2.1 and Fig. 2.11,
where diffusion over a kNN affinity graph is the manifold-learning step): query expansion
rebuilds the query from its top results and searches again; diffusion propagates the query's
similarities along the database's kNN graph, so that images reached through chains of close
neighbours rank high even when they are far from the query itself.

Inputs are numpy arrays or torch tensors of L2-normalised descriptors (rows); outputs are
numpy. Neighbours come from :func:`irbook.search.knn.knn` (inner product).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, cg

from irbook.search.knn import knn

__all__ = [
    "DiffusionGraph",
    "alpha_query_expansion",
    "average_query_expansion",
    "build_diffusion_graph",
    "diffusion_rank",
    "diffusion_scores",
    "diffusion_seeds",
    "expand_queries",
]


# --------------------------------------------------------------------------- validation


def _as_vectors(array: Any, name: str) -> np.ndarray:
    """A float32 (n, dim) numpy copy of a numpy array or torch tensor, finite, n and dim >= 1."""
    if type(array).__module__.startswith("torch"):
        array = array.detach().cpu().numpy()
    result = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    if result.ndim != 2 or result.shape[0] == 0 or result.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (n, dim) array, got shape "
                         f"{result.shape}")
    if not np.isfinite(result).all():
        raise ValueError(f"{name} must hold finite values (no NaN or inf)")
    return result


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value: Any, name: str, allowed: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float when it is a finite real number with ``ok(value)``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value) or not ok(value):
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    return value


def _l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ------------------------------------------------------------------------- query expansion


def _neighbour_indices(ranks_or_knn: Any, queries: np.ndarray, database: np.ndarray, n: int,
                       backend: str) -> np.ndarray:
    """The first ``n`` database indices of every query's initial ranking, (Q, n) int64."""
    n_queries, n_database = queries.shape[0], database.shape[0]
    if n > n_database:
        raise ValueError(f"n must be <= the number of database vectors ({n_database}), got {n}")
    if n == 0:
        return np.zeros((n_queries, 0), dtype=np.int64)
    if ranks_or_knn is None:
        return knn(queries, database, n, metric="ip", backend=backend)[1]
    indices = ranks_or_knn[1] if isinstance(ranks_or_knn, tuple) else ranks_or_knn
    if type(indices).__module__.startswith("torch"):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[0] != n_queries or indices.shape[1] < n:
        raise ValueError(f"ranks_or_knn must hold (Q={n_queries}, >= n={n}) database indices, "
                         f"got shape {indices.shape}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"ranks_or_knn must hold integer indices, got dtype {indices.dtype}")
    top = indices[:, :n].astype(np.int64)
    if top.min() < 0 or top.max() >= n_database:
        raise ValueError(f"ranks_or_knn indices must lie in [0, {n_database}), got "
                         f"{top.min()}..{top.max()}")
    return top


def expand_queries(query_vecs: Any, db_vecs: Any, ranks_or_knn: Any = None, n: int = 10,
                   alpha: float = 0.0, backend: str = "auto") -> np.ndarray:
    """Expanded queries, (Q, dim) float32, rows L2-normalised.

    ``q' = normalise(q + sum_{i<n} w_i x_(i))`` over the query's top-``n`` database vectors
    ``x_(i)`` with ``w_i = max(0, q . x_(i))^alpha``: ``alpha = 0`` gives AQE (all weights 1,
    the plain average of Chum et al. 2007), ``alpha > 0`` gives alpha-QE (Radenović et al.
    2018). The query's own weight is 1, which is ``(q . q)^alpha`` for a unit-norm query.
    Negative similarities are clamped at 0 so that a non-integer ``alpha`` stays defined.

    ``ranks_or_knn`` is the initial ranking: ``None`` (searched here with :func:`knn`), an
    integer array (Q, >= n) of database indices best first, or the ``(scores, indices)``
    tuple that :func:`knn` returns (only its indices are used; the weights are recomputed
    from the vectors). ``n = 0`` returns the normalised queries.
    """
    queries = _as_vectors(query_vecs, "query_vecs")
    database = _as_vectors(db_vecs, "db_vecs")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"query_vecs and db_vecs must have the same dim, got "
                         f"{queries.shape[1]} and {database.shape[1]}")
    n = _check_int(n, "n", 0)
    alpha = _check_real(alpha, "alpha", ">= 0", lambda a: a >= 0)
    top = _neighbour_indices(ranks_or_knn, queries, database, n, backend)
    neighbours = database[top].astype(np.float64)  # (Q, n, dim)
    similarities = np.einsum("qd,qnd->qn", queries.astype(np.float64), neighbours)
    weights = np.maximum(similarities, 0.0) ** alpha  # 0 ** 0 = 1: AQE keeps every neighbour
    expanded = queries + np.einsum("qn,qnd->qd", weights, neighbours)
    return _l2_rows(expanded).astype(np.float32)


def _search_all(queries: np.ndarray, db_vecs: Any, k: int | None,
                backend: str) -> tuple[np.ndarray, np.ndarray]:
    database = _as_vectors(db_vecs, "db_vecs")
    k = database.shape[0] if k is None else _check_int(k, "k", 1)
    return knn(queries, database, k, metric="ip", backend=backend)


def average_query_expansion(query_vecs: Any, db_vecs: Any, ranks_or_knn: Any = None,
                            n: int = 10, k: int | None = None,
                            backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Average query expansion (AQE, Chum et al. 2007), then a second search.

    The query and its top-``n`` database vectors are averaged, re-normalised and searched
    again (see :func:`expand_queries`, ``alpha = 0``). ``n = 10`` is a common choice, not a
    value from the thesis. Returns ``(scores float32 (Q, k), indices int64 (Q, k))`` of the
    second search, best first; ``k = None`` ranks the whole database.
    """
    expanded = expand_queries(query_vecs, db_vecs, ranks_or_knn, n, 0.0, backend)
    return _search_all(expanded, db_vecs, k, backend)


def alpha_query_expansion(query_vecs: Any, db_vecs: Any, ranks_or_knn: Any = None,
                          n: int = 10, alpha: float = 3.0, k: int | None = None,
                          backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Alpha query expansion (alpha-QE, Radenović et al. 2018), then a second search.

    Like :func:`average_query_expansion` but neighbour ``i`` weighs ``max(0, q . x_(i))^alpha``
    (``alpha = 3`` as in Radenović et al.), so that lower-ranked, less similar results count
    less. Returns ``(scores float32 (Q, k), indices int64 (Q, k))`` of the second search.
    """
    alpha = _check_real(alpha, "alpha", ">= 0", lambda a: a >= 0)
    expanded = expand_queries(query_vecs, db_vecs, ranks_or_knn, n, alpha, backend)
    return _search_all(expanded, db_vecs, k, backend)


# ------------------------------------------------------------------------------- diffusion


@dataclass(frozen=True)
class DiffusionGraph:
    """Offline part of diffusion: the database and its normalised kNN affinity matrix.

    ``transition`` is ``S = D^(-1/2) A D^(-1/2)`` (N, N), float64 CSR, symmetric;
    ``k``, ``gamma`` and ``mutual`` are the settings it was built with.
    """

    db_vecs: np.ndarray
    transition: sparse.csr_matrix
    k: int
    gamma: float
    mutual: bool


def _symmetric_normalise(affinity: sparse.csr_matrix) -> sparse.csr_matrix:
    """``D^(-1/2) A D^(-1/2)`` with ``D`` the degrees; isolated nodes get a zero row."""
    degrees = np.asarray(affinity.sum(axis=1)).ravel()
    scale = np.zeros_like(degrees)
    scale[degrees > 0] = degrees[degrees > 0] ** -0.5
    scaling = sparse.diags(scale)
    return sparse.csr_matrix(scaling @ affinity @ scaling)


def build_diffusion_graph(db_vecs: Any, k: int = 50, gamma: float = 3.0, mutual: bool = True,
                          backend: str = "auto") -> DiffusionGraph:
    """The kNN graph of Iscen et al. (CVPR 2017, global-descriptor setting), built offline.

    Choices, following the authors' public MATLAB code (``knngraph.m``,
    ``transition_matrix.m``): each vector's ``k`` nearest database vectors by inner product
    are listed *including the vector itself* (``k = 50`` for global descriptors); edge
    ``(i, j)`` weighs ``a_ij = max(0, x_i . x_j)^gamma`` (``gamma = 3``); with ``mutual`` an
    edge is kept only when ``i`` and ``j`` list each other (weight ``min(a_ij, a_ji)``),
    without it when either lists the other (``max``, a symmetrised plain kNN graph);
    self-loops are removed; ``S = D^(-1/2) A D^(-1/2)`` with ``D`` the row sums of ``A``
    (a node left without edges keeps a zero row; the MATLAB code would divide by zero).
    """
    database = _as_vectors(db_vecs, "db_vecs")
    k = min(_check_int(k, "k", 1), database.shape[0])
    gamma = _check_real(gamma, "gamma", "> 0", lambda g: g > 0)
    scores, indices = knn(database, database, k, metric="ip", backend=backend)
    n_database = database.shape[0]
    rows = np.repeat(np.arange(n_database), k)
    weights = np.maximum(scores.astype(np.float64).ravel(), 0.0) ** gamma
    directed = sparse.csr_matrix((weights, (rows, indices.ravel())),
                                 shape=(n_database, n_database))
    affinity = directed.minimum(directed.T) if mutual else directed.maximum(directed.T)
    affinity = sparse.csr_matrix(affinity)
    affinity.setdiag(0.0)
    affinity.eliminate_zeros()
    return DiffusionGraph(database, _symmetric_normalise(affinity), k, gamma, bool(mutual))


def diffusion_seeds(graph: DiffusionGraph, query_vecs: Any, k_query: int = 10,
                    backend: str = "auto") -> np.ndarray:
    """The vectors ``y`` (Q, N) float64 that start the diffusion of each query.

    As in the authors' ``ymake.m``: the query's ``k_query`` nearest database vectors
    (``k_query = 10`` for global descriptors) get ``max(0, q . x_j)^gamma`` with the graph's
    ``gamma``; every other entry is 0. The query is not added to the graph.
    """
    queries = _as_vectors(query_vecs, "query_vecs")
    k_query = _check_int(k_query, "k_query", 1)
    scores, indices = knn(queries, graph.db_vecs, k_query, metric="ip", backend=backend)
    seeds = np.zeros((queries.shape[0], graph.db_vecs.shape[0]), dtype=np.float64)
    values = np.maximum(scores.astype(np.float64), 0.0) ** graph.gamma
    np.put_along_axis(seeds, indices, values, axis=1)
    return seeds


def diffusion_scores(graph: DiffusionGraph, query_vecs: Any, k_query: int = 10,
                     alpha: float = 0.99, iterations: int = 20, tol: float = 1e-6,
                     backend: str = "auto") -> np.ndarray:
    """Diffused similarities ``f`` (Q, N) float64: the solution of ``(I - alpha S) f = y``.

    ``y`` comes from :func:`diffusion_seeds`. The system is symmetric positive definite for
    ``0 < alpha < 1`` and is solved per query by conjugate gradient
    (``scipy.sparse.linalg.cg``) from ``f = 0``, stopping after ``iterations`` steps or when
    the residual norm falls below ``tol`` times that of ``y``. The defaults ``alpha = 0.99``,
    20 iterations and ``tol = 1e-6`` are those of the authors' ``run_test.m`` (MATLAB ``pcg``,
    whose tolerance is relative in the same way). ``I - alpha S`` is applied as an operator,
    so nothing of size N x N is built at query time.
    """
    alpha = _check_real(alpha, "alpha", "in (0, 1)", lambda a: 0 < a < 1)
    iterations = _check_int(iterations, "iterations", 1)
    tol = _check_real(tol, "tol", "> 0", lambda t: t > 0)
    seeds = diffusion_seeds(graph, query_vecs, k_query, backend)
    transition = graph.transition
    size = transition.shape[0]
    system = LinearOperator((size, size), dtype=np.float64,
                            matvec=lambda f: f - alpha * (transition @ f))
    scores = np.zeros_like(seeds)
    for row, seed in enumerate(seeds):
        scores[row], _ = cg(system, seed, rtol=tol, atol=0.0, maxiter=iterations)
    return scores


def diffusion_rank(graph: DiffusionGraph, query_vecs: Any, k_query: int = 10,
                   alpha: float = 0.99, iterations: int = 20, tol: float = 1e-6,
                   top_k: int | None = None,
                   backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Database ranking by diffused similarity: ``(f float32 (Q, top_k), indices int64)``.

    Online part of Iscen et al.'s diffusion (see :func:`diffusion_scores` for the settings).
    Items with equal ``f`` (in practice those the diffusion never reached, ``f = 0``) are
    ordered by their plain similarity to the query, a tie-break the reference code leaves
    to the sort. ``top_k = None`` ranks the whole database.
    """
    scores = diffusion_scores(graph, query_vecs, k_query, alpha, iterations, tol, backend)
    queries = _as_vectors(query_vecs, "query_vecs")
    plain = queries.astype(np.float64) @ graph.db_vecs.astype(np.float64).T
    order = np.lexsort((-plain, -scores), axis=1)
    if top_k is not None:
        order = order[:, : _check_int(top_k, "top_k", 1)]
    ranked = np.take_along_axis(scores, order, axis=1)
    return ranked.astype(np.float32), order.astype(np.int64)
