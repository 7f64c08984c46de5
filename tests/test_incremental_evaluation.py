"""Retrieval evaluation of the incremental protocol: query = gallery, self-match removed."""

import numpy as np
import pytest
import torch
from torch import nn

from irbook.data.finegrained import LabelledSet
from irbook.incremental import (
    embed,
    evaluate_classes,
    metric_names,
    per_query_metrics,
    per_query_precision_recall,
    precision_recall,
    retrieval_metrics,
)
from irbook.incremental import evaluation as evaluation_module
from irbook.metrics import mean_average_precision, mean_precision_recall, recall_at_k
from irbook.metrics.recall import drop_self
from irbook.models import l2n
from irbook.search import knn, rank_all


def test_recall_and_map_by_hand():
    # q0 ranks [1, 2, 3]: hit at rank 0; q1 ranks [2, 0, 3]: hit at rank 1 (AP 1/2);
    # q2 ranks [1, 3, 0]: hit at rank 1 (AP 1/2); q3 ranks [2, 1, 0]: hit at rank 0
    embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    result = retrieval_metrics(embeddings, labels, ks=(1, 2))
    assert list(result) == metric_names((1, 2)) == ["R@1", "R@2", "mAP"]
    assert result == pytest.approx({"R@1": 50.0, "R@2": 100.0, "mAP": 75.0})
    values = per_query_metrics(embeddings, labels, ks=(1, 2))
    assert values["R@1"].tolist() == [100.0, 0.0, 0.0, 100.0]
    assert values["R@2"].tolist() == [100.0] * 4
    assert values["mAP"].tolist() == pytest.approx([100.0, 50.0, 50.0, 100.0])


def test_a_query_alone_in_its_class_counts_as_a_miss_but_not_in_map():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    result = retrieval_metrics(embeddings, np.array([0, 0, 1]), ks=(1,))
    assert result["R@1"] == pytest.approx(200 / 3)
    assert result["mAP"] == pytest.approx(100.0)
    values = per_query_metrics(embeddings, np.array([0, 0, 1]), ks=(1,))
    assert values["R@1"].tolist() == [100.0, 100.0, 0.0]
    assert values["mAP"][:2].tolist() == [100.0, 100.0] and np.isnan(values["mAP"][2])
    with pytest.raises(ValueError, match="ks must be integers from 1 to 2"):
        per_query_metrics(embeddings, np.array([0, 0, 1]), ks=(3,))


def _random_case(n=60, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = rng.integers(0, 8, size=n)
    labels[0] = 99  # a query alone in its class
    return embeddings, labels


def test_per_query_values_average_to_the_full_ranking_implementation():
    embeddings, labels = _random_case()
    ks = (1, 2, 4, 8)
    # the implementation before per-query values: one full ranking for every metric
    rankings = drop_self(rank_all(embeddings, embeddings, metric="ip", backend="torch"),
                         np.arange(len(labels)))
    recalls = recall_at_k(rankings, labels, labels, ks)
    indices = np.arange(len(labels))
    gnd = [{"ok": indices[(labels == c) & (indices != q)]} for q, c in enumerate(labels)]
    map_value, aps = mean_average_precision(rankings, gnd, rule="rectangle")
    values = per_query_metrics(embeddings, labels, ks)
    summary = retrieval_metrics(embeddings, labels, ks)
    for k in ks:
        assert summary[f"R@{k}"] == pytest.approx(100 * recalls[k])
        assert np.mean(values[f"R@{k}"]) == pytest.approx(100 * recalls[k])
    np.testing.assert_allclose(values["mAP"], 100 * aps)
    assert summary["mAP"] == pytest.approx(100 * map_value)
    assert 0 < summary["R@1"] < summary["R@8"] < 100  # the case is neither trivial nor hopeless


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_the_query_is_dropped_wherever_ties_put_it(monkeypatch, backend):
    """Identical embeddings: every score ties, so a query's own index may come anywhere or
    not at all in its top k + 1; with every label distinct, any kept self-match is a hit."""
    monkeypatch.setattr(evaluation_module, "knn", lambda *args, **kwargs: knn(
        *args, **{**kwargs, "backend": backend}))
    embeddings = np.ones((6, 3), dtype=np.float32) / np.sqrt(3)
    values = per_query_metrics(embeddings, np.arange(6), ks=(1, 2, 4))
    for k in (1, 2, 4):
        assert values[f"R@{k}"].tolist() == [0.0] * 6
    assert np.isnan(values["mAP"]).all()


def test_per_query_precision_recall_rows_average_to_the_mean_curve():
    embeddings, labels = _random_case()
    levels = np.linspace(0, 1, 11)
    curves = per_query_precision_recall(embeddings, labels, levels)
    assert curves.shape == (60, 11) and np.isnan(curves[0]).all()
    assert np.isfinite(curves[1:]).all()
    rankings = drop_self(rank_all(embeddings, embeddings, metric="ip", backend="torch"),
                         np.arange(len(labels)))
    expected = mean_precision_recall(rankings, labels, labels, levels)
    np.testing.assert_allclose(precision_recall(embeddings, labels, levels), expected)
    np.testing.assert_allclose(np.nanmean(curves, axis=0), expected)
    with pytest.raises(ValueError, match="no query has a relevant item"):
        precision_recall(embeddings[:3], np.arange(3), levels)


class MeanColour(nn.Module):
    def forward(self, images):
        return l2n(images.mean(dim=(2, 3)))


def _colour_set():
    colours = {0: (250, 10, 10), 1: (10, 250, 10), 2: (250, 10, 10)}  # class 2 looks like 0
    items, labels = [], []
    for label, colour in colours.items():
        for shade in range(3):
            items.append(np.full((8, 8, 3), colour, dtype=np.uint8) + shade)
            labels.append(label)
    return LabelledSet(np.stack(items), np.array(labels))


def test_evaluate_classes_uses_only_the_test_images_of_the_given_classes():
    test_set = _colour_set()
    separable = evaluate_classes(MeanColour(), test_set, [0, 1], image_size=8, ks=(1, 2))
    assert separable["R@1"] == 100.0 and separable["mAP"] == 100.0
    confused = evaluate_classes(MeanColour(), test_set, [0, 1, 2], image_size=8, ks=(1, 2))
    assert confused["mAP"] < 100.0
    with pytest.raises(ValueError, match="need >= 2"):
        evaluate_classes(MeanColour(), test_set, [5], image_size=8)


def test_embed_keeps_order_and_restores_training_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).train()
    data = torch.utils.data.TensorDataset(torch.rand(5, 3, 4, 4), torch.arange(5))
    embeddings, labels = embed(model, data, batch_size=2)
    assert embeddings.shape == (5, 2) and labels.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(embeddings, model(data.tensors[0]).detach().numpy(), atol=1e-5)
    assert model.training
