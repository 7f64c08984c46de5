"""Deep hashing head (Eq. 2.12) and its code-quality and similarity losses (chapter 2)."""

import math

import numpy as np
import pytest
import torch

from irbook.losses.deep_hashing import (
    DeepHashingWeights,
    bit_balance_loss,
    decorrelation_loss,
    deep_hashing_loss,
    hashing_pair_loss,
    hashing_quantization_loss,
    relaxed_hamming_distance,
)
from irbook.models.hash_head import HashHead, hash_relaxation


def t(values):
    return torch.tensor(values, dtype=torch.float64)


# --- code-quality terms ----------------------------------------------------------------------

def test_quantization_by_hand():
    h = t([[0.5, -0.5], [1.0, -1.0]])  # sign codes (1, -1) twice; gaps 0.5, 0.5, 0, 0
    assert hashing_quantization_loss(h).item() == pytest.approx((0.25 + 0.25) / 2)
    assert hashing_quantization_loss(t([[1.0, -1.0], [-1.0, 1.0]])).item() == 0.0


def test_balance_by_hand():
    assert bit_balance_loss(t([[1.0, -1.0], [-1.0, 1.0]])).item() == 0.0
    assert bit_balance_loss(t([[1.0, 1.0], [1.0, -1.0]])).item() == pytest.approx(1.0)
    assert bit_balance_loss(t([[0.5, 0.2], [0.1, 0.2]])).item() == pytest.approx(0.09 + 0.04)


