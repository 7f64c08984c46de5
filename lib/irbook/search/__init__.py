"""Nearest-neighbour search over embeddings."""

from .knn import BACKENDS, METRICS, describe_backend, knn, rank_all, resolve_backend

__all__ = ["BACKENDS", "METRICS", "describe_backend", "knn", "rank_all", "resolve_backend"]
