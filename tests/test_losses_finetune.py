"""Chapter 2 fine-tuning losses (Eqs. 2.13-2.19) and cirtorch's hard-negative mining."""

import math

import numpy as np
import pytest
import torch

from irbook.losses.finetune import (
    classification_loss,
    contrastive_loss,
    double_margin_siamese_loss,
    joint_loss,
    mine_hard_negatives,
    siamese_loss,
    squared_distance,
    transformation_regression_loss,
    transformation_similarity,
    triplet_loss,
)
from irbook.losses.triplet import triplet_hard_loss


def t(values):
    return torch.tensor(values, dtype=torch.float64)


# Pairs (0, 0)-(1, 0), (0, 0)-(0, 2), (0, 0)-(0.5, 0): squared distances 1, 4, 0.25.
ORIGIN = t([[0.0, 0.0]] * 3)
OTHERS = t([[1.0, 0.0], [0.0, 2.0], [0.5, 0.0]])
SIMILAR = torch.tensor([1, 0, 0])


# --- Eq. 2.13 --------------------------------------------------------------------------------

def test_classification_loss_by_hand():
    logits = t([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    # softmax rows: (1/4, 3/4) and (4/5, 1/5); the true classes get 3/4 and 1/5
    expected = -(math.log(0.75) + math.log(0.2)) / 2
    assert classification_loss(logits, torch.tensor([1, 1])).item() == pytest.approx(expected)


def test_classification_loss_matches_the_written_sum():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[labels]
    expected = -(onehot * np.log(p)).sum(axis=1).mean()
    got = classification_loss(torch.from_numpy(logits), torch.from_numpy(labels))
    assert got.item() == pytest.approx(expected, rel=1e-12)


# --- Eqs. 2.14-2.15 --------------------------------------------------------------------------

def test_squared_distance_by_hand():
    assert squared_distance(ORIGIN, OTHERS).tolist() == [1.0, 4.0, 0.25]
    assert squared_distance(t([[0.0, 0.0]]), t([[3.0, 4.0]])).item() == 25.0


def test_transformation_similarity_is_a_linear_map_of_the_concatenation():
    x_i, x_j = t([[1.0, 2.0]]), t([[3.0, 4.0]])
    weight = t([1.0, 0.0, 0.0, 1.0])  # picks x_i[0] + x_j[1]
    assert transformation_similarity(x_i, x_j, weight).item() == 5.0
    assert transformation_similarity(x_i, x_j, weight[:, None], t(0.5)).item() == 5.5
    with pytest.raises(ValueError, match="weight must hold 2d = 4"):
        transformation_similarity(x_i, x_j, t([1.0, 2.0, 3.0]))


def test_transformation_regression_by_hand():
    x_i = t([[1.0, 0.0], [1.0, 0.0]])
    x_j = t([[0.0, 1.0], [2.0, 0.0]])  # cosines 0 and 1
    predicted = t([0.5, 0.2])
    similar = torch.tensor([0, 1])
    # dissimilar: |0.5 - (0 - 0.3)| = 0.8; similar: |0.2 - (1 + 0.3)| = 1.1
    got = transformation_regression_loss(predicted, x_i, x_j, similar, margin=0.3)
    assert got.item() == pytest.approx((0.8 + 1.1) / 2)
    other = transformation_regression_loss(predicted, x_i, x_j, similar, margin=0.1)
    assert other.item() == pytest.approx((0.6 + 0.9) / 2)
    exact = transformation_regression_loss(t([-0.3, 1.3]), x_i, x_j, similar, margin=0.3)
    assert exact.item() == pytest.approx(0.0, abs=1e-12)


def test_transformation_regression_trains_the_weight():
    gen = torch.Generator().manual_seed(0)
    x_i, x_j = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    weight = torch.zeros(6, requires_grad=True)
    loss = transformation_regression_loss(transformation_similarity(x_i, x_j, weight), x_i,
                                          x_j, torch.tensor([1, 0] * 4), margin=0.5)
    loss.backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


# --- Eqs. 2.16 and 2.19 ----------------------------------------------------------------------

def test_siamese_loss_by_hand():
    # similar D=1 -> ½·1; dissimilar D=4 beyond m=1 -> 0; dissimilar D=0.25 -> ½·0.75
    got = siamese_loss(ORIGIN, OTHERS, SIMILAR, margin=1.0)
    assert got.item() == pytest.approx((0.5 + 0.0 + 0.375) / 3)
    wider = siamese_loss(ORIGIN, OTHERS, SIMILAR, margin=5.0)  # ½·1 + ½·1 + ½·4.75
    assert wider.item() == pytest.approx((0.5 + 0.5 + 2.375) / 3)


def test_siamese_loss_matches_a_loop():
    rng = np.random.default_rng(1)
    a, b, s = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)), rng.integers(0, 2, size=7)
    expected = np.mean([0.5 * s[k] * ((a[k] - b[k]) ** 2).sum()
                        + 0.5 * (1 - s[k]) * max(0.0, 3.0 - ((a[k] - b[k]) ** 2).sum())
                        for k in range(7)])
    got = siamese_loss(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(s), 3.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_siamese_loss_is_zero_when_constraints_hold():
    x_i, x_j = t([[1.0, 1.0], [0.0, 0.0]]), t([[1.0, 1.0], [3.0, 0.0]])
    assert siamese_loss(x_i, x_j, torch.tensor([1, 0]), margin=2.0).item() == 0.0


def test_double_margin_by_hand():
    # m1 = 0.5, m2 = 2: similar D=1 -> ½·0.5; dissimilar D=4 -> 0; dissimilar D=0.25 -> ½·1.75
    got = double_margin_siamese_loss(ORIGIN, OTHERS, SIMILAR, 0.5, 2.0)
    assert got.item() == pytest.approx((0.25 + 0.0 + 0.875) / 3)
    # a similar pair inside m1 costs nothing
    near = double_margin_siamese_loss(ORIGIN[:1], t([[0.5, 0.0]]), torch.tensor([1]), 0.5, 2.0)
    assert near.item() == 0.0


def test_double_margin_with_zero_m1_is_the_siamese_loss():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(9, 4, generator=gen), torch.randn(9, 4, generator=gen)
    s = torch.randint(0, 2, (9,), generator=gen)
    assert double_margin_siamese_loss(a, b, s, 0.0, 3.0).item() == pytest.approx(
        siamese_loss(a, b, s, 3.0).item())


# --- cirtorch contrastive loss ---------------------------------------------------------------

def cirtorch_layout_loss(x: np.ndarray, label: np.ndarray, margin: float, eps: float) -> float:
    """cirtorch's formula on its own layout: columns [q, p, n1..nN] per tuple, label -1/1/0,
    summed over every non-query column."""
    total, query = 0.0, None
    for col, lbl in zip(x.T, label, strict=True):
        if lbl == -1:
            query = col
            continue
        d = math.sqrt(((query - col + eps) ** 2).sum())
        total += 0.5 * lbl * d ** 2 + 0.5 * (1 - lbl) * max(0.0, margin - d) ** 2
    return total


def test_contrastive_loss_by_hand():
    query, positive = t([[0.0, 0.0]]), t([[0.3, 0.4]])  # d_pos = 0.5 -> 0.125
    negatives = t([[[0.6, 0.0], [1.0, 0.0]]])  # d = 0.6 -> ½·0.1², d = 1 -> 0
    got = contrastive_loss(query, positive, negatives, margin=0.7, eps=0.0)
    assert got.item() == pytest.approx(0.125 + 0.005)
    wider = contrastive_loss(query, positive, negatives, margin=1.2, eps=0.0)
    assert wider.item() == pytest.approx(0.125 + 0.5 * 0.6 ** 2 + 0.5 * 0.2 ** 2)


def test_contrastive_loss_matches_cirtorch_layout():
    rng = np.random.default_rng(3)
    q, p, n = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 3, 5))
    q, p, n = q / 3, p / 3, n / 3  # distances near the margin, so hinges are active
    columns = np.concatenate([np.stack([q[i], p[i], *n[i]]) for i in range(4)]).T
    labels = np.array([-1, 1, 0, 0, 0] * 4)
    expected = cirtorch_layout_loss(columns, labels, 0.7, 1e-6)
    args = torch.from_numpy(q), torch.from_numpy(p), torch.from_numpy(n)
    assert contrastive_loss(*args, reduction="sum").item() == pytest.approx(expected, rel=1e-12)
    assert contrastive_loss(*args).item() == pytest.approx(expected / 4, rel=1e-12)


