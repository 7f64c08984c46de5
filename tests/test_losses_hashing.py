"""Chapter-3, DCMH and SSAH losses against loops, numpy and hand-computed values."""

import math

import numpy as np
import pytest
import torch

from irbook.losses import hashing as L


def t(values):
    return torch.tensor(values, dtype=torch.float64)


LABELS_A = t([[1, 1, 0], [0, 0, 1]])
LABELS_B = t([[1, 0, 0], [0, 1, 1], [0, 0, 0]])


def test_similarity_matrices_by_hand():
    assert L.similarity_matrix(LABELS_A, LABELS_B).tolist() == [[1, 1, 0], [0, 1, 0]]
    # shared labels / c (c = 3)
    assert np.allclose(L.multilevel_similarity(LABELS_A, LABELS_B).numpy(),
                       [[1 / 3, 1 / 3, 0], [0, 1 / 3, 0]])
    with pytest.raises(ValueError, match="labels"):
        L.similarity_matrix(LABELS_A, t([[1, 0]]))


def test_quantization_by_hand():
    h = t([[0.5, -0.2], [0.0, 0.9]])
    # B = sign(H) with sign(0) = +1: (0.5)² + (0.8)² + 1² + (0.1)²
    assert L.quantization_loss(h).item() == pytest.approx(1.9)
    assert L.quantization_loss(h, t([[-1, -1], [-1, 1]])).item() == pytest.approx(
        1.5 ** 2 + 0.8 ** 2 + 1 + 0.1 ** 2)


def test_negative_entropy_is_smallest_at_one_half():
    grid = np.linspace(0.01, 0.99, 99)
    p = torch.from_numpy(np.stack([grid, 1 - grid], axis=1))
    per_row = [L.negative_entropy(row[None]).item() for row in p]
    assert grid[int(np.argmin(per_row))] == pytest.approx(0.5)
    assert min(per_row) == pytest.approx(-math.log(2))  # entropy log 2 is the maximum
    assert L.negative_entropy(t([[1.0, 0.0]])).item() == 0.0  # 0 log 0 = 0, no NaN


def test_domain_uncertainty_is_the_sum_of_both_parts():
    rng = np.random.default_rng(0)
    pr, pb = rng.dirichlet([1, 1], size=5), rng.dirichlet([1, 1], size=5)
    expected = np.sum(pr * np.log(pr)) + np.sum(pb * np.log(pb))
    assert L.domain_uncertainty_loss(t(pr), t(pb)).item() == pytest.approx(expected)


@pytest.mark.parametrize("start", [0.9, 0.2])
def test_entropy_gradient_pushes_predictor_towards_one_half(start):
    logit = torch.tensor([math.log(start / (1 - start)), 0.0], requires_grad=True)
    before = torch.softmax(logit, 0)[0].item()
    for _ in range(20):
        loss = L.negative_entropy(torch.softmax(logit, 0)[None])
        (grad,) = torch.autograd.grad(loss, logit)
        logit = (logit - 0.5 * grad).detach().requires_grad_(True)
    after = torch.softmax(logit, 0)[0].item()
    assert abs(after - 0.5) < 0.5 * abs(before - 0.5)


def test_entropy_gradient_reaches_an_encoder_through_a_fixed_predictor():
    torch.manual_seed(0)
    encoder, predictor = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    with torch.no_grad():
        predictor.weight.mul_(5)
    x = torch.randn(16, 4)
    spread = lambda: (torch.softmax(predictor(encoder(x)), 1)[:, 0] - 0.5).abs().mean().item()  # noqa: E731
    before = spread()
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.2)
    for _ in range(60):
        optimizer.zero_grad()
        (L.negative_entropy(torch.softmax(predictor(encoder(x)), 1)) / len(x)).backward()
        optimizer.step()
    assert spread() < 0.3 * before


