"""Accuracy changes (Eq. 6.6), feature estimation (Eqs. 6.7-6.9) and Eq. 6.11's weights."""

import numpy as np
import pytest
import torch

from irbook.losses import (
    accuracy_change_bounds,
    estimate_features,
    estimate_prior_features,
    estimation_weights,
)


def test_bounds_reproduce_the_thesis_example():
    # Chapter 6, CUB task 1: old mAP 54.20 -> 52.44, new 29.82 -> 52.27 -> (-0.0325, 0.7528).
    drop, gain = accuracy_change_bounds(54.20, 52.44, 29.82, 52.27)
    assert drop == pytest.approx(-0.0325, abs=1e-4) and gain == pytest.approx(0.7528, abs=1e-4)
    assert drop == pytest.approx((52.44 - 54.20) / 54.20)
    assert accuracy_change_bounds(0.5, 0.5, 0.2, 0.3) == pytest.approx((0.0, 0.5))


def test_bounds_reject_zero_before_accuracy():
    with pytest.raises(ValueError, match="must be > 0"):
        accuracy_change_bounds(0.0, 0.5, 0.2, 0.3)


def test_estimate_follows_f_plus_f_times_r_with_a_numpy_generator():
    f = torch.tensor(np.random.default_rng(0).normal(size=(4, 6)))
    got = estimate_features(f, -0.0443, 0.2230, np.random.default_rng(7))
    u = np.random.default_rng(7).random((4, 6))
    r = -0.0443 + (0.2230 + 0.0443) * u
    np.testing.assert_allclose(got.numpy(), f.numpy() * (1 + r), rtol=1e-12)


def test_estimate_ratio_stays_in_the_interval_and_has_the_expected_mean():
    f = torch.rand(200, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.5
    got = estimate_features(f, -0.0325, 0.7528, generator=3)
    r = (got - f) / f
    assert r.min() >= -0.0325 - 1e-12 and r.max() <= 0.7528 + 1e-12
    # E[r] = (drop + gain) / 2; std of the mean of 12,800 draws is about 0.002.
    assert r.mean().item() == pytest.approx((0.7528 - 0.0325) / 2, abs=0.01)


def test_estimate_is_deterministic_per_seed_and_order_of_bounds_free():
    f = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    a = estimate_features(f, -0.1, 0.3, 11)
    assert torch.equal(a, estimate_features(f, -0.1, 0.3, 11))
    assert not torch.equal(a, estimate_features(f, -0.1, 0.3, 12))
    swapped = (estimate_features(f, 0.3, -0.1, 11) - f) / f
    assert swapped.min() >= -0.1 - 1e-6 and swapped.max() <= 0.3 + 1e-6


def test_estimate_with_a_degenerate_interval_and_scale_k():
    f = torch.randn(3, 4, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    got = estimate_features(f, 0.2, 0.2, generator, scale=0.5)
    np.testing.assert_allclose(got.numpy(), (f * 1.1).numpy(), rtol=1e-12)


def test_estimate_rejects_a_bad_generator():
    with pytest.raises(TypeError, match="generator must be"):
        estimate_features(torch.ones(2, 2), 0.0, 0.1, generator="seed")


def test_prior_features_compound_the_stages():
    f = torch.randn(3, 4, dtype=torch.float64)
    virtual = estimate_prior_features(f, [(0.1, 0.1), (-0.2, -0.2), (0.5, 0.5)], generator=0)
    assert len(virtual) == 3
    np.testing.assert_allclose(virtual[0].numpy(), (f * 1.1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(virtual[1].numpy(), (f * 1.1 * 0.8).numpy(), rtol=1e-12)
    # Eq. 6.9: the oldest estimate is the product of all stages' factors times F_{t-1}.
    np.testing.assert_allclose(virtual[2].numpy(), (f * 1.1 * 0.8 * 1.5).numpy(), rtol=1e-12)


def test_prior_features_draw_fresh_noise_per_stage():
    f = torch.ones(20, 8, dtype=torch.float64)
    first, second = estimate_prior_features(f, [(0.0, 1.0), (0.0, 1.0)], generator=5)
    r1, r2 = first - 1, second / first - 1
    assert not torch.allclose(r1, r2)
    assert estimate_prior_features(f, [], generator=5) == []


@pytest.mark.parametrize(("t", "expected"), [
    (1, [1.0]),
    (2, [1.0, 1.0]),
    (3, [1.0, 1 / 2, 0.1 / 1]),
    (4, [1.0, 1 / 3, 0.1 / 2, 0.01 / 1]),
    (5, [1.0, 1 / 4, 0.1 / 3, 0.01 / 2, 0.001 / 1]),
])
def test_estimation_weights_by_hand(t, expected):
    assert estimation_weights(t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t", [0, -1, 1.5, True])
def test_estimation_weights_reject_bad_t(t):
    with pytest.raises(ValueError, match="t must be an integer >= 1"):
        estimation_weights(t)
