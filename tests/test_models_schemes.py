"""Feature-extraction schemes (thesis Sec. 2.3.1) against direct computations on tiny nets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import torchvision.models as tvm
from torch import nn

from irbook.models import functional as F
from irbook.models.backbones import make_backbone
from irbook.models.schemes import (
    DEFAULT_SCALES,
    cam_crow,
    class_activation_maps,
    fc_features,
    fuse_layers,
    multiscale_descriptor,
    patch_boxes,
    patch_descriptors,
)


@pytest.fixture(scope="module")
def backbone() -> nn.Module:
    return make_backbone("smallcnn", pretrained=False, seed=0).eval()


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def relu_maps(shape=(2, 4, 3, 5), seed: int = 0) -> torch.Tensor:
    maps = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.relu(maps)


# ----------------------------------------------------------------------------- multi-scale


@torch.no_grad()
def test_single_scale_is_the_plain_pooled_descriptor(backbone):
    x = images()
    expected = F.l2n(F.gem(backbone(x)))
    torch.testing.assert_close(multiscale_descriptor(backbone, x, F.gem, scales=(1,)), expected)
    torch.testing.assert_close(multiscale_descriptor(backbone, x, "gem", scales=(1,)), expected)


@torch.no_grad()
def test_multiscale_is_the_power_mean_of_the_resized_passes(backbone):
    x = images()
    per_scale = []
    for scale, side in zip(DEFAULT_SCALES, (64, 45, 32), strict=True):
        resized = TF.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        assert resized.shape[-2:] == (side, side)
        per_scale.append(F.l2n(F.mac(backbone(resized))))
    stacked = torch.stack(per_scale)
    expected = F.l2n(stacked.pow(3).mean(dim=0).pow(1 / 3))
    got = multiscale_descriptor(backbone, x, F.mac)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(multiscale_descriptor(backbone, x, F.mac, p=1),
                               F.l2n(stacked.mean(dim=0)))
    assert not torch.allclose(got, per_scale[0], atol=1e-4)  # the other scales matter
    torch.testing.assert_close(torch.linalg.vector_norm(got, dim=1), torch.ones(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"scales": ()}, "scales"),
    ({"scales": (1, 0)}, "scale"),
    ({"scales": (1, float("nan"))}, "scale"),
    ({"scales": (1, 1e-3)}, "shrinks"),
    ({"p": float("nan")}, "p must"),
    ({"p": 0}, "p must"),
    ({"pooling": 3}, "pooling"),
    ({"pooling": "maxavg"}, "pooling"),
])
def test_multiscale_rejects_bad_arguments(backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        multiscale_descriptor(backbone, images(1), **kwargs)


def test_multiscale_rejects_a_single_image(backbone):
    with pytest.raises(ValueError, match="images must be"):
        multiscale_descriptor(backbone, images(1)[0])


# --------------------------------------------------------------------------------- patches


def test_patch_boxes_by_hand():
    # 5 x 7 image, 2 x 3 grid: rows cut at 0, 2, 5 and columns at 0, 2, 4, 7.
    assert patch_boxes(5, 7, "grid", grid=(2, 3)) == [
        (0, 0, 2, 2), (0, 2, 2, 2), (0, 4, 2, 3), (2, 0, 3, 2), (2, 2, 3, 2), (2, 4, 3, 3)]
    assert patch_boxes(4, 6, "pyramid", levels=(1, 2)) == [
        (0, 0, 4, 6), (0, 0, 2, 3), (0, 3, 2, 3), (2, 0, 2, 3), (2, 3, 2, 3)]


def test_pyramid_levels_tile_the_image_once_each():
    boxes = patch_boxes(37, 23, "pyramid", levels=(1, 2, 3))
    assert len(boxes) == 1 + 4 + 9
    coverage = np.zeros((37, 23), dtype=int)
    for top, left, height, width in boxes:
        coverage[top : top + height, left : left + width] += 1
    assert (coverage == 3).all()


@torch.no_grad()
def test_grid_patches_of_a_tiled_image_are_the_pooled_tiles(backbone):
    tiles = images(batch=4, size=32, seed=1)  # row-major: top-left, top-right, bottom-...
    tiled = torch.cat([torch.cat([tiles[0], tiles[1]], dim=2),
                       torch.cat([tiles[2], tiles[3]], dim=2)], dim=1)  # (3, 64, 64)
    expected = F.l2n(F.gem(backbone(tiles)))  # (4, C)
    patches = patch_descriptors(backbone, tiled, "grid", grid=(2, 2), pooling=F.gem,
                                aggregate=False)
    torch.testing.assert_close(patches, expected)
    aggregated = patch_descriptors(backbone, tiled, "grid", pooling=F.gem)
    torch.testing.assert_close(aggregated, F.l2n(expected.sum(dim=0, keepdim=True))[0])
    batched = patch_descriptors(backbone, tiled[None].repeat(2, 1, 1, 1), pooling=F.gem)
    torch.testing.assert_close(batched, aggregated.expand(2, -1))


@torch.no_grad()
def test_pyramid_adds_the_whole_image_to_the_grid(backbone):
    x = images(batch=1, size=64, seed=2)
    whole = F.l2n(F.mac(backbone(x)))
    grid = patch_descriptors(backbone, x, "grid", pooling="mac", aggregate=False)[0]
    pyramid = patch_descriptors(backbone, x, "pyramid", levels=(1, 2), pooling="mac")
    torch.testing.assert_close(pyramid, F.l2n(whole + grid.sum(dim=0, keepdim=True)))


@pytest.mark.parametrize("kwargs, match", [
    ({"scheme": "dense"}, "scheme"),
    ({"grid": (0, 2)}, "grid rows"),
    ({"grid": (2,)}, "grid must"),
    ({"grid": (65, 1)}, "does not fit"),
    ({"scheme": "pyramid", "levels": ()}, "levels"),
    ({"scheme": "pyramid", "levels": (1, 1.5)}, "each level"),
])
def test_patches_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        patch_boxes(64, 64, **kwargs)


# ---------------------------------------------------------------- fully-connected features


class TwoLayerHead(nn.Module):
    """Flatten, FC, in-place ReLU, FC: the in-place ReLU would overwrite an uncloned FC output."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.fc1, self.relu, self.fc2 = nn.Linear(12, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


