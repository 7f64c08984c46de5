"""Pooling layers of thesis Figure 2.6 against hand computations and independent numpy loops."""

import math

import numpy as np
import pytest
import torch

from irbook.models import functional as F
from irbook.models.pooling import L2N, MAC, POOLINGS, RMAC, CroW, GeM, SPoC, make_pooling

# One image, two channels, 3 x 4 locations; channel 0 has zeros (as after a ReLU).
HAND = np.array(
    [[[0.0, 1.0, 2.0, 0.0], [3.0, 0.5, 0.0, 1.0], [0.0, 0.0, 4.0, 2.0]],
     [[1.0, 1.5, 0.2, 0.3], [0.1, 2.5, 0.7, 0.9], [1.1, 0.4, 0.6, 0.8]]],
    dtype=np.float64,
)


def hand_maps() -> torch.Tensor:
    return torch.tensor(HAND[None], dtype=torch.float64)


def random_maps(seed: int = 0, shape=(2, 3, 5, 7)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=generator, dtype=torch.float64))


def test_mac_is_the_largest_value_of_each_channel():
    assert F.mac(hand_maps()).tolist() == [[4.0, 2.5]]


def test_spoc_without_prior_is_the_channel_mean():
    expected = [sum(HAND[c].ravel()) / 12 for c in range(2)]
    np.testing.assert_allclose(F.spoc(hand_maps(), center_prior=False)[0], expected)


def test_spoc_weights_of_a_3x3_map_by_hand():
    # sigma = min(3, 3) / 6 = 0.5, so w = exp(-(dy^2 + dx^2) / 0.5) before normalisation.
    raw = np.array([[math.exp(-4), math.exp(-2), math.exp(-4)],
                    [math.exp(-2), 1.0, math.exp(-2)],
                    [math.exp(-4), math.exp(-2), math.exp(-4)]])
    got = F.spoc_weights(3, 3, dtype=torch.float64)
    np.testing.assert_allclose(got, raw / raw.sum(), rtol=1e-12)


def test_spoc_with_prior_matches_a_loop():
    height, width = HAND.shape[1:]
    sigma = min(height, width) / 3 / 2  # a third of the distance to the closest border
    weights = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            dy, dx = i + 0.5 - height / 2, j + 0.5 - width / 2
            weights[i, j] = math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma))
    expected = [(HAND[c] * weights).sum() / weights.sum() for c in range(2)]
    np.testing.assert_allclose(F.spoc(hand_maps())[0], expected, rtol=1e-12)


def test_gem_matches_the_formula_on_hand_values():
    clamped = np.maximum(HAND, 1e-6)
    expected = [np.mean(clamped[c] ** 3) ** (1 / 3) for c in range(2)]
    np.testing.assert_allclose(F.gem(hand_maps())[0], expected, rtol=1e-12)


def test_gem_with_p_one_is_average_and_large_p_approaches_max():
    x = random_maps()
    np.testing.assert_allclose(F.gem(x, p=1.0), x.clamp(min=1e-6).mean(dim=(-2, -1)), rtol=1e-12)
    np.testing.assert_allclose(F.gem(x, p=500.0), F.mac(x), rtol=1e-2)
    assert torch.all(F.gem(x, p=500.0) <= F.mac(x) + 1e-12)


def test_gem_accepts_a_tensor_exponent_and_passes_gradients_to_it():
    pool = GeM()
    assert pool.p.item() == 3.0
    x = random_maps().float()
    np.testing.assert_allclose(pool(x).detach(), F.gem(x, p=3.0), rtol=1e-6)
    pool(x).sum().backward()
    assert pool.p.grad is not None and pool.p.grad.abs().item() > 0


def test_rmac_regions_of_a_3x4_map_by_hand():
    # short side 3, long side 4: 2 level-1 regions along the width overlap by 2/3, closest to 0.4
    # among 2..7 regions; levels 2 and 3 then have 2x3 regions of side 2 and 3x4 of side 1.
    level1 = [(0, 0, 3), (0, 1, 3)]
    level2 = [(t, s, 2) for t in (0, 1) for s in (0, 1, 2)]
    level3 = [(t, s, 1) for t in (0, 1, 2) for s in (0, 1, 2, 3)]
    assert F.rmac_regions(3, 4) == level1 + level2 + level3


