"""Inception score and FID (thesis Table 7.5) on inputs whose values are known in closed form."""

import math

import numpy as np
import pytest

from irbook.metrics.generative import fid, frechet_distance, inception_score


def test_inception_score_of_confident_even_predictions_is_the_number_of_classes():
    for classes in (2, 5, 10):
        one_hot = np.eye(classes)[np.arange(20 * classes) % classes]
        mean, std = inception_score(one_hot, splits=4)
        assert mean == pytest.approx(classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_identical_rows_is_one():
    mean, std = inception_score(np.full((30, 7), 1 / 7), splits=3)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)
    rows = np.tile([[0.7, 0.2, 0.1]], (12, 1))  # not uniform, but every row equals p(y)
    assert inception_score(rows, splits=2)[0] == pytest.approx(1.0)


def test_inception_score_matches_an_explicit_kl_per_split():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(25, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = []
    for start, stop in ((0, 9), (9, 17), (17, 25)):  # np.array_split(25, 3) = 9, 8, 8
        part = p[start:stop]
        marginal = [sum(row[c] for row in part) / len(part) for c in range(4)]
        kl = [sum(row[c] * math.log(row[c] / marginal[c]) for c in range(4)) for row in part]
        scores.append(math.exp(sum(kl) / len(kl)))
    mean, std = inception_score(p, splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)
    # two classes predicted half-and-half by confident rows: score 2 in every split
    assert inception_score(np.eye(2)[[0, 1, 0, 1]], splits=2) == pytest.approx((2.0, 0.0))


def test_inception_score_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.full((4, 2), 0.2), splits=2)
    with pytest.raises(ValueError, match="non-negative"):
        inception_score(np.array([[1.5, -0.5], [0.5, 0.5]]), splits=1)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.full((4, 2), 0.5), splits=5)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.full((4, 2), 0.5), splits=0)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        inception_score(np.full(4, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        inception_score(np.array([[np.nan, 0.5], [0.5, 0.5]]), splits=1)


def test_frechet_distance_of_diagonal_gaussians_equals_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = sum((a - b) ** 2 for a, b in zip(mu1, mu2, strict=True)) + sum(
        (math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(var1, var2, strict=True))
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-10)


def test_frechet_distance_handles_singular_covariances():
    singular = np.diag([1.0, 0.0, 0.0])
    got = frechet_distance(np.zeros(3), singular, np.ones(3), singular)
    assert got == pytest.approx(3.0, abs=1e-4)


def test_fid_of_a_set_with_itself_is_zero_and_of_a_shift_is_its_squared_norm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    assert fid(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    b = rng.normal(size=(300, 6)) * 2.0
    expected = frechet_distance(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert fid(a, b) == pytest.approx(expected, rel=1e-12)


def test_fid_errors():
    with pytest.raises(ValueError, match="same dimension"):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        fid(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="features_b"):
        fid(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2), np.array([0.0, np.inf]), np.eye(2))
    with pytest.raises(ValueError, match="eps"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), eps=float("nan"))
