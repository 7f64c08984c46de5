"""Normalized cross-entropy over one positive and K hard negatives (NCE_EWC baseline)."""

import math

import numpy as np
import pytest
import torch

from irbook.losses import nce_batch_loss, nce_loss


def loop_nce(anchor, positive, negatives, temperature=1.0) -> float:
    total = 0.0
    for a, p, negs in zip(anchor, positive, negatives, strict=True):
        scores = [float(a @ p)] + [float(a @ n) for n in negs]
        exps = [math.exp(s / temperature) for s in scores]
        total += -math.log(exps[0] / sum(exps))
    return total / len(anchor)


def test_hand_value():
    anchor = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    positive = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    negatives = torch.tensor([[[0.0, 1.0]] * 9], dtype=torch.float64)
    # scores: 1 for the positive, 0 for nine negatives -> -log(e / (e + 9))
    assert nce_loss(anchor, positive, negatives).item() == pytest.approx(
        -math.log(math.e / (math.e + 9)), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_matches_a_loop(temperature):
    rng = np.random.default_rng(0)
    a, p, n = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 3, 5))
    got = nce_loss(torch.from_numpy(a), torch.from_numpy(p), torch.from_numpy(n), temperature)
    assert got.item() == pytest.approx(loop_nce(a, p, n, temperature), rel=1e-12)


def test_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError, match="anchor and positive"):
        nce_loss(torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="negatives must be"):
        nce_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="negatives must be"):
        nce_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nce_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1, 3), 0.0)


def test_batch_mining_matches_a_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 4))
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4]  # class 4 has no positive
    anchors, positives, negatives = [], [], []
    for i in range(12):
        pos = [j for j in range(12) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        neg = sorted((j for j in range(12) if labels[j] != labels[i]),
                     key=lambda j: -float(x[i] @ x[j]))
        anchors.append(x[i])
        positives.append(x[min(pos, key=lambda j: float(x[i] @ x[j]))])
        negatives.append([x[j] for j in neg[:5]])
    expected = loop_nce(anchors, positives, negatives)
    got = nce_batch_loss(torch.from_numpy(x), torch.tensor(labels), num_negatives=5)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_batch_mining_errors_and_gradient():
    x = torch.randn(6, 3, requires_grad=True)
    with pytest.raises(ValueError, match="some anchors have only 4 negatives"):
        nce_batch_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), num_negatives=9)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        nce_batch_loss(x, torch.arange(6))
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        nce_batch_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), num_negatives=0)
    nce_batch_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), num_negatives=4).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
