"""Retrieval galleries and top-k precision for labelled test sets (query = gallery).

The neighbours come from top-k search (:func:`irbook.search.knn`, FAISS when installed), with
each query's own image removed; the figures themselves are drawn by :mod:`irbook.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..data.finegrained import LabelledSet
from ..data.images import load_image
from ..search import knn
from ..viz import GalleryRow


def query_neighbours(embeddings: np.ndarray, queries: Sequence[int], k: int = 10) -> np.ndarray:
    """(Q, k) indices of the ``k`` nearest items (inner product) of each query item, the query
    itself excluded."""
    embeddings, queries = np.asarray(embeddings), np.asarray(queries, dtype=np.int64)
    k = min(k, len(embeddings) - 1)
    if k < 1:
        raise ValueError("need at least two items to search among")
    _, top = knn(embeddings[queries], embeddings, k=k + 1, metric="ip")
    rows = []
    for query, row in zip(queries, top, strict=True):
        kept = row[row != query]
        rows.append(kept[:k])
    return np.stack(rows)


def marks(labels: np.ndarray, queries: Sequence[int], neighbours: np.ndarray) -> np.ndarray:
    """(Q, k) strings: ``positive`` where a neighbour shares its query's class."""
    labels = np.asarray(labels)
    same = labels[neighbours] == labels[np.asarray(queries)][:, None]
    return np.where(same, "positive", "negative")


def precision_at(embeddings: np.ndarray, labels: np.ndarray, queries: Sequence[int],
                 k: int = 10) -> float:
    """Share (%) of same-class items among the top ``k`` of ``queries``."""
    neighbours = query_neighbours(embeddings, queries, k)
    return float(100 * np.mean(marks(labels, queries, neighbours) == "positive"))


def _image(labelled: LabelledSet, index: int) -> Image.Image:
    if isinstance(labelled.items, np.ndarray):
        return Image.fromarray(labelled.items[index])
    return load_image(labelled.items[index])


def gallery_rows(embeddings: np.ndarray, labelled: LabelledSet, queries: Sequence[int],
                 k: int = 10) -> list[GalleryRow]:
    """Rows for :func:`irbook.viz.plot_galleries`: each query of ``labelled`` (whose embeddings,
    in item order, are ``embeddings``) and its ``k`` nearest items."""
    neighbours = query_neighbours(embeddings, queries, k)
    labels = marks(labelled.labels, queries, neighbours)
    return [GalleryRow(_image(labelled, int(q)), None,
                       [_image(labelled, int(i)) for i in row], list(marked))
            for q, row, marked in zip(queries, neighbours, labels, strict=True)]
