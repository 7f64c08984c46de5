"""Retrieval evaluation of the incremental protocol (chapters 5 and 6).

As in the chapter-6 reference code (REFERENCE_PROTOCOLS.md, "Thesis author's code"): the
queries and the gallery are the same test images, those of the evaluated classes; each query is
removed from its own ranking. Recall@K = share of queries with a same-class image in the top K;
mAP is the standard (rectangle-rule) AP over the whole ranking, averaged over the queries that
have at least one other image of their class. :func:`per_query_metrics` gives each query's own
value (for bootstrap intervals); the summary metrics are their means. Numbers are in percent.
The reference code's mAP is deflated by a bug (``irbook.metrics.ap_code_faithful``); the
thesis's mAP may carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from irbook.metrics import RECALL_LEVELS, interpolated_precision, mean_average_precision
from irbook.metrics.ap import nanmean
from irbook.metrics.recall import drop_self
from irbook.search import knn, rank_all

__all__ = ["DatasetFactory", "default_dataset_factory", "embed", "embed_with_logits",
           "embed_items", "evaluate_classes", "metric_names", "per_query_metrics",
           "per_query_precision_recall", "per_query_top1", "precision_recall",
           "retrieval_metrics", "summarize_per_query", "top1_accuracy"]

# (labelled_set, image_size, train) -> torch Dataset yielding (image tensor, label)
DatasetFactory = Callable[[Any, int, bool], Dataset]


def default_dataset_factory(labelled_set: Any, image_size: int, train: bool) -> Dataset:
    """:class:`irbook.data.torchsets.LabelledImageDataset` with the reference transforms."""
    from irbook.data.torchsets import LabelledImageDataset

    return LabelledImageDataset(labelled_set, image_size, train)


def metric_names(ks: Sequence[int]) -> list[str]:
    """Column names of :func:`retrieval_metrics`: ``R@k`` for each k, then ``mAP``."""
    return [f"R@{k}" for k in ks] + ["mAP"]


def embed(model: nn.Module, dataset: Dataset, device: str | torch.device = "cpu",
          batch_size: int = 64, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) float32 and labels (N,) int64 of a dataset of (image, label) pairs.

    The model runs in eval mode on ``device``; its previous train/eval mode is restored.
    """
    embeddings, labels, _ = _forward_all(model, dataset, device, batch_size, num_workers,
                                         logits=False)
    return embeddings, labels


