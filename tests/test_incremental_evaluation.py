"""Retrieval evaluation of the incremental protocol: query = gallery, self-match removed."""

import numpy as np
import pytest
import torch
from torch import nn

from irbook.data.finegrained import LabelledSet
from irbook.incremental import embed, evaluate_classes, metric_names, retrieval_metrics
from irbook.models import l2n


def test_recall_and_map_by_hand():
    # q0 ranks [1, 2, 3]: hit at rank 0; q1 ranks [2, 0, 3]: hit at rank 1 (AP 1/2);
    # q2 ranks [1, 3, 0]: hit at rank 1 (AP 1/2); q3 ranks [2, 1, 0]: hit at rank 0
    embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    result = retrieval_metrics(embeddings, labels, ks=(1, 2))
    assert list(result) == metric_names((1, 2)) == ["R@1", "R@2", "mAP"]
    assert result == pytest.approx({"R@1": 50.0, "R@2": 100.0, "mAP": 75.0})


def test_a_query_alone_in_its_class_counts_as_a_miss_but_not_in_map():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    result = retrieval_metrics(embeddings, np.array([0, 0, 1]), ks=(1,))
    assert result["R@1"] == pytest.approx(200 / 3)
    assert result["mAP"] == pytest.approx(100.0)


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
