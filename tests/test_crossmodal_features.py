"""Frozen-backbone features for the cross-modal trainers."""

import numpy as np
import pytest
import torch
from torch import nn

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.crossmodal.features import image_features, to_input_tensor


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
