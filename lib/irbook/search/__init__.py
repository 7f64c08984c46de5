"""Nearest-neighbour search over embeddings."""

from .index import INDEX_KINDS, INDEX_PARAMS, Index, build_index, recall_at
from .knn import (
    BACKENDS,
    METRICS,
    describe_backend,
    knn,
    rank_all,
    resolve_backend,
    top_k_excluding_self,
)
from .rerank import (
    DiffusionGraph,
    alpha_query_expansion,
    average_query_expansion,
    build_diffusion_graph,
    diffusion_rank,
    diffusion_scores,
    diffusion_seeds,
    expand_queries,
)
from .sharded import (
    SHARDED_KINDS,
    OnDiskIndex,
    ShardedIndex,
    build_ondisk_ivfpq,
    build_sharded_index,
    load_ondisk_index,
    shard_bounds,
)

__all__ = [
    "INDEX_KINDS",
    "INDEX_PARAMS",
    "Index",
    "build_index",
    "recall_at",
    "SHARDED_KINDS",
    "OnDiskIndex",
    "ShardedIndex",
    "build_ondisk_ivfpq",
    "build_sharded_index",
    "load_ondisk_index",
    "shard_bounds",
    "BACKENDS",
    "METRICS",
    "DiffusionGraph",
    "alpha_query_expansion",
    "average_query_expansion",
    "build_diffusion_graph",
    "describe_backend",
    "diffusion_rank",
    "diffusion_scores",
    "diffusion_seeds",
    "expand_queries",
    "knn",
    "rank_all",
    "resolve_backend",
    "top_k_excluding_self",
]
