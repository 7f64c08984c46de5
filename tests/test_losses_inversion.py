"""BatchNorm statistics (hooks), the BN loss (Eq. 7.4), the hardest-sample clustering loss
(Eq. 7.5) and DeepInversion's image priors, against hand computations and explicit loops."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from irbook.losses.inversion import (
    DEEPINVERSION_BN,
    BatchNormStatistics,
    batchnorm_statistics,
    bn_statistics_loss,
    hardest_cluster_loss,
    image_l2,
    total_variation,
)


def two_bn_model() -> nn.Sequential:
    """BN(identity in eval) -> 1x1 conv y0 = 2 x0 + 1, y1 = 3 x1 - 1 -> BN with set buffers."""
    first = nn.BatchNorm2d(2, eps=0.0)
    conv = nn.Conv2d(2, 2, kernel_size=1)
    second = nn.BatchNorm2d(2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0], conv.weight[1, 1, 0, 0] = 2.0, 3.0
        conv.bias.copy_(torch.tensor([1.0, -1.0]))
        second.running_mean.copy_(torch.tensor([0.5, -0.5]))
        second.running_var.copy_(torch.tensor([2.0, 4.0]))
    return nn.Sequential(first, conv, second).eval().double()


def channel_stats_loop(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and biased variance of each channel, by explicit loops over all values."""
    means, variances = [], []
    for c in range(x.shape[1]):
        values = [float(v) for v in x[:, c].flatten()]
        mean = sum(values) / len(values)
        means.append(mean)
        variances.append(sum((v - mean) ** 2 for v in values) / len(values))
    return means, variances


