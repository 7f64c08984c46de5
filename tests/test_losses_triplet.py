"""Triplet losses (Eqs. 5.2 / 6.1 and the reference hard-mining loss) against explicit loops."""

import math

import numpy as np
import pytest
import torch

from irbook.losses import reference_pair_loss, triplet_hard_loss


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def loop_batch_hard(x: np.ndarray, labels, margin: float, distance: str) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    hinges = []
    for a in range(len(x)):
        pos = [p for p in range(len(x)) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(len(x)) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        if distance == "cosine":
            s_pos = min(float(x[a] @ x[p]) for p in pos)
            s_neg = max(float(x[a] @ x[n]) for n in neg)
            hinges.append(max(0.0, margin + s_neg - s_pos))
        else:
            d_pos = max(float(((x[a] - x[p]) ** 2).sum()) for p in pos)
            d_neg = min(float(((x[a] - x[n]) ** 2).sum()) for n in neg)
            hinges.append(max(0.0, margin + d_pos - d_neg))
    return sum(hinges) / len(hinges) if hinges else 0.0


def loop_reference(x: np.ndarray, labels, margin: float) -> float:
    """The reference procedure written with Python lists, one anchor at a time."""
    total = 0.0
    for a in range(len(x)):
        sims = [float(x[a] @ x[j]) for j in range(len(x))]
        pos = sorted(sims[j] for j in range(len(x)) if j != a and labels[j] == labels[a])
        neg = sorted(sims[j] for j in range(len(x)) if labels[j] != labels[a])
        if not pos or not neg:
            continue
        kept_neg = [s for s in neg if s > pos[0] - margin]
        kept_pos = [s for s in pos if s < neg[-1] + margin]
        if not kept_neg:
            continue
        total += sum(1 - s for s in kept_pos) / len(kept_pos) + sum(kept_neg) / len(kept_neg)
    return total / len(x)


LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("distance", ["cosine", "squared_l2"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_matches_a_loop(distance, seed):
    x = np.random.default_rng(seed).normal(size=(12, 5))
    got = triplet_hard_loss(torch.from_numpy(x), torch.tensor(LABELS), 0.5, distance=distance)
    assert got.item() == pytest.approx(loop_batch_hard(x, LABELS, 0.5, distance), rel=1e-10)


def test_batch_hard_by_hand_on_the_unit_circle():
    angles = [0.0, 0.3, 1.0, 1.2]  # classes 0, 0, 1, 1
    x = torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # similarity = cos(angle difference); hardest negative of each anchor is its nearest
    # point of the other class.
    expected = [0.5 + math.cos(1.0) - math.cos(0.3), 0.5 + math.cos(0.7) - math.cos(0.3),
                0.5 + math.cos(0.7) - math.cos(0.2), 0.5 + math.cos(0.9) - math.cos(0.2)]
    got = triplet_hard_loss(x, labels, margin=0.5)
    assert got.item() == pytest.approx(sum(expected) / 4, rel=1e-12)


def test_squared_l2_is_twice_cosine_with_twice_the_margin():
    x = torch.randn(12, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor(LABELS)
    cosine = triplet_hard_loss(x, labels, 0.3, distance="cosine")
    squared = triplet_hard_loss(x, labels, 0.6, distance="squared_l2")
    assert squared.item() == pytest.approx(2 * cosine.item(), rel=1e-10)


def test_normalize_false_uses_raw_vectors():
    x = np.random.default_rng(4).normal(size=(6, 3))
    labels = [0, 0, 1, 1, 2, 2]
    raw = triplet_hard_loss(torch.from_numpy(x * 5), torch.tensor(labels), 0.2, normalize=False)
    scaled = triplet_hard_loss(torch.from_numpy(x * 5), torch.tensor(labels), 0.2)
    assert scaled.item() == pytest.approx(loop_batch_hard(x, labels, 0.2, "cosine"), rel=1e-10)
    assert raw.item() != pytest.approx(scaled.item())


def test_anchors_without_a_positive_are_left_out_of_the_mean():
    x = np.random.default_rng(5).normal(size=(5, 4))
    labels = [0, 0, 1, 1, 2]  # the last anchor has no positive
    got = triplet_hard_loss(torch.from_numpy(x), torch.tensor(labels), 1.0)
    assert got.item() == pytest.approx(loop_batch_hard(x, labels, 1.0, "cosine"), rel=1e-10)


def test_no_valid_anchor_gives_a_connected_zero():
    x = torch.randn(3, 4, requires_grad=True)
    loss = triplet_hard_loss(x, torch.tensor([0, 1, 2]), 0.5)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


def test_batch_hard_gradient_is_finite_and_nonzero():
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(6))
    triplet_hard_loss(x, torch.tensor(LABELS), 2.0, distance="squared_l2").backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_batch_hard_rejects_bad_arguments():
    with pytest.raises(ValueError, match="distance must be one of"):
        triplet_hard_loss(torch.zeros(2, 3), torch.tensor([0, 1]), 0.5, distance="l1")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        triplet_hard_loss(torch.zeros(2, 3), torch.tensor([0, 1]), -0.5)
    with pytest.raises(ValueError, match="labels must be"):
        triplet_hard_loss(torch.zeros(2, 3), torch.tensor([0, 1, 1]), 0.5)
    with pytest.raises(ValueError, match="embeddings must be"):
        triplet_hard_loss(torch.zeros(2, 3, 1), torch.tensor([0, 1]), 0.5)


@pytest.mark.parametrize("margin", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reference_loss_matches_the_reference_procedure(margin, seed):
    x = unit_rows(np.random.default_rng(seed), 12, 3)
    got = reference_pair_loss(torch.from_numpy(x), torch.tensor(LABELS), margin)
    assert got.item() == pytest.approx(loop_reference(x, LABELS, margin), rel=1e-10)


def test_reference_loss_by_hand():
    # Two classes on the unit circle: anchor 0 at angle 0, its positive at 0.5, negatives at
    # 0.55 and 2.0. For anchor 0: min(pos) = cos 0.5; negatives above cos0.5 - 0.1 -> only
    # cos 0.55; max(neg) = cos 0.55, positives below cos0.55 + 0.1 -> cos 0.5.
    angles = [0.0, 0.5, 0.55, 2.0]
    x = torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    loss = reference_pair_loss(x, labels, 0.1)
    cos = math.cos
    anchor0 = (1 - cos(0.5)) + cos(0.55)
    # anchor 1: pos cos0.5, negs cos0.05, cos1.5 -> kept: cos0.05 (> cos0.5 - 0.1); cos1.5 no.
    anchor1 = (1 - cos(0.5)) + cos(0.05)
    # anchor 2: pos cos1.45, negs cos0.55, cos0.05 -> both > cos1.45 - 0.1; max neg cos0.05
    anchor2 = (1 - cos(1.45)) + (cos(0.55) + cos(0.05)) / 2
    # anchor 3: pos cos1.45, negs cos2.0, cos1.5 -> kept: cos1.5 (> cos1.45 - 0.1), cos 2.0 no
    anchor3 = (1 - cos(1.45)) + cos(1.5)
    assert loss.item() == pytest.approx((anchor0 + anchor1 + anchor2 + anchor3) / 4, rel=1e-12)


def test_reference_loss_is_zero_for_separated_classes_but_still_divides_by_batch():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert reference_pair_loss(x, torch.tensor([0, 0, 1, 1]), 0.1).item() == 0.0
    # One anchor (a singleton class) contributes 0 and still counts in the denominator.
    angles = [0.0, 0.2, 0.25, 3.0]
    y = np.array([[math.cos(a), math.sin(a)] for a in angles])
    labels = [0, 0, 1, 2]
    got = reference_pair_loss(torch.from_numpy(y), torch.tensor(labels), 0.1)
    assert got.item() == pytest.approx(loop_reference(y, labels, 0.1), rel=1e-12)


def test_reference_loss_gradient_flows():
    x = torch.tensor(unit_rows(np.random.default_rng(7), 12, 4), requires_grad=True)
    reference_pair_loss(x, torch.tensor(LABELS), 0.5).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
