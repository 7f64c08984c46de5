"""Frozen-backbone features for the cross-modal trainers."""

import numpy as np
import pytest
import torch
from torch import nn

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.crossmodal.features import (
    PooledBackbone,
    check_images,
    image_features,
    pooled_features,
    to_input_tensor,
)


class MeanColour(nn.Module):
    """A 'backbone' whose maps are the input itself: pooled features = mean normalised colour."""

    out_channels = 3

    def forward(self, x):
        return x


def test_input_tensor_is_channels_first_and_imagenet_normalised():
    images = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    images[1, 3, 4] = (255, 0, 0)
    batch = to_input_tensor(images)
    assert batch.shape == (2, 3, 4, 5)
    assert batch[1, 0, 3, 4].item() == pytest.approx((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0])
    assert batch[0, 2, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[2] / IMAGENET_STD[2])
    assert to_input_tensor(images, size=8).shape == (2, 3, 8, 8)


def test_features_are_the_average_of_the_maps_in_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)
    features = image_features(images, MeanColour(), batch_size=2, progress=False)
    expected = to_input_tensor(images).mean(dim=(2, 3)).numpy()
    assert features.shape == (5, 3) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_backbone_is_left_in_eval_mode_and_unchanged():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = [p.clone() for p in backbone.state_dict().values()]
    image_features(np.zeros((3, 8, 8, 3), dtype=np.uint8), backbone, progress=False)
    assert not backbone.training
    for old, new in zip(before, backbone.state_dict().values(), strict=True):
        assert torch.equal(old, new)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        to_input_tensor(np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        image_features(np.zeros((1, 4, 4, 3), dtype=np.uint8), MeanColour(), batch_size=0)


# --- end-to-end fine-tuning ------------------------------------------------------------------

def test_pooled_features_keep_the_gradient_and_pool_each_grid_cell():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4).requires_grad_()
    pooled = pooled_features(nn.Identity(), maps, grid=2)
    assert pooled.shape == (2, 12) and pooled.requires_grad
    # cell (0, 1) of channel 1 of image 0: rows 0-1, columns 2-3
    expected = sum(maps[0, 1, i, j].item() for i in (0, 1) for j in (2, 3)) / 4
    assert pooled[0, 1 * 4 + 1].item() == pytest.approx(expected)
    pooled.sum().backward()
    assert torch.allclose(maps.grad, torch.full_like(maps, 1 / 4))  # each cell averages 4
    assert torch.equal(pooled_features(nn.Identity(), maps, 1), maps.mean(dim=(2, 3)))


def test_pooled_backbone_is_a_trainable_copy_with_batchnorm_in_eval_mode():
    original = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    original.requires_grad_(False)
    wrapped = PooledBackbone(original, size=8, grid=2).train()
    assert wrapped.backbone is not original
    assert all(p.requires_grad for p in wrapped.parameters())
    assert not any(p.requires_grad for p in original.parameters())
    assert wrapped.training and wrapped.backbone[0].training and not wrapped.backbone[1].training
    images = np.random.default_rng(1).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    batch = wrapped.inputs(images)
    assert batch.shape == (3, 3, 8, 8)
    before = wrapped.backbone[1].running_mean.clone()
    wrapped(batch).sum().backward()
    assert torch.equal(wrapped.backbone[1].running_mean, before)  # eval BN: stats untouched
    assert wrapped.backbone[1].weight.grad is not None  # but its affine weights learn
    assert wrapped.out_dim(images) == 4 * 2 * 2
    expected = image_features(images, wrapped.backbone, size=8, grid=2, batch_size=2,
                              progress=False)
    assert np.array_equal(wrapped.features_of(images, batch_size=2).numpy(), expected)
    assert wrapped.training and not wrapped.backbone[1].training  # mode restored


def test_pooled_backbone_and_check_images_refuse_bad_input():
    with pytest.raises(ValueError, match="no parameters"):
        PooledBackbone(MeanColour())
    with pytest.raises(ValueError, match="torch.nn.Module"):
        PooledBackbone(lambda x: x)
    with pytest.raises(ValueError, match="grid must be >= 1"):
        PooledBackbone(nn.Conv2d(3, 1, 1), grid=0)
    with pytest.raises(ValueError, match=r"feats must be uint8 images .* \(fine-tuning\); got "
                                         r"float32 \(4, 8\)"):
        check_images(np.zeros((4, 8), np.float32), "feats", " (fine-tuning)")
    with pytest.raises(ValueError, match="uint8"):
        check_images(np.zeros((2, 4, 4, 1), np.uint8))
    assert check_images(torch.zeros(1, 2, 2, 3, dtype=torch.uint8)).shape == (1, 2, 2, 3)
