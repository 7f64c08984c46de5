"""LabelledImageDataset: shapes, labels, test transform values, train randomness from torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from irbook.data.finegrained import LabelledSet
from irbook.data.torchsets import CROP_SCALE, LabelledImageDataset

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _two_colour_image(path: Path, width: int, height: int) -> Path:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2:] = (0, 0, 255)
    Image.fromarray(arr).save(path, "PNG")
    return path


def test_path_items_test_transform_resizes_and_centre_crops(tmp_path):
    paths = [_two_colour_image(tmp_path / "wide.png", 32, 16),
             _two_colour_image(tmp_path / "square.png", 16, 16)]
    ds = LabelledImageDataset(LabelledSet(paths, np.array([4, 1])), 16, train=False, **PLAIN)
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 4
    # 32x16 keeps its size (shorter side is 16); the centre crop spans columns 8..23
    assert x[:, :, :8].mean((1, 2)).tolist() == [1.0, 0.0, 0.0]
    assert x[:, :, 8:].mean((1, 2)).tolist() == [0.0, 0.0, 1.0]
    x2, y2 = ds[1]
    assert y2 == 1 and torch.equal(x2, ds[1][0])  # deterministic


def test_normalisation_uses_mean_and_std(tmp_path):
    arr = np.full((2, 8, 8, 3), 51, np.uint8)  # 0.2
    ds = LabelledImageDataset(LabelledSet(arr, np.array([0, 1])), 8, train=False,
                              mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.25))
    x, _ = ds[0]
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), [0.2, 0.0, -0.4], atol=1e-6)


def test_array_items_and_dataloader_batches():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    ds = LabelledImageDataset(LabelledSet(arr, np.arange(6)), 24, train=True)
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 24, 24) and y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 3]
    test = LabelledImageDataset(LabelledSet(arr, np.arange(6)), 32, train=False, **PLAIN)
    np.testing.assert_allclose(test[2][0].permute(1, 2, 0).numpy() * 255, arr[2], atol=1e-3)


def test_train_randomness_comes_from_torch_only():
    arr = np.random.default_rng(1).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    ds = LabelledImageDataset(LabelledSet(arr, np.array([0])), 16, train=True)
    assert ds.transform.transforms[0].scale == CROP_SCALE == (0.16, 1.0)
    torch.manual_seed(3)
    np.random.seed(1)
    a = ds[0][0]
    torch.manual_seed(3)
    np.random.seed(2)  # numpy's global state must not matter
    b = ds[0][0]
    c = ds[0][0]  # the generator moved on
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_bad_arguments():
    ls = LabelledSet(np.zeros((1, 8, 8, 3), np.uint8), np.array([0]))
    with pytest.raises(ValueError, match="image_size"):
        LabelledImageDataset(ls, 0, train=False)
    with pytest.raises(ValueError, match="resize_size"):
        LabelledImageDataset(ls, 8, train=False, resize_size=4)
    with pytest.raises(TypeError, match="LabelledSet"):
        LabelledImageDataset([Path("a.jpg")], 8, train=False)


def test_resize_size_then_centre_crop(tmp_path):
    # the author's test transform: resize the shorter side to 256/224 of the crop, centre crop
    path = _two_colour_image(tmp_path / "img.png", 16, 16)
    ds = LabelledImageDataset(LabelledSet([path], np.array([0])), 8, train=False,
                              resize_size=16, **PLAIN)
    x, _ = ds[0]
    assert x.shape == (3, 8, 8)
    assert x[:, :, :4].mean((1, 2)).tolist() == [1.0, 0.0, 0.0]