def test_statistics_of_both_bn_inputs_match_hand_computation():
    model = two_bn_model()
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with batchnorm_statistics(model) as stats:
        model(x)
    assert [s.name for s in stats] == ["0", "2"]
    mean0, var0 = channel_stats_loop(x)
    np.testing.assert_allclose(stats[0].mean.detach().numpy(), mean0, rtol=1e-12)
    np.testing.assert_allclose(stats[0].var.detach().numpy(), var0, rtol=1e-12)
    # the second BN sees the conv output: mean 2m+1 / 3m-1, variance 4v / 9v
    second_mean, second_var = stats[1].mean.detach().numpy(), stats[1].var.detach().numpy()
    np.testing.assert_allclose(second_mean, [2 * mean0[0] + 1, 3 * mean0[1] - 1], rtol=1e-12)
    np.testing.assert_allclose(second_var, [4 * var0[0], 9 * var0[1]], rtol=1e-12)
    expected_var = torch.var(x.transpose(0, 1).reshape(2, -1) * torch.tensor([[2.0], [3.0]],
                             dtype=torch.float64), dim=1, unbiased=False)
    np.testing.assert_allclose(second_var, expected_var.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(stats[1].running_mean.numpy(), [0.5, -0.5])
    np.testing.assert_array_equal(stats[1].running_var.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(stats[0].running_var.numpy(), [1.0, 1.0])


def test_bn_loss_equals_eq_7_4_and_the_deepinversion_form():
    model = two_bn_model()
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with batchnorm_statistics(model) as stats:
        model(x)
    m0, v0 = channel_stats_loop(x)
    layers = [(m0, v0, [0.0, 0.0], [1.0, 1.0]),
              ([2 * m0[0] + 1, 3 * m0[1] - 1], [4 * v0[0], 9 * v0[1]], [0.5, -0.5], [2.0, 4.0])]
    squared, norms = 0.0, 0.0
    for index, (mean, var, run_mean, run_var) in enumerate(layers):
        dm = sum((a - b) ** 2 for a, b in zip(mean, run_mean, strict=True))
        dv = sum((a - b) ** 2 for a, b in zip(var, run_var, strict=True))
        squared += dm + dv
        norms += (10.0 if index == 0 else 1.0) * (math.sqrt(dm) + math.sqrt(dv))
    assert bn_statistics_loss(stats, weight=0.01).item() == pytest.approx(0.01 * squared,
                                                                         rel=1e-12)
    assert bn_statistics_loss(stats, **DEEPINVERSION_BN).item() == pytest.approx(norms,
                                                                               rel=1e-12)


def test_bn_loss_gradient_reaches_the_input_and_hooks_are_removed():
    model = two_bn_model()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    with batchnorm_statistics(model) as stats:
        model(x)
        model(x)  # a second call replaces the records instead of appending
        assert len(stats) == 2
        bn_statistics_loss(stats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(RuntimeError), batchnorm_statistics(model):
        raise RuntimeError("boom")
    assert not model._forward_pre_hooks and not model[2]._forward_hooks


def test_bn_loss_is_zero_when_the_batch_matches_the_running_statistics():
    bn = nn.BatchNorm2d(3).eval()
    x = torch.randn(8, 3, 4, 4)
    with torch.no_grad():
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        bn.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
    with batchnorm_statistics(bn) as stats:
        bn(x)
    assert bn_statistics_loss(stats).item() == pytest.approx(0.0, abs=1e-10)


def test_statistics_errors():
    with pytest.raises(ValueError, match="no nn.BatchNorm2d"):
        with batchnorm_statistics(nn.Conv2d(3, 3, 1)):
            pass
    with pytest.raises(ValueError, match="track_running_stats"):
        with batchnorm_statistics(nn.BatchNorm2d(3, track_running_stats=False)):
            pass
    with pytest.raises(ValueError, match="statistics is empty"):
        bn_statistics_loss([])
    stat = BatchNormStatistics("x", torch.zeros(2), torch.zeros(2), torch.zeros(3),
                               torch.zeros(3))
    with pytest.raises(ValueError, match="do not match"):
        bn_statistics_loss([stat])
    good = BatchNormStatistics("x", torch.zeros(2), torch.zeros(2), torch.zeros(2),
                               torch.zeros(2))
    for kwargs, name in (({"weight": -1.0}, "weight"), ({"weight": float("nan")}, "weight"),
                         ({"first_bn_multiplier": float("inf")}, "first_bn_multiplier")):
        with pytest.raises(ValueError, match=name):
            bn_statistics_loss([good], **kwargs)


def cluster_loop(features: np.ndarray, labels: list[int], margin: float) -> float:
    """Eq. 7.5 by loops: per class, farthest own sample vs nearest other sample to its mean."""
    total = 0.0
    for k in sorted(set(labels)):
        own = [f for f, y in zip(features, labels, strict=True) if y == k]
        centre = [sum(col) / len(own) for col in zip(*own, strict=True)]
        def dist(f, centre=centre):
            return math.sqrt(sum((a - b) ** 2 for a, b in zip(f, centre, strict=True)))
        intra = max(dist(f) for f in own)
        inter = min(dist(f) for f, y in zip(features, labels, strict=True) if y != k)
        total += max(margin + intra - inter, 0.0)
    return total


def test_cluster_loss_matches_loops_on_random_features():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(9, 4))
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    for margin in (0.0, 0.5, 3.0):
        got = hardest_cluster_loss(torch.from_numpy(features), torch.tensor(labels), margin)
        assert got.item() == pytest.approx(cluster_loop(features, labels, margin), rel=1e-12)
    weighted = hardest_cluster_loss(torch.from_numpy(features), torch.tensor(labels), 1.0, 0.1)
    assert weighted.item() == pytest.approx(0.1 * cluster_loop(features, labels, 1.0), rel=1e-12)


def test_cluster_loss_hand_example_and_separated_clusters():
    # class 0 at x = 0 and 2 (mean 1, max intra 1); class 1 at x = 5 (mean 5, intra 0)
    features = torch.tensor([[0.0], [2.0], [5.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    # class 0: 1 + 1 - |5 - 1| = -2 -> 0; class 1: 1 + 0 - |2 - 5| = -2 -> 0
    assert hardest_cluster_loss(features, labels, 1.0).item() == 0.0
    # margin 5: class 0: 5 + 1 - 4 = 2; class 1: 5 + 0 - 3 = 2
    assert hardest_cluster_loss(features, labels, 5.0).item() == pytest.approx(4.0)


def test_cluster_loss_gradient_is_finite_with_a_single_sample_class():
    features = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one sample: intra distance 0
    loss = hardest_cluster_loss(features, labels, margin=10.0)
    loss.backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_cluster_loss_errors():
    features = torch.randn(4, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        hardest_cluster_loss(features, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels must be"):
        hardest_cluster_loss(features, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="integer tensor"):
        hardest_cluster_loss(features, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="features must be"):
        hardest_cluster_loss(torch.randn(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="margin"):
        hardest_cluster_loss(features, torch.tensor([0, 1, 0, 1]), margin=float("nan"))


def test_total_variation_and_l2_match_loops():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    sums = [0.0, 0.0, 0.0, 0.0]
    for b in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    v = float(x[b, c, i, j])
                    if j + 1 < 5:
                        sums[0] += (v - float(x[b, c, i, j + 1])) ** 2
                    if i + 1 < 4:
                        sums[1] += (v - float(x[b, c, i + 1, j])) ** 2
                    if i >= 1 and j + 1 < 5:
                        sums[2] += (v - float(x[b, c, i - 1, j + 1])) ** 2
                    if i + 1 < 4 and j + 1 < 5:
                        sums[3] += (v - float(x[b, c, i + 1, j + 1])) ** 2
    expected_tv = sum(math.sqrt(s) for s in sums)
    assert total_variation(x).item() == pytest.approx(expected_tv, rel=1e-12)
    norms = [math.sqrt(float((x[b] ** 2).sum())) for b in range(2)]
    assert image_l2(x).item() == pytest.approx(sum(norms) / 2, rel=1e-12)
    assert total_variation(torch.ones(2, 3, 4, 4)).item() == 0.0


def test_priors_reject_bad_shapes_and_pass_gradients():
    with pytest.raises(ValueError, match="images must be"):
        total_variation(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match="images must be"):
        image_l2(torch.randn(0, 3, 4, 4))
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    (total_variation(x) + image_l2(x)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
