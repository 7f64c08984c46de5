"""Speed of the search layer and of the fast mAP, against the libraries underneath.

1. Every backend of :mod:`irbook.search.index` against the same raw FAISS index built with the
   same parameters (clustered data, N = 100k, d = 512, Q = 1,000, k = 100; binary: d-bit sign
   codes against ``faiss.IndexBinaryFlat`` with ``use_heap = False``). A/B timings alternate;
   the median of at least ``--repeats`` rounds (more for fast backends) is kept. Prints
   ``<backend> ratio <irbook QPS / raw QPS>`` and a line with both QPS and recall@10 against
   exact search.
2. :func:`irbook.metrics.fast_map.map_from_scores` against torchmetrics ``RetrievalMAP`` on
   full rankings of positive scores ((cos + 1) / 2): prints ``map ratio <speed-up>``.
3. With CUDA: exact torch search over 10M x d float16 vectors, its QPS and the fraction of the
   GEMM bound and of the memory-bandwidth bound (both measured on the device).

Exit code 1 when a ratio is below ``--min-ratio``, the mAP speed-up below
``--min-map-speedup``, or the two mAP values differ by more than 1e-4.

    .venv/bin/python tools/bench_search.py
    .venv/bin/python tools/bench_search.py --n 2000 --queries 50 --dim 32 --k 10
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if importlib.util.find_spec("irbook") is None:  # a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from irbook.data.synth.vectors import (  # noqa: E402
    clustered_queries,
    clustered_vectors,
    relevance_by_cluster,
)
from irbook.metrics.fast_map import map_from_scores  # noqa: E402
from irbook.search.binary import pack_codes  # noqa: E402
from irbook.search.index import INDEX_KINDS, build_index, recall_at  # noqa: E402

SEARCH_CLUSTER_SIZE = 100  # search data: N / 100 clusters ...
SEARCH_SPREAD = 0.5  # ... of noise norm 0.5: tight, well separated clusters
MAP_CLUSTERS = 100  # mAP data: 1% of the database relevant to each query ...
MAP_SPREAD = 2.7  # ... with noise norm 2.7: an mAP near 0.5
MAP_TOLERANCE = 1e-4
PARTS = ("search", "map", "gpu")
MIN_TIMED_SECONDS = 1.5  # timed seconds per side of an A/B comparison ...
MAX_ROUNDS = 40  # ... within at most this many rounds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_search.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="database size")
    parser.add_argument("--queries", type=int, default=1_000, help="number of queries")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension (binary: bits)")
    parser.add_argument("--k", type=int, default=100, help="neighbours per query")
    parser.add_argument("--repeats", type=int, default=7,
                        help="minimum timed A/B rounds per backend (more for fast ones)")
    parser.add_argument("--seed", type=int, default=0, help="data and index seed")
    parser.add_argument("--gpu-n", type=int, default=10_000_000, help="database size on CUDA")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    parser.add_argument("--min-ratio", type=float, default=0.9,
                        help="fail when irbook QPS / raw FAISS QPS is below this")
    parser.add_argument("--min-map-speedup", type=float, default=4.0,
                        help="fail when map_from_scores is not this much faster than "
                             "torchmetrics RetrievalMAP")
    return parser


def index_params(kind: str, n: int, dim: int) -> dict[str, int]:
    """Parameters of each backend, scaled down with the database (full size: nlist 1024)."""
    nlist = min(1024, 1 << max(2, (n // 39).bit_length() - 1))
    if kind == "ivf_flat":
        return {"nlist": nlist, "nprobe": min(nlist, max(4, nlist // 64))}
    if kind == "ivf_pq":
        m = max(d for d in range(1, 65) if dim % d == 0 and d <= max(1, dim // 8))
        return {"nlist": nlist, "m": m, "nbits": 8, "nprobe": min(nlist, max(4, nlist // 64))}
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 40, "ef_search": 64}
    return {}


def raw_faiss_index(kind: str, database: np.ndarray, params: dict[str, int], seed: int) -> Any:
    """The FAISS index of ``kind`` built directly, with the same parameters as irbook's."""
    import faiss

    n, dim = database.shape
    if kind == "binary":
        index = faiss.IndexBinaryFlat(8 * database.shape[1])
        index.use_heap = False
    elif kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    else:
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"],
                                       faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"],
                                     params["nbits"], faiss.METRIC_INNER_PRODUCT)
            index.pq.cp.seed = seed
        index.cp.seed = seed
        index.nprobe = params["nprobe"]
        index.train(database)
    index.add(database)
    return index


