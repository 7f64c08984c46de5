"""Nearest-neighbour search over embeddings."""

from .knn import (
    BACKENDS,
    METRICS,
    describe_backend,
    knn,
    rank_all,
    resolve_backend,
    top_k_excluding_self,
)

__all__ = ["BACKENDS", "METRICS", "describe_backend", "knn", "rank_all", "resolve_backend",
           "top_k_excluding_self"]