def test_domain_classification_matches_numpy():
    logits = t([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
    domains = torch.tensor([0, 1, 1])
    z = logits.numpy()
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = -np.mean(log_p[np.arange(3), domains.numpy()])
    assert L.domain_classification_loss(logits, domains).item() == pytest.approx(expected)


def pairwise_loop(a, b, s):
    total = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            delta = 0.5 * float(np.dot(a[i], b[j]))
            total -= s[i, j] * delta - math.log(1 + math.exp(delta))
    return total


def test_pairwise_likelihood_matches_a_loop():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    s = (rng.random((3, 5)) < 0.5).astype(float)
    assert L.pairwise_likelihood_loss(t(a), t(b), t(s)).item() == pytest.approx(
        pairwise_loop(a, b, s))


def test_pairwise_likelihood_is_stable_for_large_inner_products():
    a = t([[20.0, 0.0], [-20.0, 0.0]])
    b = t([[20.0, 0.0]])  # Δ = ±200
    loss = L.pairwise_likelihood_loss(a, b, t([[1.0], [0.0]]))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(0.0, abs=1e-12)
    assert L.pairwise_likelihood_loss(a, b, t([[0.0], [1.0]])).item() == pytest.approx(400.0)


def test_multilevel_matches_a_loop():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    w = rng.random((3, 2))
    expected = sum((1 / (1 + math.exp(-2 * 0.5 * np.dot(a[i], b[j]))) - w[i, j]) ** 2
                   for i in range(3) for j in range(2))
    assert L.multilevel_loss(t(a), t(b), t(w)).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="w must have shape"):
        L.multilevel_loss(t(a), t(b), t(w.T))


def test_label_prediction_is_the_bce_of_eq_3_6():
    logits = t([[0.3, -2.0], [4.0, 0.0]])
    labels = t([[1, 0], [0, 1]])
    p = 1 / (1 + np.exp(-logits.numpy()))
    expected = -np.sum(labels.numpy() * np.log(p) + (1 - labels.numpy()) * np.log(1 - p))
    assert L.label_prediction_loss(logits, labels).item() == pytest.approx(expected)


def test_total_loss_weights_each_term():
    weights = L.HashingLossWeights(alpha=100, beta=2, gamma=3, eta=0.1, epsilon=5)
    terms = {k: t(1.0) for k in ("domain", "pairs", "label", "multilevel", "quantization")}
    assert L.total_hashing_loss(terms, weights).item() == pytest.approx(110.1)
    baseline1 = {"pairs": t(2.0), "quantization": t(3.0)}
    assert L.total_hashing_loss(baseline1, weights).item() == pytest.approx(2 * 2 + 5 * 3)
    with pytest.raises(ValueError, match="unknown terms"):
        L.total_hashing_loss({"other": t(1.0)}, weights)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_weights_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        L.HashingLossWeights(eta=bad)


def test_dcmh_loss_matches_numpy():
    rng = np.random.default_rng(3)
    f, g = rng.standard_normal((3, 4)), rng.standard_normal((6, 4))
    s = (rng.random((3, 6)) < 0.5).astype(float)
    b = np.where(rng.random((3, 4)) < 0.5, 1.0, -1.0)
    rest = rng.standard_normal(4)
    theta = 0.5 * f @ g.T
    pairs = -np.sum(s * theta - np.log1p(np.exp(theta)))
    quant = np.sum((b - f) ** 2)
    balance = np.sum((f.sum(0) + rest) ** 2)
    out = L.dcmh_loss(t(f), t(g), t(s), t(b), t(rest), gamma=2.0, eta=0.5)
    assert out["pairs"].item() == pytest.approx(pairs)
    assert out["quantization"].item() == pytest.approx(quant)
    assert out["balance"].item() == pytest.approx(balance)
    assert out["total"].item() == pytest.approx(pairs + 2 * quant + 0.5 * balance)


def test_dcmh_codes_sign_of_the_sum():
    codes = L.dcmh_codes(t([[0.5, -0.5, -1.0]]), t([[-0.5, 0.2, 2.0]]))
    assert codes.tolist() == [[1.0, -1.0, 1.0]]  # sign(0) = +1


def test_ssah_terms_match_numpy():
    rng = np.random.default_rng(4)
    feat, ref_f = rng.standard_normal((2, 5)), rng.standard_normal((4, 5))
    codes, ref_h = np.tanh(rng.standard_normal((2, 3))), np.tanh(rng.standard_normal((4, 3)))
    probs, labels = rng.random((2, 2)), (rng.random((2, 2)) < 0.5).astype(float)
    s = (rng.random((2, 4)) < 0.5).astype(float)
    out = L.ssah_terms(t(feat), t(codes), t(probs), t(labels), t(ref_f), t(ref_h), t(s))
    assert out["pairs_feature"].item() == pytest.approx(pairwise_loop(feat, ref_f, s))
    assert out["pairs_code"].item() == pytest.approx(pairwise_loop(codes, ref_h, s))
    assert out["quantization"].item() == pytest.approx(
        np.sum((codes - np.where(codes >= 0, 1, -1)) ** 2))
    assert out["label"].item() == pytest.approx(np.sum((probs - labels) ** 2))


def test_ssah_adversarial_terms_match_numpy():
    real, fake = t([0.3, -1.0]), t([2.0, -0.5, 0.1])

    def bce(z, y):
        p = 1 / (1 + np.exp(-z))
        return -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert L.discriminator_loss(real, fake).item() == pytest.approx(
        bce(real.numpy(), 1) + bce(fake.numpy(), 0))
    assert L.generator_adversarial_loss(fake).item() == pytest.approx(bce(fake.numpy(), 1))
