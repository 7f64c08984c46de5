"""Eq. 5.1 (new-class cross-entropy) against hand values and a numpy loop."""

import math

import numpy as np
import pytest
import torch

from irbook.losses import new_class_cross_entropy


def numpy_new_class_ce(logits: np.ndarray, labels: np.ndarray, first_new: int) -> float:
    total = 0.0
    for row, label in zip(logits, labels, strict=True):
        new = row[first_new:]
        total += -(row[label] - math.log(sum(math.exp(v) for v in new)))
    return total / len(labels)


def test_hand_value_uses_only_the_new_columns():
    logits = torch.tensor([[10.0, -3.0, 3.0, 4.0]], dtype=torch.float64)
    loss = new_class_cross_entropy(logits, torch.tensor([3]), first_new=2)
    # softmax over (3, 4) only: -log(e^4 / (e^3 + e^4)) = log(1 + e^-1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)


def test_matches_a_numpy_loop_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 6)) * 3
    labels = rng.integers(3, 6, size=7)
    got = new_class_cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), 3)
    assert got.item() == pytest.approx(numpy_new_class_ce(logits, labels, 3), rel=1e-12)


def test_first_new_zero_is_the_ordinary_cross_entropy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, size=5)
    got = new_class_cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), 0)
    assert got.item() == pytest.approx(numpy_new_class_ce(logits, labels, 0), rel=1e-12)


def test_old_class_outputs_receive_no_gradient():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    new_class_cross_entropy(logits, torch.tensor([2, 3, 4, 2]), first_new=2).backward()
    assert torch.all(logits.grad[:, :2] == 0)
    assert torch.all(logits.grad[:, 2:].abs().sum(dim=1) > 0)


@pytest.mark.parametrize(("labels", "first_new", "match"), [
    ([1, 3], 2, "labels must be global indices"),
    ([2, 4], 2, "labels must be global indices"),
    ([2, 3], 4, "first_new must be in"),
    ([2, 3], -1, "first_new must be in"),
])
def test_bad_labels_or_first_new_are_rejected(labels, first_new, match):
    with pytest.raises(ValueError, match=match):
        new_class_cross_entropy(torch.zeros(2, 4), torch.tensor(labels), first_new)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="logits must be"):
        new_class_cross_entropy(torch.zeros(4), torch.tensor([1]), 0)
    with pytest.raises(ValueError, match="labels must be"):
        new_class_cross_entropy(torch.zeros(2, 4), torch.tensor([1]), 0)
    with pytest.raises(ValueError, match="empty batch"):
        new_class_cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0)