@pytest.mark.parametrize(("height", "width", "count"), [(7, 7, 1 + 4 + 9), (10, 20, 3 + 8 + 15),
                                                        (20, 10, 3 + 8 + 15), (1, 1, 1)])
def test_rmac_region_count(height, width, count):
    regions = F.rmac_regions(height, width)
    assert len(regions) == count
    for top, left, side in regions:
        assert 0 <= top and top + side <= height and 0 <= left and left + side <= width


def test_rmac_matches_a_loop_over_the_hand_regions():
    def normalised_max(block):
        vector = block.reshape(2, -1).max(axis=1)
        return vector / (np.linalg.norm(vector) + 1e-6)

    regions = [(0, 0, 3), (0, 1, 3)] + [(t, s, 2) for t in (0, 1) for s in (0, 1, 2)]
    regions += [(t, s, 1) for t in (0, 1, 2) for s in (0, 1, 2, 3)]
    expected = normalised_max(HAND)  # the whole map, as in cnnimageretrieval-pytorch
    for top, left, side in regions:
        expected = expected + normalised_max(HAND[:, top : top + side, left : left + side])
    np.testing.assert_allclose(F.rmac(hand_maps())[0], expected, rtol=1e-12)


def test_crow_weights_by_hand():
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [0.0, 2.0]]]], dtype=torch.float64)
    spatial, channel = F.crow_weights(x)
    # S' = [[3, 2], [0, 3]], ||S'||_2 = sqrt(22), S = sqrt(S' / sqrt(22)).
    expected_spatial = np.sqrt(np.array([[3.0, 2.0], [0.0, 3.0]]) / math.sqrt(22))
    np.testing.assert_allclose(spatial[0], expected_spatial, rtol=1e-5)
    # Q = (2/4, 3/4), sum 1.25: weights log(1.25/0.5) and log(1.25/0.75).
    np.testing.assert_allclose(channel[0], [math.log(2.5), math.log(5 / 3)], rtol=1e-5)
    s3, s2 = math.sqrt(3 / math.sqrt(22)), math.sqrt(2 / math.sqrt(22))
    expected = [math.log(2.5) * 2 * s3, math.log(5 / 3) * (4 * s3 + 2 * s2)]
    np.testing.assert_allclose(F.crow(x)[0], expected, rtol=1e-5)


def test_crow_matches_a_loop_on_random_relu_maps():
    x = random_maps(seed=1)
    eps = 1e-6
    for b in range(x.shape[0]):
        maps = x[b].numpy()
        summed = maps.sum(axis=0)
        spatial = np.sqrt(summed / (np.sqrt((summed**2).sum()) + eps))
        q = np.array([(maps[k] != 0).mean() for k in range(maps.shape[0])])
        expected = [np.log(q.sum() / (eps + q[k])) * (maps[k] * spatial).sum()
                    for k in range(maps.shape[0])]
        np.testing.assert_allclose(F.crow(x)[b], expected, rtol=1e-10)


def test_poolings_treat_each_image_of_a_batch_separately():
    x = random_maps(seed=2)
    for name in POOLINGS:
        pool = make_pooling(name).double()
        together = pool(x)
        one_by_one = torch.cat([pool(x[i : i + 1]) for i in range(len(x))])
        np.testing.assert_allclose(together.detach(), one_by_one.detach(), rtol=1e-12)


def test_make_pooling_builds_each_module_with_its_options():
    classes = {"mac": MAC, "spoc": SPoC, "gem": GeM, "rmac": RMAC, "crow": CroW}
    assert {name: type(make_pooling(name)) for name in POOLINGS} == classes
    assert make_pooling("rmac", levels=2).levels == 2


def test_make_pooling_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"pooling must be one of mac, spoc, gem, rmac, crow"):
        make_pooling("avg")


def test_pooling_rejects_input_without_spatial_dimensions():
    with pytest.raises(ValueError, match=r"x must be feature maps"):
        F.mac(torch.ones(2, 3))


def test_l2n_gives_unit_rows():
    x = torch.tensor([[3.0, 4.0], [0.5, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(L2N(eps=0.0)(x), [[0.6, 0.8], [1.0, 0.0]])