def paired_medians(first: Callable[[], Any], second: Callable[[], Any],
                   repeats: int) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, timed alternately after one warm-up each.

    At least ``repeats`` rounds, more for fast calls (about ``MIN_TIMED_SECONDS`` per side, at
    most ``MAX_ROUNDS``): a busy machine makes single short timings noisy.
    """
    start = time.perf_counter()
    first(), second()
    warm_up = (time.perf_counter() - start) / 2
    rounds = max(repeats, min(MAX_ROUNDS, math.ceil(MIN_TIMED_SECONDS / max(warm_up, 1e-9))))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for call, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_backend(kind: str, data: dict[str, np.ndarray], args: argparse.Namespace) -> float:
    """Print the ratio line and the context line of one backend; return the QPS ratio."""
    binary = kind == "binary"
    database = data["codes"] if binary else data["database"]
    queries = data["query_codes"] if binary else data["queries"]
    params = index_params(kind, *data["database"].shape)
    index = build_index(database, kind, seed=args.seed, **params)
    raw = raw_faiss_index(kind, database, params, args.seed)
    k = min(args.k, database.shape[0])
    ours, theirs = paired_medians(lambda: index.search(queries, k),
                                  lambda: raw.search(queries, k), args.repeats)
    ratio = theirs / ours
    ids = index.search(queries, k)[1]
    recall = recall_at(ids, data["exact_ids"], min(10, k))
    n_queries = queries.shape[0]
    print(f"{kind} ratio {ratio:.2f}")
    print(f"  {kind}: irbook {n_queries / ours:,.0f} QPS, raw faiss {n_queries / theirs:,.0f} "
          f"QPS, recall@10 {recall:.3f} vs exact float search; {index.describe()}")
    return ratio


def search_data(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Clustered database and queries, their sign codes, and the exact top-k ids."""
    n_clusters = max(2, args.n // SEARCH_CLUSTER_SIZE)
    database, _ = clustered_vectors(args.n, args.dim, n_clusters, args.seed, SEARCH_SPREAD)
    queries, _ = clustered_queries(args.queries, args.dim, n_clusters, args.seed, SEARCH_SPREAD)
    exact = build_index(database, "exact")
    return {"database": database, "queries": queries, "codes": pack_codes(database > 0),
            "query_codes": pack_codes(queries > 0),
            "exact_ids": exact.search(queries, min(args.k, args.n))[1]}


def torchmetrics_map(scores: torch.Tensor, relevance: torch.Tensor) -> float:
    """torchmetrics RetrievalMAP over the full rankings (one group per query)."""
    from torchmetrics.retrieval import RetrievalMAP

    n_queries, n_database = scores.shape
    indexes = torch.arange(n_queries).repeat_interleave(n_database)
    metric = RetrievalMAP()
    metric.update(scores.reshape(-1), relevance.reshape(-1), indexes=indexes)
    return float(metric.compute())


def median_seconds(call: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``call`` over ``repeats`` runs, and the value of the last run."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def bench_map(args: argparse.Namespace) -> tuple[float, bool]:
    """Print the mAP comparison; return (speed-up, whether the two values agree)."""
    database, db_labels = clustered_vectors(args.n, args.dim, MAP_CLUSTERS, args.seed,
                                            MAP_SPREAD)
    queries, q_labels = clustered_queries(args.queries, args.dim, MAP_CLUSTERS, args.seed,
                                          MAP_SPREAD)
    scores = (torch.from_numpy(queries) @ torch.from_numpy(database).T).add_(1.0).mul_(0.5)
    relevance = torch.from_numpy(relevance_by_cluster(q_labels, db_labels))
    torchmetrics_map(scores[:2, :10], relevance[:2, :10])  # warm-up: imports, first calls
    map_from_scores(scores[:2, :10], relevance[:2, :10])
    theirs, theirs_value = median_seconds(lambda: torchmetrics_map(scores, relevance), 1)
    ours, ours_value = median_seconds(lambda: map_from_scores(scores, relevance), 3)
    agree = abs(ours_value - theirs_value) <= MAP_TOLERANCE
    print(f"map ratio {theirs / ours:.2f}")
    print(f"  map: map_from_scores {ours_value:.6f} in {ours:.2f} s, torchmetrics RetrievalMAP "
          f"{theirs_value:.6f} in {theirs:.2f} s ({scores.shape[0]} x {scores.shape[1]}); "
          f"{'agree' if agree else 'DISAGREE'} to {MAP_TOLERANCE:g}")
    return theirs / ours, agree


def _timed(call: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``call`` on ``device`` (synchronised), after one warm-up."""
    call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_peaks(device: torch.device, dtype: torch.dtype, gemm_size: int,
                 copy_elements: int) -> tuple[float, float]:
    """Measured (GEMM FLOP/s, memory bytes/s) of ``device``: a square matmul, a large copy."""
    a = torch.randn((gemm_size, gemm_size), device=device).to(dtype)
    gemm_time = _timed(lambda: a @ a, device, 5)
    source = torch.empty(copy_elements, dtype=dtype, device=device)
    target = torch.empty_like(source)
    copy_time = _timed(lambda: target.copy_(source), device, 5)
    bytes_moved = 2 * source.element_size() * copy_elements  # read and write
    return 2 * gemm_size ** 3 / gemm_time, bytes_moved / copy_time


def random_unit_rows(n: int, dim: int, dtype: torch.dtype, device: torch.device,
                     seed: int) -> torch.Tensor:
    """``(n, dim)`` random unit vectors made on ``device`` in slices (no host copy)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty((n, dim), dtype=dtype, device=device)
    for start in range(0, n, 1 << 20):
        block = torch.randn((min(1 << 20, n - start), dim), generator=generator, device=device)
        out[start:start + block.shape[0]] = torch.nn.functional.normalize(block, dim=1)
    return out


def bench_gpu_exact(n: int, dim: int, n_queries: int, k: int, device: str = "cuda",
                    dtype: torch.dtype = torch.float16, gemm_size: int = 8192) -> float:
    """Print QPS of exact torch search over ``n`` vectors and its fraction of the GEMM and
    memory-bandwidth bounds; return the QPS."""
    device = torch.device(device)
    database = random_unit_rows(n, dim, dtype, device, seed=0)
    queries = random_unit_rows(n_queries, dim, dtype, device, seed=1)
    index = build_index(database, "exact", backend="torch", device=device)
    seconds = _timed(lambda: index.search(queries, k), device, 3)
    flops, bandwidth = device_peaks(device, dtype, gemm_size, min(n * dim, 1 << 30))
    gemm_bound = 2 * n_queries * n * dim / flops
    memory_bound = database.element_size() * n * dim / bandwidth  # the database read once
    print(f"gpu exact: {n_queries / seconds:,.0f} QPS over N={n:,} d={dim} {dtype} on "
          f"{device} (k={k}); {gemm_bound / seconds:.2f} of the GEMM bound "
          f"({flops / 1e12:.1f} TFLOP/s measured), {memory_bound / seconds:.2f} of the "
          f"memory-bandwidth bound ({bandwidth / 1e9:.0f} GB/s measured)")
    return n_queries / seconds


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts must be a comma-separated subset of {', '.join(PARTS)}")
    failures = []
    if "search" in parts:
        data = search_data(args)
        for kind in INDEX_KINDS:
            if bench_backend(kind, data, args) < args.min_ratio:
                failures.append(f"{kind} ratio below {args.min_ratio}")
    if "map" in parts:
        speedup, agree = bench_map(args)
        if speedup < args.min_map_speedup:
            failures.append(f"map speed-up below {args.min_map_speedup}")
        if not agree:
            failures.append("map values disagree")
    if "gpu" in parts and torch.cuda.is_available():
        bench_gpu_exact(args.gpu_n, args.dim, args.queries, args.k)
    elif "gpu" in parts:
        print("gpu: none (skipped)")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
