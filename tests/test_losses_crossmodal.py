"""Chapter-4 losses (Eqs. 4.1-4.14, CMPM/CMPC, VSE++) against loops, numpy and hand values."""

import math

import numpy as np
import pytest
import torch
from scipy.special import rel_entr

from irbook.losses.crossmodal import (
    bidirectional_triplet_loss,
    cmpc_logits,
    cmpc_loss,
    cmpm_loss,
    imbalance_kl_loss,
    inter_modal_triplet,
    intra_modal_triplet,
    modality_cross_entropy,
    negative_entropy_loss,
    paired_projection,
    projection_similarity,
    vsepp_loss,
)

LABELS = [0, 0, 1, 2, 2, 3]


def softmax_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(3)
    return rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), np.array(LABELS)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# --- Eqs. 4.4 and 4.5 ------------------------------------------------------------------------

def test_negative_entropy_matches_loops_and_limits():
    rng = np.random.default_rng(0)
    li, lt = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    expected = 0.0
    for logits in (li, lt):
        for row in softmax_np(logits):
            expected += sum(p * math.log(p) for p in row) / 5
    assert negative_entropy_loss(t(li), t(lt)).item() == pytest.approx(expected)
    zeros = torch.zeros(3, 2, dtype=torch.float64)
    assert negative_entropy_loss(zeros, zeros).item() == pytest.approx(-2 * math.log(2))
    sure = t([[30.0, -30.0]] * 3)
    assert negative_entropy_loss(sure, sure).item() == pytest.approx(0.0, abs=1e-12)


def test_modality_cross_entropy_by_hand():
    li, lt = t([[2.0, 0.0], [0.0, 0.0]]), t([[0.0, 1.0], [1.0, 0.0]])
    p_img = [math.exp(2) / (math.exp(2) + 1), 0.5]
    p_txt = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    expected = -(sum(map(math.log, p_img)) + sum(map(math.log, p_txt))) / 2
    assert modality_cross_entropy(li, lt).item() == pytest.approx(expected)


def test_logits_shape_checked():
    with pytest.raises(ValueError, match="image_logits"):
        negative_entropy_loss(torch.zeros(3, 3), torch.zeros(3, 2))


# --- Eqs. 4.1-4.3 ----------------------------------------------------------------------------

def test_projection_by_hand():
    x, z = t([[3.0, 4.0]]), t([[2.0, 0.0]])
    assert paired_projection(x, z).tolist() == [[3.0, 0.0]]  # <x, z̄> z̄ = 3 * (1, 0)
    assert projection_similarity(x, z).item() == pytest.approx(3.0)
    assert projection_similarity(z, x).item() == pytest.approx(2 * 3 / 5)


def test_projection_length_is_the_similarity(pairs):
    image, text, _ = pairs
    proj = paired_projection(t(image), t(text)).numpy()
    for j in range(len(image)):
        assert np.linalg.norm(proj[j]) == pytest.approx(abs(image[j] @ unit(text[j])))
    sim = projection_similarity(t(image), t(text)).numpy()
    assert sim[1, 4] == pytest.approx(image[1] @ unit(text[4]))


# --- CMPM (Eqs. 4.6-4.9) ---------------------------------------------------------------------

def loop_cmpm(image, text, labels, eps=1e-8) -> float:
    n = len(labels)
    total = 0.0
    for x, z in ((image, text), (text, image)):
        for j in range(n):
            logits = np.array([x[j] @ unit(z[k]) for k in range(n)])
            p = np.exp(logits - logits.max())
            p /= p.sum()
            y = np.array([float(labels[k] == labels[j]) for k in range(n)])
            q = y / y.sum()
            total += sum(p[k] * math.log(eps + p[k] / (q[k] + eps)) for k in range(n)) / n
    return total


def test_cmpm_matches_loops(pairs):
    image, text, labels = pairs
    got = cmpm_loss(t(image), t(text), torch.tensor(labels)).item()
    assert got == pytest.approx(loop_cmpm(image, text, labels), rel=1e-9)


