"""What chapters 3 and 4 share: opening a dataset in its layout, the frozen image branch."""

import numpy as np
import pytest

from irbook.chapters import CHAPTERS
from irbook.crossmodal import experiments as xm
from irbook.data.errors import DatasetNotFoundError


def params(tmp_path, **over):
    return {**CHAPTERS["ch03"].resolve("smoke"), "data_root": str(tmp_path), **over}


def test_synthetic_tagged_pairs_are_written_then_read_by_the_real_loader(tmp_path):
    data = xm.open_tagged(params(tmp_path), "nuswide", 30, 100)
    assert (tmp_path / "crossmodal" / "NUS-WIDE" / "nus-wide-tc21-lall.mat").is_file()
    assert data.labels.shape[1] == 21 and data.tags.shape[1] == 1000
    assert len(data.query) == 30 and len(data.train) == 100
    assert not set(data.query) & set(data.retrieval)


def test_real_data_that_is_missing_names_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="MIRFLICKR-25K"):
        xm.open_tagged(params(tmp_path, synthetic=False), "mirflickr", 10, 20)
    with pytest.raises(ValueError, match="dataset must be one of"):
        xm.open_tagged(params(tmp_path), "flickr30k", 10, 20)


def test_frozen_random_backbone_features_have_its_width(tmp_path):
    p = params(tmp_path, pretrained=False)
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    features = xm.image_features_of(images, p, "cpu")
    assert features.shape == (3, 256)
    grid = xm.image_features_of(images, p, "cpu", grid=2)
    assert grid.shape == (3, 4 * 256)
    assert "random weights, frozen" in xm.describe_backbone(p)


def test_asking_for_missing_imagenet_weights_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(FileNotFoundError, match="vgg16"):
        xm.preflight_weights(params(tmp_path, backbone="vgg16", pretrained=True))