def test_contrastive_loss_has_a_gradient_at_zero_distance():
    query = torch.zeros(1, 3, requires_grad=True)
    loss = contrastive_loss(query, torch.zeros(1, 3), torch.zeros(1, 2, 3))
    loss.backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0


# --- Eqs. 2.17-2.18 --------------------------------------------------------------------------

def test_triplet_loss_by_hand():
    a, p, n = t([[0.0, 0.0]]), t([[1.0, 0.0]]), t([[2.0, 0.0]])  # D_ap = 1, D_an = 4
    assert triplet_loss(a, p, n, margin=1.0).item() == 0.0
    assert triplet_loss(a, p, n, margin=4.0).item() == pytest.approx(1.0)
    assert triplet_loss(a, n, p, margin=0.5).item() == pytest.approx(3.5)  # swapped roles


def test_batch_hard_with_one_triplet_per_anchor_equals_explicit_triplets():
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a, p, n = x[0:1], x[1:2], x[2:3]
    # labels (0, 0, 1): anchors 0 and 1 each have one positive and one negative
    explicit = (triplet_loss(a, p, n, 2.0) + triplet_loss(p, a, n, 2.0)) / 2
    mined = triplet_hard_loss(x, torch.tensor([0, 0, 1]), 2.0, distance="squared_l2",
                              normalize=False)
    assert mined.item() == pytest.approx(explicit.item(), rel=1e-12)