class WithSpareLayer(TwoLayerHead):
    """A head holding a layer that its forward pass never calls."""

    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(3, 3)


def test_fc_features_are_the_hooked_layer_output_before_the_inplace_relu():
    model, x = TwoLayerHead(), images(batch=3, size=2, seed=3)
    expected = F.l2n(model.fc1(x.flatten(1)))
    assert (expected < 0).any()  # so an overwritten output would differ
    torch.testing.assert_close(fc_features(model, x, "fc1"), expected)
    torch.testing.assert_close(fc_features(model, x, model.fc1), expected)
    torch.testing.assert_close(fc_features(model, x, "fc2"), F.l2n(model(x)))
    assert not model.fc1._forward_hooks  # the hook is removed


def test_fc_features_of_torchvision_alexnet():
    torch.manual_seed(0)
    model = tvm.alexnet(weights=None).eval()
    x = images(batch=2, size=64, seed=4)
    with torch.no_grad():
        pooled = torch.flatten(model.avgpool(model.features(x)), 1)
        expected = F.l2n(model.classifier[:5](pooled))  # up to the second 4096-d Linear
        got = fc_features(model, x, "classifier.4")
    assert got.shape == (2, 4096)
    torch.testing.assert_close(got, expected)


def test_fc_features_gradients_flow():
    model, x = TwoLayerHead(), images(batch=2, size=2, seed=5)
    fc_features(model, x, "fc1").sum().backward()
    assert model.fc1.weight.grad is not None and model.fc1.weight.grad.abs().sum() > 0


def test_fc_features_reject_bad_layers():
    model, x = TwoLayerHead(), images(batch=1, size=2)
    with pytest.raises(ValueError, match="layer must name"):
        fc_features(model, x, "fc9")
    with pytest.raises(ValueError, match="submodule"):
        fc_features(model, x, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="ran 0 times"):
        fc_features(WithSpareLayer(), x, "spare")
    shared = nn.Linear(12, 12)
    twice = nn.Sequential(nn.Flatten(), shared, shared)
    with pytest.raises(ValueError, match="ran 2 times"):
        fc_features(twice, x, "1")


# ---------------------------------------------------------------------------------- fusion


def test_fusion_by_hand_and_weights_change_it():
    conv, fc = torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0, 0.0]])
    even = fuse_layers(conv, fc)
    torch.testing.assert_close(even, torch.tensor([[0.6, 0.8, 1.0, 0.0, 0.0]]) / math.sqrt(2))
    weighted = fuse_layers(conv, fc, weights=(2.0, 1.0))
    torch.testing.assert_close(weighted, torch.tensor([[1.2, 1.6, 1.0, 0.0, 0.0]]) / math.sqrt(5))
    torch.testing.assert_close(fuse_layers(conv, fc, weights=(0.0, 1.0)),
                               torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]))


