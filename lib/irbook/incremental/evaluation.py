"""Retrieval evaluation of the incremental protocol (chapters 5 and 6).

As in the chapter-6 reference code (REFERENCE_PROTOCOLS.md, "Thesis author's code"): the
queries and the gallery are the same test images, those of the evaluated classes; each query is
removed from its own ranking. Recall@K = share of queries with a same-class image in the top K;
mAP is the standard (rectangle-rule) AP over the whole ranking, averaged over the queries that
have at least one other image of their class. Numbers are in percent. The reference code's mAP
is deflated by a bug (``irbook.metrics.ap_code_faithful``); the thesis's mAP may carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from irbook.metrics import (
    RECALL_LEVELS,
    mean_average_precision,
    mean_precision_recall,
    recall_at_k,
)
from irbook.metrics.recall import drop_self
from irbook.search import rank_all

__all__ = ["DatasetFactory", "embed", "embed_with_logits", "evaluate_classes", "metric_names",
           "precision_recall", "retrieval_metrics", "top1_accuracy"]

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


def top1_accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy in percent: share of rows whose largest logit is at ``targets``.

    Used for Table 5.6 (class-incremental classification): the classifier has one output per
    class seen so far, so the prediction competes over all of them.
    """
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(f"need logits (N, C) and N targets with N >= 1; got {logits.shape} "
                         f"and {targets.shape}")
    if logits.shape[1] == 0:
        raise ValueError("the classifier has no outputs: nothing to predict")
    return 100.0 * float(np.mean(logits.argmax(axis=1) == targets))


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray,
                      ks: Sequence[int] = (1, 2, 4, 8)) -> dict[str, float]:
    """Recall@K and mAP (percent) with query = gallery = ``embeddings``, self-match removed.

    Ranking is by inner product (cosine similarity for L2-normalised embeddings).
    """
    labels = np.asarray(labels)
    if len(embeddings) != len(labels) or len(labels) < 2:
        raise ValueError(f"need at least 2 embeddings with one label each; got "
                         f"{len(embeddings)} embeddings and {len(labels)} labels")
    rankings = drop_self(rank_all(embeddings, embeddings, metric="ip", backend="torch"),
                         np.arange(len(labels)))
    recalls = recall_at_k(rankings, labels, labels, ks)
    indices = np.arange(len(labels))
    gnd = [{"ok": indices[(labels == label) & (indices != q)]} for q, label in enumerate(labels)]
    map_value, _ = mean_average_precision(rankings, gnd, rule="rectangle")
    result = {f"R@{k}": 100.0 * value for k, value in recalls.items()}
    result["mAP"] = 100.0 * map_value
    return result


def precision_recall(embeddings: np.ndarray, labels: np.ndarray,
                     levels: np.ndarray = RECALL_LEVELS) -> np.ndarray:
    """Mean interpolated precision at recall ``levels`` (fractions), with the protocol of
    :func:`retrieval_metrics` (query = gallery, self-match removed; Figures 5.3a-b)."""
    labels = np.asarray(labels)
    rankings = drop_self(rank_all(embeddings, embeddings, metric="ip", backend="torch"),
                         np.arange(len(labels)))
    return mean_precision_recall(rankings, labels, labels, levels)


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