def test_joint_loss_weights_the_two_terms():
    x = t([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    logits = t([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    # batch-hard squared L2, margin 4: anchor 0 -> 4 + 1 - 4 = 1; anchor 1 -> 4 + 1 - 1 = 4
    triplet = (1.0 + 4.0) / 2
    ce = -np.mean([math.log(math.exp(2) / (math.exp(2) + 1)), math.log(0.5),
                   math.log(math.e / (math.e + 1))])
    for alpha, beta in [(1.0, 1.0), (2.0, 0.5), (0.0, 3.0)]:
        got = joint_loss(x, logits, labels, margin=4.0, alpha=alpha, beta=beta)
        assert got.item() == pytest.approx(alpha * triplet + beta * ce)


def test_losses_pass_gradients():
    gen = torch.Generator().manual_seed(5)
    a, b, c = (torch.randn(6, 3, generator=gen, requires_grad=True) for _ in range(3))
    s = torch.tensor([1, 0, 1, 0, 1, 0])
    losses = [siamese_loss(a, b, s, 10.0), double_margin_siamese_loss(a, b, s, 0.1, 10.0),
              triplet_loss(a, b, c, 10.0),
              contrastive_loss(a, b, c[:, None, :], margin=10.0),
              joint_loss(a, b, torch.tensor([0, 0, 1, 1, 2, 2]), margin=10.0)]
    for loss in losses:
        a.grad = None
        loss.backward()
        assert a.grad is not None and a.grad.abs().sum() > 0


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, True, "1"])
def test_margins_are_validated(bad):
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        siamese_loss(ORIGIN, OTHERS, SIMILAR, bad)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        triplet_loss(ORIGIN, OTHERS, OTHERS, bad)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        contrastive_loss(ORIGIN, OTHERS, OTHERS[:, None, :], bad)
    with pytest.raises(ValueError, match="margin_dissimilar must be a finite number"):
        double_margin_siamese_loss(ORIGIN, OTHERS, SIMILAR, 0.1, bad)


@pytest.mark.parametrize(("m1", "m2"), [(2.0, 2.0), (3.0, 1.0)])
def test_double_margin_needs_m1_below_m2(m1, m2):
    with pytest.raises(ValueError, match=r"margin_similar \(m1\) must be smaller"):
        double_margin_siamese_loss(ORIGIN, OTHERS, SIMILAR, m1, m2)


def test_shapes_and_labels_are_validated():
    with pytest.raises(ValueError, match="x_i, x_j must be 2-D"):
        siamese_loss(ORIGIN, OTHERS[:2], SIMILAR, 1.0)
    with pytest.raises(ValueError, match="anchor, positive, negative must be 2-D"):
        triplet_loss(ORIGIN, OTHERS, t([[1.0, 2.0, 3.0]] * 3), 1.0)
    with pytest.raises(ValueError, match="similar must hold only 0"):
        siamese_loss(ORIGIN, OTHERS, torch.tensor([1, 2, 0]), 1.0)
    with pytest.raises(ValueError, match="similar must be"):
        siamese_loss(ORIGIN, OTHERS, torch.tensor([1, 0]), 1.0)
    with pytest.raises(ValueError, match="negatives must be"):
        contrastive_loss(ORIGIN, OTHERS, OTHERS)
    with pytest.raises(ValueError, match="reduction must be one of"):
        contrastive_loss(ORIGIN, OTHERS, OTHERS[:, None, :], reduction="none")
    with pytest.raises(ValueError, match="predicted must be"):
        transformation_regression_loss(t([0.0]), ORIGIN, OTHERS, SIMILAR, 0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        joint_loss(OTHERS, OTHERS, torch.tensor([0, 0, 1]), 1.0, alpha=float("nan"))


# --- hard-negative mining --------------------------------------------------------------------

def greedy_mining(q: np.ndarray, pool: np.ndarray, q_groups, p_groups, n: int) -> list:
    """cirtorch's procedure: walk down each query's ranking, skip its own group and groups
    already taken."""
    result = []
    for i in range(len(q)):
        order = sorted(range(len(pool)), key=lambda j: (-float(pool[j] @ q[i]), j))
        used, picked = {q_groups[i]}, []
        for j in order:
            if p_groups[j] not in used:
                picked.append(j)
                used.add(p_groups[j])
            if len(picked) == n:
                break
        result.append(picked)
    return result


def test_mining_by_hand():
    query = t([[1.0, 0.0]])
    pool = t([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [-1.0, 0.0]])
    pool_groups = torch.tensor([10, 20, 20, 30, 40])  # pool 0 shares the query's group 10
    assert mine_hard_negatives(query, pool, torch.tensor([10]), pool_groups, n=2).tolist() \
        == [[1, 3]]
    assert mine_hard_negatives(query, pool, torch.tensor([10]), pool_groups, n=3).tolist() \
        == [[1, 3, 4]]
    with pytest.raises(ValueError, match="only 3 available"):
        mine_hard_negatives(query, pool, torch.tensor([10]), pool_groups, n=4)
    # a query of a group absent from the pool may use every pool group
    assert mine_hard_negatives(query, pool, torch.tensor([99]), pool_groups, n=4).tolist() \
        == [[0, 1, 3, 4]]


@pytest.mark.parametrize("seed", [0, 1])
def test_mining_matches_the_greedy_walk(seed):
    rng = np.random.default_rng(seed)
    q, pool = rng.normal(size=(6, 4)), rng.normal(size=(40, 4))
    q_groups, p_groups = rng.integers(0, 9, size=6), rng.integers(0, 9, size=40)
    got = mine_hard_negatives(torch.from_numpy(q), torch.from_numpy(pool),
                              torch.from_numpy(q_groups), torch.from_numpy(p_groups), n=5)
    assert got.tolist() == greedy_mining(q, pool, q_groups.tolist(), p_groups.tolist(), 5)


def test_mining_is_validated():
    q, pool, groups = t([[1.0, 0.0]]), t([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="n must be a positive integer"):
        mine_hard_negatives(q, pool, torch.tensor([5]), groups, n=0)
    with pytest.raises(ValueError, match="pool_groups must be"):
        mine_hard_negatives(q, pool, torch.tensor([5]), torch.tensor([0]), n=1)
    with pytest.raises(ValueError, match="the same d"):
        mine_hard_negatives(t([[1.0, 0.0, 0.0]]), pool, torch.tensor([5]), groups, n=1)
