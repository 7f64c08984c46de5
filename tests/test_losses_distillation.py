"""LwF (Eq. 5.3), feature distances, Gram matrices and correlation distillation (Eqs. 6.4-6.5)
against numpy loops, the reference's kl_div call, and gradcheck."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irbook.losses import (
    correlation_distillation,
    feature_distillation,
    gram_matrix,
    lwf_distillation,
    multi_model_correlation,
)


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def loop_correlation(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """sum_ij P_s log(P_s / P_t) * T² / B with P = row softmax of F Fᵀ / T (no normalisation)."""
    batch = len(student)
    total = 0.0
    for i in range(batch):
        p_s = softmax([float(student[i] @ student[j]) / temperature for j in range(batch)])
        p_t = softmax([float(teacher[i] @ teacher[j]) / temperature for j in range(batch)])
        total += sum(a * math.log(a / b) for a, b in zip(p_s, p_t, strict=True))
    return total * temperature**2 / batch


def unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- LwF ---------------------------------------------------------------------------------

def test_lwf_matches_eq_5_3_on_the_old_columns_only():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(4, 7)) * 2, rng.normal(size=(4, 5)) * 2
    expected = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p = softmax(t_row / 2.0)
        q = softmax(s_row[:5] / 2.0)
        expected += -sum(a * math.log(b) for a, b in zip(p, q, strict=True))
    got = lwf_distillation(torch.from_numpy(student), torch.from_numpy(teacher), 2.0)
    assert got.item() == pytest.approx(expected / 4, rel=1e-12)


def test_lwf_has_no_t_squared_factor_and_equals_teacher_entropy_at_agreement():
    logits = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    p = 1 / (1 + math.exp(-1.0))  # softmax([1, 0]) at T = 2
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert lwf_distillation(logits, logits, 2.0).item() == pytest.approx(entropy, rel=1e-12)


def test_lwf_new_columns_get_no_gradient():
    student = torch.randn(3, 6, requires_grad=True)
    lwf_distillation(student, torch.randn(3, 4)).backward()
    assert torch.all(student.grad[:, 4:] == 0) and student.grad[:, :4].abs().sum() > 0


def test_lwf_rejects_bad_input():
    with pytest.raises(ValueError, match="student_logits must be"):
        lwf_distillation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        lwf_distillation(torch.zeros(2, 4), torch.zeros(2, 4), 0.0)


# ---- feature distances ------------------------------------------------------------------

def test_feature_distances_match_numpy():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)
    euclid = np.mean([math.sqrt(((a - b) ** 2).sum()) for a, b in zip(s, t, strict=True)])
    manhattan = np.mean([np.abs(a - b).sum() for a, b in zip(s, t, strict=True)])
    squared = np.mean([((a - b) ** 2).sum() for a, b in zip(s, t, strict=True)])
    assert feature_distillation(ts, tt).item() == pytest.approx(euclid, rel=1e-12)
    assert feature_distillation(ts, tt, p=1).item() == pytest.approx(manhattan, rel=1e-12)
    assert feature_distillation(ts, tt, squared=True).item() == pytest.approx(squared, rel=1e-12)


@pytest.mark.parametrize(("p", "squared"), [(2, False), (1, False), (2, True)])
def test_feature_distance_at_identical_features_is_zero_with_zero_gradient(p, squared):
    teacher = torch.randn(4, 6)
    student = teacher.clone().requires_grad_(True)
    loss = feature_distillation(student, teacher, p=p, squared=squared)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(student.grad == 0)  # finite: no NaN from the norm's kink


def test_feature_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        feature_distillation(torch.zeros(2, 3), torch.zeros(2, 3), p=3)
    with pytest.raises(ValueError, match="squared=True needs p=2"):
        feature_distillation(torch.zeros(2, 3), torch.zeros(2, 3), p=1, squared=True)
    with pytest.raises(ValueError, match="same, non-zero number of rows"):
        feature_distillation(torch.zeros(2, 3), torch.zeros(3, 3))


# ---- Gram matrices ------------------------------------------------------------------------

def test_linear_gram_of_normalised_rows_holds_cosines():
    x = np.random.default_rng(2).normal(size=(4, 3)) * 3
    g = gram_matrix(torch.from_numpy(x)).numpy()
    for i in range(4):
        for j in range(4):
            cos = x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            assert g[i, j] == pytest.approx(cos, rel=1e-12)
    raw = gram_matrix(torch.from_numpy(x), normalize=False).numpy()
    np.testing.assert_allclose(raw, x @ x.T, rtol=1e-12)


def test_rbf_gram_matches_a_loop():
    x = np.random.default_rng(3).normal(size=(3, 2))
    g = gram_matrix(torch.from_numpy(x), kernel="rbf", normalize=False, sigma=0.7).numpy()
    for i in range(3):
        for j in range(3):
            expected = math.exp(-((x[i] - x[j]) ** 2).sum() / (2 * 0.49))
            assert g[i, j] == pytest.approx(expected, rel=1e-12)


def test_gram_rejects_bad_input():
    with pytest.raises(ValueError, match="kernel must be one of"):
        gram_matrix(torch.zeros(2, 3), kernel="poly")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gram_matrix(torch.zeros(2, 3), kernel="rbf", sigma=0.0)
    with pytest.raises(ValueError, match="features must be"):
        gram_matrix(torch.zeros(3))


# ---- correlation distillation -------------------------------------------------------------

def test_correlation_matches_a_loop_and_the_reference_kl_div_call():
    rng = np.random.default_rng(4)
    student, teacher = unit(rng, 6, 5), unit(rng, 6, 5)
    s, t = torch.from_numpy(student), torch.from_numpy(teacher)
    got = correlation_distillation(s, t, temperature=4.0)
    assert got.item() == pytest.approx(loop_correlation(student, teacher, 4.0), rel=1e-10)
    # The reference: kl_div(input = log_softmax(teacher Gram / T), target = softmax(student
    # Gram / T), summed) * T² / B.
    reference = F.kl_div(F.log_softmax(t @ t.T / 4, dim=1), F.softmax(s @ s.T / 4, dim=1),
                         reduction="sum") * 16 / 6
    assert got.item() == pytest.approx(reference.item(), rel=1e-10)


def test_correlation_direction_differs_from_the_naive_one():
    # An asymmetric pair: the student's batch is tightly clustered (near-uniform rows of P_s),
    # the teacher's is spread out and long (peaked rows of P_t).
    student = torch.tensor([[1.0, 0.0], [0.99, 0.141], [0.98, 0.199]], dtype=torch.float64)
    teacher = 3 * torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    got = correlation_distillation(student, teacher, temperature=1.0)
    naive = loop_correlation(teacher.numpy(), student.numpy(), 1.0)  # KL(P_t || P_s)
    assert got.item() == pytest.approx(loop_correlation(student.numpy(), teacher.numpy(), 1.0),
                                       rel=1e-10)
    assert got.item() > 6.0 and naive < 1.5  # about 6.86 against 1.09


def test_correlation_is_zero_for_equal_batches_and_positive_otherwise():
    x = torch.tensor(unit(np.random.default_rng(5), 5, 4))
    assert correlation_distillation(x, x.clone()).item() == pytest.approx(0.0, abs=1e-15)
    assert correlation_distillation(x, x.flip(0) * 0.5).item() > 0


def test_correlation_normalize_flag():
    x = torch.tensor(unit(np.random.default_rng(6), 5, 4))
    scaled = x * 1.5  # a uniformly rescaled (estimated) teacher
    assert correlation_distillation(x, scaled).item() > 1e-4
    assert correlation_distillation(x, scaled, normalize=True).item() == pytest.approx(0.0,
                                                                                       abs=1e-12)


def test_correlation_gradcheck():
    generator = torch.Generator().manual_seed(7)
    student = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, t: correlation_distillation(s, t, temperature=2.0), (student, teacher))
    assert torch.autograd.gradcheck(
        lambda s: correlation_distillation(s, teacher.detach(), normalize=True), (student,))


def test_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        correlation_distillation(torch.zeros(2, 3), torch.zeros(2, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="same, non-zero number of rows"):
        correlation_distillation(torch.zeros(2, 3), torch.zeros(4, 3))


def test_multi_model_is_the_weighted_sum():
    rng = np.random.default_rng(8)
    student, t1, t2 = (unit(rng, 5, 4) for _ in range(3))
    s = torch.from_numpy(student)
    teachers = [torch.from_numpy(t1), torch.from_numpy(t2)]
    got = multi_model_correlation(s, teachers, [1.0, 0.5], temperature=4.0)
    expected = loop_correlation(student, t1, 4.0) + 0.5 * loop_correlation(student, t2, 4.0)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    two_model = multi_model_correlation(s, teachers)  # Table 6.3 case (d): unit weights
    assert two_model.item() == pytest.approx(
        loop_correlation(student, t1, 4.0) + loop_correlation(student, t2, 4.0), rel=1e-10)


def test_multi_model_rejects_bad_input():
    with pytest.raises(ValueError, match="one entry per teacher"):
        multi_model_correlation(torch.zeros(2, 3), [torch.zeros(2, 3)], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        multi_model_correlation(torch.zeros(2, 3), [])