def embed_with_logits(model: nn.Module, dataset: Dataset, device: str | torch.device = "cpu",
                      batch_size: int = 64, num_workers: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`embed` plus the classifier's logits (N, C) of an :class:`EmbeddingNet`."""
    return _forward_all(model, dataset, device, batch_size, num_workers, logits=True)


@torch.no_grad()
def _forward_all(model: nn.Module, dataset: Dataset, device: str | torch.device,
                 batch_size: int, num_workers: int, logits: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size}")
    was_training = model.training
    model.eval()
    embeddings, labels, scores = [], [], []
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
        for images, batch_labels in loader:
            images = images.to(device)
            if logits:
                emb, out = model.forward_with_logits(images)
                scores.append(out.float().cpu())
            else:
                emb = model(images)
            embeddings.append(emb.float().cpu())
            labels.append(torch.as_tensor(batch_labels))
    finally:
        model.train(was_training)
    if not embeddings:
        raise ValueError("dataset is empty: nothing to embed")
    return (torch.cat(embeddings).numpy(), torch.cat(labels).numpy().astype(np.int64),
            torch.cat(scores).numpy() if logits else None)


def per_query_top1(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """100 for every row whose largest logit is at ``targets``, else 0 (see
    :func:`top1_accuracy`)."""
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(f"need logits (N, C) and N targets with N >= 1; got {logits.shape} "
                         f"and {targets.shape}")
    if logits.shape[1] == 0:
        raise ValueError("the classifier has no outputs: nothing to predict")
    return 100.0 * (logits.argmax(axis=1) == targets)


def top1_accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy in percent: share of rows whose largest logit is at ``targets``.

    Used for Table 5.6 (class-incremental classification): the classifier has one output per
    class seen so far, so the prediction competes over all of them.
    """
    return float(np.mean(per_query_top1(logits, targets)))


def _check_pairs(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if len(embeddings) != len(labels) or len(labels) < 2:
        raise ValueError(f"need at least 2 embeddings with one label each; got "
                         f"{len(embeddings)} embeddings and {len(labels)} labels")
    return labels


def _full_rankings(embeddings: np.ndarray) -> np.ndarray:
    """(N, N - 1) rankings by inner product, each query removed from its own row."""
    return drop_self(rank_all(embeddings, embeddings, metric="ip", backend="torch"),
                     np.arange(len(embeddings)))


def per_query_metrics(embeddings: np.ndarray, labels: np.ndarray,
                      ks: Sequence[int] = (1, 2, 4)) -> dict[str, np.ndarray]:
    """Recall@K and AP of every query (percent), query = gallery, self-match removed.

    ``R@k[q]`` is 100 when a same-class item is among the top k of query q, else 0; it comes
    from a top-(max(ks) + 1) search (:func:`irbook.search.knn`, FAISS when installed) with the
    query's own index dropped wherever the ties put it (else the last column). ``mAP[q]`` is
    100 x the rectangle-rule AP (Eq. 2.20) over q's full ranking, NaN for a query alone in its
    class. Ranking is by inner product (cosine similarity for L2-normalised embeddings).
    """
    labels = _check_pairs(embeddings, labels)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > len(labels) - 1:
        raise ValueError(f"ks must be integers from 1 to {len(labels) - 1} (the gallery size "
                         f"without the query); got {ks}")
    _, top = knn(embeddings, embeddings, k=max(ks) + 1, metric="ip")
    hits = labels[drop_self(top, np.arange(len(labels)))] == labels[:, None]
    values = {f"R@{k}": 100.0 * hits[:, :k].any(axis=1) for k in ks}
    indices = np.arange(len(labels))
    gnd = [{"ok": indices[(labels == label) & (indices != q)]} for q, label in enumerate(labels)]
    values["mAP"] = 100.0 * mean_average_precision(_full_rankings(embeddings), gnd,
                                                   rule="rectangle")[1]
    return values


def summarize_per_query(values: dict[str, np.ndarray]) -> dict[str, float]:
    """The table value of each metric's per-query values: their mean, over the non-NaN
    entries for mAP (queries alone in their class have no AP)."""
    return {name: nanmean(np.asarray(v, dtype=float)) if name == "mAP"
            else float(np.mean(v)) for name, v in values.items()}


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray,
                      ks: Sequence[int] = (1, 2, 4, 8)) -> dict[str, float]:
    """Recall@K and mAP (percent): the means of :func:`per_query_metrics` (mAP over the
    queries that have another image of their class)."""
    return summarize_per_query(per_query_metrics(embeddings, labels, ks))


def per_query_precision_recall(embeddings: np.ndarray, labels: np.ndarray,
                               levels: np.ndarray = RECALL_LEVELS) -> np.ndarray:
    """(N, L) interpolated precision (fractions) of every query at recall ``levels``, with the
    protocol of :func:`retrieval_metrics`; NaN rows for queries alone in their class."""
    labels = _check_pairs(embeddings, labels)
    rankings = _full_rankings(embeddings)
    curves = np.full((len(labels), len(levels)), np.nan)
    for q, (row, label) in enumerate(zip(rankings, labels, strict=True)):
        relevant = labels[row] == label
        if relevant.any():
            curves[q] = interpolated_precision(relevant, int(relevant.sum()), levels)
    return curves


def precision_recall(embeddings: np.ndarray, labels: np.ndarray,
                     levels: np.ndarray = RECALL_LEVELS) -> np.ndarray:
    """Mean interpolated precision at recall ``levels`` (fractions): the mean of
    :func:`per_query_precision_recall` over the queries with another image of their class
    (Figures 5.3a-b)."""
    curves = per_query_precision_recall(embeddings, labels, levels)
    valid = ~np.isnan(curves[:, 0])
    if not valid.any():
        raise ValueError("no query has a relevant item: the curve is undefined")
    return curves[valid].mean(axis=0)


def evaluate_classes(model: nn.Module, labelled_test_set: Any, classes: Sequence[int],
                     image_size: int, device: str | torch.device = "cpu",
                     ks: Sequence[int] = (1, 2, 4, 8), batch_size: int = 64,
                     dataset_factory: DatasetFactory | None = None) -> dict[str, float]:
    """Recall@K and mAP (percent) of ``model`` on the test images of ``classes``.

    ``labelled_test_set`` is a :class:`irbook.data.finegrained.LabelledSet`;
    ``dataset_factory`` turns its subset into a Dataset (default: test transforms of
    :class:`~irbook.data.torchsets.LabelledImageDataset`).
    """
    subset = labelled_test_set.subset(np.asarray(classes))
    if len(subset) < 2:
        raise ValueError(f"classes {list(classes)} have {len(subset)} test images; need >= 2")
    factory = dataset_factory or default_dataset_factory
    embeddings, labels = embed(model, factory(subset, image_size, False), device, batch_size)
    return retrieval_metrics(embeddings, labels, ks)


def embed_items(model: nn.Module, labelled: Any, indices: Sequence[int],
                image_size: int, device: str | torch.device = "cpu") -> np.ndarray:
    """Test-time embeddings (N, D) of ``labelled``'s items at ``indices``, in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    items = (labelled.items[indices] if isinstance(labelled.items, np.ndarray)
             else [labelled.items[i] for i in indices])
    from irbook.data.finegrained import LabelledSet

    subset = LabelledSet(items, labelled.labels[indices])
    return embed(model, default_dataset_factory(subset, image_size, False), device)[0]
