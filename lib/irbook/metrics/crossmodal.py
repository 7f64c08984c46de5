"""Image-text retrieval metrics of chapter 4 (the VSE++ protocol, REFERENCE_PROTOCOLS).

``sim`` is the (n_images, n_captions) matrix of image-caption cosine similarities and
``caption_image`` (n_captions,) maps each caption to its image. Larger similarity ranks first;
ties keep index order (stable sort), so a tie never favours the ground truth.

- image-to-text: the rank of an image query is the best (smallest) rank among its captions;
- text-to-image: the rank of a caption query is the rank of its image;
- R@K in percent, median rank 1-based (``floor(median(rank)) + 1`` as VSE++), rsum = the sum
  of R@1/5/10 of both directions;
- label AP and the ranking precision-recall curve judge relevance by instance label (the
  image's own index for Flickr/COCO, the identity for CUHK-PEDES; Tables 4.4-4.5, Figure 4.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .ap import average_precision
from .pr import RECALL_LEVELS, mean_precision_recall

__all__ = ["i2t_ranks", "label_average_precision", "median_rank", "ranking_pr", "recall_at",
           "rsum", "t2i_ranks"]

RANK_CHUNK = 256  # query rows sorted at a time


def _check_sim(sim: np.ndarray, caption_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim)
    caption_image = np.asarray(caption_image).reshape(-1)
    if sim.ndim != 2 or sim.shape[1] != len(caption_image):
        raise ValueError(f"sim must be (n_images, n_captions) with n_captions = "
                         f"len(caption_image) = {len(caption_image)}; got shape {sim.shape}")
    if len(caption_image) and (caption_image.min() < 0 or caption_image.max() >= sim.shape[0]):
        raise ValueError(f"caption_image must hold image indices in [0, {sim.shape[0]})")
    return sim, caption_image.astype(np.int64)


def _chunks(n_rows: int):
    for start in range(0, n_rows, RANK_CHUNK):
        yield slice(start, min(start + RANK_CHUNK, n_rows))


def _rank_of(sim: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of column ``target[q]`` in row q of ``sim`` under the stable ranking: the
    number of larger entries plus the number of equal entries with a smaller index."""
    ranks = np.empty(len(sim), dtype=np.int64)
    columns = np.arange(sim.shape[1])[None, :]
    for rows in _chunks(len(sim)):
        block, wanted = sim[rows], target[rows]
        value = block[np.arange(len(block)), wanted][:, None]
        ties_before = (block == value) & (columns < wanted[:, None])
        ranks[rows] = (block > value).sum(axis=1) + ties_before.sum(axis=1)
    return ranks


def i2t_ranks(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """(n_images,) 0-based best rank of an image's captions in its caption ranking; an image
    without captions raises ``ValueError``."""
    sim, caption_image = _check_sim(sim, caption_image)
    counts = np.bincount(caption_image, minlength=sim.shape[0])
    if (counts == 0).any():
        raise ValueError(f"image {int(np.flatnonzero(counts == 0)[0])} has no caption")
    # the best-ranked own caption: the most similar one, the first by index among equals
    order = np.lexsort((np.arange(len(caption_image)), -sim[caption_image,
                                                            np.arange(len(caption_image))],
                        caption_image))
    first = np.searchsorted(caption_image[order], np.arange(sim.shape[0]))
    return _rank_of(sim, order[first])


def t2i_ranks(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """(n_captions,) 0-based rank of a caption's image in its image ranking."""
    sim, caption_image = _check_sim(sim, caption_image)
    return _rank_of(sim.T, caption_image)


def recall_at(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """``{k: 100 · fraction of queries with 0-based rank < k}``."""
    ranks = np.asarray(ranks).reshape(-1)
    if ranks.size == 0:
        raise ValueError("ranks must not be empty")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers; got {tuple(ks)}")
    return {int(k): float(100.0 * (ranks < k).mean()) for k in ks}


def median_rank(ranks: np.ndarray) -> float:
    """1-based median rank, ``floor(median(0-based ranks)) + 1`` (VSE++)."""
    ranks = np.asarray(ranks).reshape(-1)
    if ranks.size == 0:
        raise ValueError("ranks must not be empty")
    return float(np.floor(np.median(ranks)) + 1)


def rsum(i2t: Mapping[int, float], t2i: Mapping[int, float]) -> float:
    """Sum of every recall of both directions (R@1 + R@5 + R@10, twice)."""
    return float(sum(i2t.values()) + sum(t2i.values()))


def _check_labels(sim: np.ndarray, query_labels, gallery_labels) -> tuple[np.ndarray, ...]:
    sim = np.asarray(sim)
    query_labels = np.asarray(query_labels).reshape(-1)
    gallery_labels = np.asarray(gallery_labels).reshape(-1)
    if sim.ndim != 2 or sim.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(f"sim must be (n_queries, n_gallery) = ({len(query_labels)}, "
                         f"{len(gallery_labels)}); got shape {sim.shape}")
    return sim, query_labels, gallery_labels


def _relevance_blocks(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray):
    """Per chunk of queries: (row slice, stable rankings, boolean relevance in rank order)."""
    for rows in _chunks(len(sim)):
        order = np.argsort(-sim[rows], axis=1, kind="stable")
        yield rows, order, gallery_labels[order] == query_labels[rows, None]


def label_average_precision(sim: np.ndarray, query_labels: np.ndarray,
                            gallery_labels: np.ndarray) -> np.ndarray:
    """(n_queries,) AP in [0, 1] over the full ranking of the gallery; relevant = same instance
    label. Standard (non-interpolated) AP: the mean precision at the ranks of the relevant
    items (:func:`irbook.metrics.ap.average_precision`, rule ``"rectangle"``); NaN for a query
    without a relevant item. Pass ``sim.T`` for text queries."""
    sim, query_labels, gallery_labels = _check_labels(sim, query_labels, gallery_labels)
    aps = np.full(len(query_labels), np.nan)
    for rows, _, relevant in _relevance_blocks(sim, query_labels, gallery_labels):
        for offset, row in enumerate(relevant):
            ranks = np.flatnonzero(row)
            if ranks.size:
                aps[rows.start + offset] = average_precision(ranks, ranks.size, rule="rectangle")
    return aps


def ranking_pr(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray,
               levels: np.ndarray = RECALL_LEVELS) -> pd.DataFrame:
    """Columns ``recall``, ``precision``: the mean over queries of the interpolated precision
    at each recall level of the full label ranking (:func:`irbook.metrics.pr.mean_precision_recall`
    on chunks of queries, queries without a relevant item skipped)."""
    sim, query_labels, gallery_labels = _check_labels(sim, query_labels, gallery_labels)
    total, counted = np.zeros(len(levels)), 0
    for rows, order, relevant in _relevance_blocks(sim, query_labels, gallery_labels):
        n_valid = int(relevant.any(axis=1).sum())
        if n_valid:
            curve = mean_precision_recall(order, query_labels[rows], gallery_labels, levels)
            total, counted = total + n_valid * curve, counted + n_valid
    if not counted:
        raise ValueError("no query has a relevant item: the curve is undefined")
    return pd.DataFrame({"recall": np.asarray(levels, dtype=float), "precision": total / counted})