def test_fusion_is_unit_norm():
    generator = torch.Generator().manual_seed(6)
    conv, fc = torch.rand(5, 8, generator=generator), 30 * torch.rand(5, 3, generator=generator)
    fused = fuse_layers(conv, fc, weights=(1.0, 0.5))
    torch.testing.assert_close(torch.linalg.vector_norm(fused, dim=1), torch.ones(5))


@pytest.mark.parametrize("weights, match", [
    ((0.0, 0.0), "both be 0"),
    ((1.0, float("nan")), "finite"),
    ((-1.0, 1.0), ">= 0"),
    ((1.0,), "pair"),
])
def test_fusion_rejects_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        fuse_layers(torch.ones(1, 2), torch.ones(1, 3), weights=weights)


def test_fusion_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="same B"):
        fuse_layers(torch.ones(2, 2), torch.ones(3, 3))


# ------------------------------------------------------------------------ class-weighted CroW


def crow_channel_weights_loop(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """CroW channel weights of one (C, H, W) map, written out: log(sum_c Q_c / (eps + Q_k))."""
    fractions = np.array([(x[k] != 0).mean() for k in range(x.shape[0])])
    return np.log(fractions.sum() / (eps + fractions))


def cam_crow_loop(x: np.ndarray, chosen: list[int], class_weights: np.ndarray) -> np.ndarray:
    """Class-weighted CroW of one map for the given classes, with explicit loops."""
    channel = crow_channel_weights_loop(x)
    total = np.zeros(x.shape[0])
    for c in chosen:
        cam = np.maximum(np.tensordot(class_weights[c], x, axes=1), 0)
        cam = cam / (cam.max() + 1e-6)
        vector = np.array([(x[k] * cam).sum() for k in range(x.shape[0])]) * channel
        total += vector / (np.linalg.norm(vector) + 1e-6)
    return total / (np.linalg.norm(total) + 1e-6)


def test_cams_by_hand():
    maps = torch.tensor([[[[1.0, 3.0]], [[2.0, -5.0]]]])  # (1, 2, 1, 2)
    weights = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    # Class 0: [3, -2] -> clip [3, 0] -> / 3; class 1: [-1, -3] -> all clipped to 0.
    expected = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    torch.testing.assert_close(class_activation_maps(maps, weights), expected, atol=1e-6,
                               rtol=1e-6)


def test_uniform_class_weights_reduce_to_crow_with_b_one():
    maps = relu_maps()
    uniform = torch.ones(7, 4, dtype=torch.float64)
    expected = F.l2n(F.crow(maps, a=2.0, b=1.0))
    torch.testing.assert_close(cam_crow(maps, uniform, top_classes=3), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("top_classes", [1, 2, 4])
def test_cam_crow_matches_a_loop_on_the_top_scoring_classes(top_classes):
    maps = relu_maps(seed=1)
    class_weights = torch.randn(4, 4, generator=torch.Generator().manual_seed(2),
                                dtype=torch.float64)
    got = cam_crow(maps, class_weights, top_classes=top_classes)
    for b in range(2):
        x = maps[b].numpy()
        scores = class_weights.numpy() @ x.mean(axis=(1, 2))
        chosen = np.argsort(-scores)[:top_classes].tolist()
        np.testing.assert_allclose(got[b].numpy(), cam_crow_loop(x, chosen, class_weights.numpy()),
                                   rtol=1e-6, atol=1e-9)


def test_class_bias_changes_the_chosen_class():
    maps = relu_maps(shape=(1, 4, 3, 5), seed=3)
    class_weights = torch.eye(4, dtype=torch.float64)  # class c's CAM is channel c
    weakest = int(maps.mean(dim=(-2, -1))[0].argmin())
    bias = torch.zeros(4, dtype=torch.float64)
    bias[weakest] = 100.0
    got = cam_crow(maps, class_weights, top_classes=1, class_bias=bias)
    expected = cam_crow_loop(maps[0].numpy(), [weakest], class_weights.numpy())
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(got, cam_crow(maps, class_weights, top_classes=1))


def test_cam_crow_gradients_flow():
    maps = relu_maps().requires_grad_()
    cam_crow(maps, torch.rand(5, 4, dtype=torch.float64), top_classes=2).sum().backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"top_classes": 0}, "top_classes"),
    ({"top_classes": 6}, "top_classes"),
    ({"class_weights": torch.ones(5, 3)}, "class_weights"),
])
def test_cam_crow_rejects_bad_arguments(kwargs, match):
    arguments = {"class_weights": torch.ones(5, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        cam_crow(relu_maps(), **arguments)