def test_decorrelation_by_hand_and_against_numpy():
    orthogonal = t([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert decorrelation_loss(orthogonal).item() == 0.0
    # identical bits: (1/B) HᵀH is all ones, the two off-diagonal entries cost 1 each
    assert decorrelation_loss(t([[1.0, 1.0], [1.0, 1.0]])).item() == pytest.approx(2.0)
    h = np.tanh(np.random.default_rng(0).normal(size=(7, 5)))
    expected = np.linalg.norm(h.T @ h / 7 - np.eye(5), "fro") ** 2
    assert decorrelation_loss(torch.from_numpy(h)).item() == pytest.approx(expected, rel=1e-12)


def test_relaxed_hamming_is_the_hamming_distance_on_sign_codes():
    rng = np.random.default_rng(1)
    a, b = rng.choice([-1.0, 1.0], size=(6, 12)), rng.choice([-1.0, 1.0], size=(6, 12))
    got = relaxed_hamming_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert got.tolist() == (a != b).sum(axis=1).astype(float).tolist()


# --- similarity term -------------------------------------------------------------------------

def loop_pair_loss(h: np.ndarray, similar: np.ndarray, margin: float) -> float:
    values = []
    for i in range(len(h)):
        for j in range(i + 1, len(h)):
            d = ((h[i] - h[j]) ** 2).sum() / 4
            s = similar[i, j]
            values.append(0.5 * s * d + 0.5 * (1 - s) * max(0.0, margin - d))
    return float(np.mean(values))


def test_pair_loss_by_hand():
    h = t([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # Hamming distances 1 (0-1), 2 (0-2), 1 (1-2)
    labels = torch.tensor([0, 0, 1])
    # pair 0-1 similar at 1 bit -> ½; 0-2 dissimilar at 2 bits >= K/2 -> 0; 1-2 -> ½ (1 - 1) = 0
    assert hashing_pair_loss(h, labels).item() == pytest.approx(0.5 / 3)
    # margin 2 bits: pair 1-2 costs ½ (2 - 1)
    assert hashing_pair_loss(h, labels, margin=2.0).item() == pytest.approx(1.0 / 3)


@pytest.mark.parametrize("multi_hot", [False, True])
def test_pair_loss_matches_a_loop(multi_hot):
    rng = np.random.default_rng(2)
    h = np.tanh(rng.normal(size=(8, 6)))
    if multi_hot:
        labels = (rng.random(size=(8, 4)) < 0.3).astype(float)
        similar = (labels @ labels.T > 0).astype(float)
    else:
        labels = rng.integers(0, 3, size=8)
        similar = (labels[:, None] == labels[None, :]).astype(float)
    got = hashing_pair_loss(torch.from_numpy(h), torch.from_numpy(labels), margin=2.5)
    assert got.item() == pytest.approx(loop_pair_loss(h, similar, 2.5), rel=1e-12)


# --- combined loss ---------------------------------------------------------------------------

def test_combined_loss_is_the_weighted_sum_and_weights_matter():
    h = torch.tanh(torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator()
                               .manual_seed(3)))
    similarity = hashing_pair_loss(h, torch.tensor([0, 0, 1, 1, 2, 2]))
    weights = DeepHashingWeights(quantization=0.5, balance=2.0, decorrelation=0.1)
    terms = deep_hashing_loss(h, similarity, weights)
    expected = (similarity + 0.5 * hashing_quantization_loss(h) + 2.0 * bit_balance_loss(h)
                + 0.1 * decorrelation_loss(h))
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-12)
    for name in ("quantization", "balance", "decorrelation"):
        heavier = DeepHashingWeights(**{**weights.__dict__, name: getattr(weights, name) + 1})
        gained = deep_hashing_loss(h, similarity, heavier)["total"] - terms["total"]
        assert gained.item() == pytest.approx(terms[name].item(), rel=1e-12)
        assert terms[name].item() > 0


@pytest.mark.parametrize("bad", [float("nan"), -1.0, math.inf, True])
def test_weights_are_validated(bad):
    with pytest.raises(ValueError, match="balance must be a finite number >= 0"):
        DeepHashingWeights(balance=bad)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="h must be"):
        bit_balance_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        hashing_pair_loss(torch.zeros(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must be"):
        hashing_pair_loss(torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="margin must be a finite number"):
        hashing_pair_loss(torch.zeros(3, 4), torch.tensor([0, 1, 1]), margin=float("nan"))
    with pytest.raises(ValueError, match="similarity_loss must be a scalar"):
        deep_hashing_loss(torch.zeros(3, 4), torch.zeros(2))


# --- the head --------------------------------------------------------------------------------

def test_relaxation_is_tanh_of_the_linear_map():
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(8, 3)), rng.normal(size=8)
    got = hash_relaxation(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    np.testing.assert_allclose(got.numpy(), np.tanh(x @ w.T + b), rtol=1e-12)
    with pytest.raises(ValueError, match="the same d"):
        hash_relaxation(torch.from_numpy(x), torch.from_numpy(w[:, :2]))
    with pytest.raises(ValueError, match="bias must be"):
        hash_relaxation(torch.from_numpy(x), torch.from_numpy(w), torch.zeros(3))


def test_head_codes_are_the_signs_of_the_relaxation():
    torch.manual_seed(0)
    head = HashHead(6, 16)
    x = torch.randn(20, 6)
    h = head(x)
    assert h.shape == (20, 16) and (h.abs() < 1).all()
    signs = head.codes(x, "sign")
    bits = head.codes(x)
    assert signs.dtype == np.int8 and bits.dtype == np.uint8
    np.testing.assert_array_equal(signs, np.where(h.detach().numpy() >= 0, 1, -1))
    np.testing.assert_array_equal(bits, (signs == 1).astype(np.uint8))
    with pytest.raises(ValueError, match="code_format must be one of"):
        head.codes(x, "packed")
    with pytest.raises(ValueError, match="n_bits must be a positive integer"):
        HashHead(6, 0)


def class_hamming(head: HashHead, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean Hamming distance of the head's codes within classes and across classes."""
    codes = head.codes(x, "sign").astype(int)
    hamming = (head.n_bits - codes @ codes.T) / 2
    same = (labels[:, None] == labels[None, :]).numpy()
    return hamming[same].mean(), hamming[~same].mean()


def test_gradients_reach_the_head_and_training_separates_classes():
    torch.manual_seed(1)
    labels = torch.arange(3).repeat_interleave(8)
    x = 0.5 * torch.randn(3, 8)[labels] + 0.3 * torch.randn(24, 8)
    head = HashHead(8, 12)
    within_before, across_before = class_hamming(head, x, labels)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    weights = DeepHashingWeights(decorrelation=0.1)
    for step in range(100):
        h = head(x)
        loss = deep_hashing_loss(h, hashing_pair_loss(h, labels), weights)["total"]
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert head.linear.weight.grad.abs().sum() > 0
            first = loss.item()
        optimizer.step()
    assert loss.item() < first
    within, across = class_hamming(head, x, labels)
    assert within < within_before / 2 and across > across_before + 1
