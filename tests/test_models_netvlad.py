"""NetVLAD against a naive loop, the hard-assignment VLAD it generalises, and its gradients."""

import math

import numpy as np
import pytest
import torch

from irbook.models import aggregation as A
from irbook.models.netvlad import NetVLAD, assignment_from_centroids, netvlad


def random_maps(seed=0, shape=(2, 4, 3, 3)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=generator, dtype=torch.float64))


def separated_maps(seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps (2, 3, 4, 4) whose descriptors lie near one of three centroids, and the centroids."""
    generator = torch.Generator().manual_seed(seed)
    centroids = torch.eye(3, dtype=torch.float64) * 5 + 1
    words = torch.randint(0, 3, (2, 16), generator=generator)
    noise = 0.3 * torch.randn(2, 16, 3, generator=generator, dtype=torch.float64)
    descriptors = centroids[words] + noise
    return descriptors.transpose(1, 2).reshape(2, 3, 4, 4), centroids


def naive_netvlad(maps: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                  centroids: np.ndarray) -> np.ndarray:
    """Loops over images, locations and clusters; descriptors L2-normalised first."""
    batch, channels, height, width = maps.shape
    out = []
    for b in range(batch):
        v = np.zeros_like(centroids)
        for h in range(height):
            for w in range(width):
                x = maps[b, :, h, w] / np.linalg.norm(maps[b, :, h, w])
                logits = weight @ x + bias
                a = np.exp(logits - logits.max())
                a /= a.sum()
                for k in range(len(centroids)):
                    v[k] += a[k] * (x - centroids[k])
        v = np.stack([row / np.linalg.norm(row) for row in v]).ravel()
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_output_has_shape_k_times_c_and_unit_norm():
    layer = NetVLAD(num_clusters=5, dim=4)
    out = layer(random_maps().float())
    assert out.shape == (2, 20) == (2, layer.output_dim)
    np.testing.assert_allclose(out.norm(dim=1).detach(), 1.0, rtol=1e-6)


def test_functional_core_matches_a_naive_loop():
    generator = torch.Generator().manual_seed(1)
    weight, bias, centroids = (torch.randn(*s, generator=generator, dtype=torch.float64)
                               for s in ((3, 4), (3,), (3, 4)))
    maps = random_maps(2) + 0.1  # no all-zero descriptor
    got = netvlad(maps, weight[:, :, None, None], bias, centroids)
    expected = naive_netvlad(maps.numpy(), weight.numpy(), bias.numpy(), centroids.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_large_alpha_from_centroids_equals_hard_assignment_vlad_with_intra_norm():
    maps, centroids = separated_maps()
    unit = torch.nn.functional.normalize(centroids, dim=1)  # descriptors are normalised first
    layer = NetVLAD(3, 3, alpha=1e4).double()
    layer.init_from_codebook(unit)
    descriptors = A.local_descriptors(maps, normalize=True)
    expected = A.vlad(descriptors, unit, intra_norm=True, power_norm=False)
    np.testing.assert_allclose(layer(maps).detach(), expected, atol=1e-8)
    soft = NetVLAD(3, 3, alpha=1.0).double()
    soft.init_from_codebook(unit)
    assert not torch.allclose(soft(maps), expected, atol=1e-3)  # alpha matters


def test_init_from_codebook_sets_the_conv_as_the_paper_and_estimates_alpha():
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    layer = NetVLAD(2, 2, alpha=3.0, normalize_input=False).double()
    layer.init_from_codebook(centroids)
    np.testing.assert_allclose(layer.conv.weight[:, :, 0, 0].detach(), 6.0 * centroids.numpy())
    np.testing.assert_allclose(layer.conv.bias.detach(), [-3.0, -3.0])
    # x = (1, 0): squared distances 0 and 2; x = (0, 2): 5 and 1 -> mean gap (2 + 4) / 2 = 3.
    descriptors = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    layer.init_from_codebook(centroids, descriptors)
    assert layer.alpha == pytest.approx(-math.log(0.01) / 3.0)
    weight, bias = assignment_from_centroids(centroids, layer.alpha)
    np.testing.assert_allclose(layer.conv.weight[:, :, 0, 0].detach(), weight)
    np.testing.assert_allclose(layer.conv.bias.detach(), bias)


def test_gradients_reach_the_centroids_and_the_conv():
    layer = NetVLAD(3, 4).double()
    maps = random_maps(3).requires_grad_()
    target = torch.randn(2, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (layer(maps) * target).sum().backward()
    for name, grad in (("centroids", layer.centroids.grad), ("weight", layer.conv.weight.grad),
                       ("bias", layer.conv.bias.grad), ("maps", maps.grad)):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_gradients_of_the_functional_core_pass_gradcheck():
    generator = torch.Generator().manual_seed(4)
    weight, bias, centroids = (torch.randn(*s, generator=generator, dtype=torch.float64,
                                           requires_grad=True) for s in ((2, 3), (2,), (2, 3)))
    maps = (random_maps(5, (1, 3, 2, 2)) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(netvlad, (maps, weight, bias, centroids))


def test_a_change_of_the_centroids_changes_the_output():
    layer = NetVLAD(3, 4).double()
    maps = random_maps(6)
    before = layer(maps).detach()
    with torch.no_grad():
        layer.centroids[1] += 0.5
    assert not torch.allclose(layer(maps), before, atol=1e-6)


def test_invalid_arguments_are_refused():
    for alpha in (float("nan"), 0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            NetVLAD(2, 3, alpha=alpha)
    with pytest.raises(ValueError, match="num_clusters must be an integer >= 1"):
        NetVLAD(0, 3)
    layer = NetVLAD(2, 3)
    with pytest.raises(ValueError, match=r"maps must have shape \(B, 3, H, W\)"):
        layer(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"centroids must have shape \(2, 3\)"):
        layer.init_from_codebook(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="finite"):
        layer.init_from_codebook(torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        netvlad(torch.zeros(1, 3, 2, 2), torch.zeros(2, 3), torch.zeros(3), torch.zeros(2, 3))