def test_cmpm_near_zero_when_projection_matches_target():
    # two orthogonal pairs with long image vectors: p -> one-hot on the matching text = q
    image = t([[50.0, 0.0], [0.0, 50.0]])
    text = t([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert cmpm_loss(image, text * 50, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert cmpm_loss(image, text.flip(0) * 50, labels).item() > 10


# --- CMPC (Eq. 4.10) and L_di (Eq. 4.11) -----------------------------------------------------

def loop_cmpc(image, text, labels, weight) -> float:
    w_bar = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    total = 0.0
    for j in range(len(labels)):
        for x, z in ((image[j], text[j]), (text[j], image[j])):
            projected = (x @ unit(z)) * unit(z)
            logits = projected @ w_bar
            total -= logits[labels[j]] - math.log(np.exp(logits).sum())
    return total / len(labels)


def test_cmpc_matches_loops(pairs):
    image, text, labels = pairs
    weight = np.random.default_rng(1).normal(size=(4, 4))
    got = cmpc_loss(t(image), t(text), torch.tensor(labels), t(weight)).item()
    assert got == pytest.approx(loop_cmpc(image, text, labels, weight), rel=1e-9)


def test_cmpc_logits_ignore_weight_scale(pairs):
    image, text, _ = pairs
    weight = t(np.random.default_rng(2).normal(size=(4, 3)))
    a = cmpc_logits(t(image), t(text), weight)
    b = cmpc_logits(t(image), t(text), weight * t([1.0, 7.0, 0.1]))
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y)


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(rel_entr(p, q).sum() + rel_entr(q, p).sum())


def test_imbalance_kl_tau_one_is_symmetric_kl():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    expected = symmetric_kl(softmax_np(a), softmax_np(b)) / 3
    assert imbalance_kl_loss(t(a), t(b), tau=1.0).item() == pytest.approx(expected)
    expected_tau = 16 * symmetric_kl(softmax_np(a / 4), softmax_np(b / 4)) / 3
    assert imbalance_kl_loss(t(a), t(b), tau=4.0).item() == pytest.approx(expected_tau)
    assert imbalance_kl_loss(t(a), t(a), tau=2.0).item() == pytest.approx(0.0, abs=1e-12)


def test_imbalance_kl_by_hand():
    # p = (1/2, 1/2), q = softmax(log 3, 0) = (3/4, 1/4)
    a, b = t([[0.0, 0.0]]), t([[math.log(3), 0.0]])
    kl_pq = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qp = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert imbalance_kl_loss(a, b, tau=1.0).item() == pytest.approx(kl_pq + kl_qp)


def test_imbalance_kl_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        imbalance_kl_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=0.0)


# --- bi-directional triplet (Eqs. 4.12-4.14) -------------------------------------------------

def hardest_hinge(sims_pos, sims_neg, margin) -> float:
    if not sims_pos or not sims_neg:
        return 0.0
    return max(0.0, margin - min(sims_pos) + max(sims_neg))


def loop_triplet(image, text, labels, margin) -> tuple[float, float]:
    n = len(labels)
    xi, xt = [unit(v) for v in image], [unit(v) for v in text]
    inter = intra = 0.0
    for a_set, g_set in ((xi, xt), (xt, xi)):
        for j in range(n):
            pos = [a_set[j] @ g_set[k] for k in range(n) if labels[k] == labels[j]]
            neg = [a_set[j] @ g_set[k] for k in range(n) if labels[k] != labels[j]]
            inter += hardest_hinge(pos, neg, margin)
    for x in (xi, xt):
        for j in range(n):
            pos = [x[j] @ x[k] for k in range(n) if k != j and labels[k] == labels[j]]
            neg = [x[j] @ x[k] for k in range(n) if labels[k] != labels[j]]
            intra += hardest_hinge(pos, neg, margin)
    return inter / n, intra / n


def test_triplet_matches_loops(pairs):
    image, text, labels = pairs
    inter, intra = loop_triplet(image, text, labels, margin=0.5)
    y = torch.tensor(labels)
    assert inter_modal_triplet(t(image), t(text), y, 0.5).item() == pytest.approx(inter)
    assert intra_modal_triplet(t(image), t(text), y, 0.5).item() == pytest.approx(intra)
    total = bidirectional_triplet_loss(t(image), t(text), y, 0.5).item()
    assert total == pytest.approx(inter + intra)
    assert inter > 0 and intra > 0


def test_triplet_by_hand():
    # two pairs, 2-D, distinct labels: no intra positives; cosines read off the unit circle
    image = t([[1.0, 0.0], [0.0, 1.0]])
    text = t([[1.0, 1.0], [0.0, 1.0]])  # text 0 at 45 degrees
    c = 1 / math.sqrt(2)
    # i->t: img0 pos c, neg 0 -> 0.5 - c; img1 pos 1, neg c -> 0.5 - 1 + c
    # t->i: txt0 pos c, neg c -> 0.5; txt1 pos 1, neg 0 -> 0
    expected = (max(0, 0.5 - c) + max(0, c - 0.5) + 0.5 + 0.0) / 2
    got = inter_modal_triplet(image, text, torch.tensor([0, 1]), 0.5).item()
    assert got == pytest.approx(expected)
    assert intra_modal_triplet(image, text, torch.tensor([0, 1]), 0.5).item() == 0.0


def test_triplet_uses_least_similar_positive():
    # two captions of image 0: the far one (orthogonal) decides the hinge
    image = t([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    text = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # i->t anchors 0, 1: pos min(1, 0) = 0, neg -1 -> 0.5 - 0 - 1 = -0.5 -> 0; with margin 1.5: 0.5
    got = inter_modal_triplet(image, text, labels, 1.5).item()
    inter, _ = loop_triplet(image.numpy(), text.numpy(), labels.numpy(), 1.5)
    assert got == pytest.approx(inter)
    assert got > 0


def test_triplet_rejects_bad_margin(pairs):
    image, text, labels = pairs
    with pytest.raises(ValueError, match="margin"):
        bidirectional_triplet_loss(t(image), t(text), torch.tensor(labels), margin=0.0)


# --- VSE++ -----------------------------------------------------------------------------------

def loop_vsepp(image, text, margin, labels=None) -> float:
    n = len(image)
    sim = np.array([[unit(image[a]) @ unit(text[b]) for b in range(n)] for a in range(n)])
    same = (lambda a, b: a == b) if labels is None else (lambda a, b: labels[a] == labels[b])
    total = 0.0
    for j in range(n):
        total += max([max(0.0, margin + sim[j, k] - sim[j, j]) for k in range(n)
                      if not same(j, k)] + [0.0])
        total += max([max(0.0, margin + sim[k, j] - sim[j, j]) for k in range(n)
                      if not same(j, k)] + [0.0])
    return total


def test_vsepp_matches_loops(pairs):
    image, text, labels = pairs
    assert vsepp_loss(t(image), t(text)).item() == pytest.approx(loop_vsepp(image, text, 0.2))
    masked = vsepp_loss(t(image), t(text), labels=torch.tensor(labels)).item()
    assert masked == pytest.approx(loop_vsepp(image, text, 0.2, labels))


def test_vsepp_by_hand():
    image = t([[1.0, 0.0], [0.0, 1.0]])
    text = t([[1.0, 0.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)
    # S = [[1, c], [0, c]]; diag (1, c)
    # caption negatives: img0: 0.2 + c - 1 < 0 -> 0; img1: 0.2 + 0 - c < 0 -> 0
    # image negatives: txt0: 0.2 + 0 - 1 -> 0; txt1: 0.2 + c - c = 0.2
    assert vsepp_loss(image, text).item() == pytest.approx(0.2)
    # margin 0.5: img0 caption negative 0.5 + c - 1; txt1 image negative 0.5 -> sum = c
    assert vsepp_loss(image, text, margin=0.5).item() == pytest.approx(c)


# --- gradients: one SGD step lowers every loss -------------------------------------------------

LOSSES = {
    "entropy": lambda i, x, y, w: negative_entropy_loss(i[:, :2], x[:, :2]),
    "modality": lambda i, x, y, w: modality_cross_entropy(i[:, :2], x[:, :2]),
    "cmpm": lambda i, x, y, w: cmpm_loss(i, x, y),
    "cmpc": lambda i, x, y, w: cmpc_loss(i, x, y, w),
    "imbalance": lambda i, x, y, w: imbalance_kl_loss(*cmpc_logits(i, x, w), tau=4.0),
    "triplet": lambda i, x, y, w: bidirectional_triplet_loss(i, x, y, 0.5),
    "vsepp": lambda i, x, y, w: vsepp_loss(i, x, labels=y),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sgd_step_decreases_loss(name, pairs):
    image, text, labels = pairs
    params = [t(image).requires_grad_(), t(text).requires_grad_(),
              t(np.random.default_rng(5).normal(size=(4, 4))).requires_grad_()]
    y = torch.tensor(labels)
    before = LOSSES[name](*params[:2], y, params[2])
    before.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= 1e-3 * p.grad
    after = LOSSES[name](*params[:2], y, params[2])
    assert after.item() < before.item()
