"""Multi-kernel Gaussian MMD (Eqs. 5.4-5.5) against an explicit double loop."""

import math

import numpy as np
import pytest
import torch

from irbook.losses import MEDIAN_MULTIPLIERS, gaussian_mmd, median_sigma

SIGMAS = (0.5, 1.0, 2.0)


def loop_mmd2(x: np.ndarray, y: np.ndarray, sigmas) -> float:
    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (2 * s * s)) for s in sigmas) / len(sigmas)

    xx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    yy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    xy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return xx + yy - 2 * xy


def test_matches_a_double_loop_with_fixed_sigmas():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5
    got = gaussian_mmd(torch.from_numpy(x), torch.from_numpy(y), SIGMAS)
    assert got.item() == pytest.approx(loop_mmd2(x, y, SIGMAS), rel=1e-12)


def test_median_option_matches_a_loop_with_the_median_bandwidth():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) + 1.0
    pooled = np.concatenate([x, y])
    distances = [np.linalg.norm(pooled[i] - pooled[j])
                 for i in range(8) for j in range(i + 1, 8)]
    base = float(np.median(distances))
    assert median_sigma(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(base)
    got = gaussian_mmd(torch.from_numpy(x), torch.from_numpy(y))  # default "median"
    expected = loop_mmd2(x, y, [base * m for m in MEDIAN_MULTIPLIERS])
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_median_sigma_of_identical_points_falls_back_to_one():
    x = torch.ones(3, 2)
    assert median_sigma(x, x) == 1.0


@pytest.mark.parametrize("sigmas", [SIGMAS, "median"])
def test_zero_for_identical_sets_and_symmetric(sigmas):
    rng = np.random.default_rng(2)
    x, y = torch.from_numpy(rng.normal(size=(6, 4))), torch.from_numpy(rng.normal(size=(6, 4)))
    assert gaussian_mmd(x, x.clone(), sigmas).item() == 0.0
    assert gaussian_mmd(x, y, sigmas).item() == pytest.approx(gaussian_mmd(y, x, sigmas).item(),
                                                              rel=1e-12)
    assert gaussian_mmd(x, y, sigmas).item() > 0


def test_grows_with_a_mean_shift():
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    values = [gaussian_mmd(x, x + shift, SIGMAS).item() for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values[0] == 0.0
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_root_is_the_eq_5_5_loss_and_has_zero_gradient_at_equality():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 0.3
    root = gaussian_mmd(torch.from_numpy(x), torch.from_numpy(y), SIGMAS, squared=False)
    assert root.item() == pytest.approx(math.sqrt(loop_mmd2(x, y, SIGMAS)), rel=1e-12)
    teacher = torch.from_numpy(x)
    student = teacher.clone().requires_grad_(True)
    loss = gaussian_mmd(student, teacher, SIGMAS, squared=False)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(student.grad == 0)


def test_gradcheck():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    y = torch.randn(3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: gaussian_mmd(a, b, SIGMAS), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: gaussian_mmd(a, b, SIGMAS, squared=False),
                                    (x, y))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="same D"):
        gaussian_mmd(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one row"):
        gaussian_mmd(torch.zeros(0, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="'median'"):
        gaussian_mmd(torch.zeros(2, 3), torch.zeros(2, 3), "mean")
    with pytest.raises(ValueError, match="positive floats"):
        gaussian_mmd(torch.zeros(2, 3), torch.zeros(2, 3), (1.0, 0.0))
    with pytest.raises(ValueError, match="positive floats"):
        gaussian_mmd(torch.zeros(2, 3), torch.zeros(2, 3), ())
