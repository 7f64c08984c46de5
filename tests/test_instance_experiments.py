"""Shared fine-tuning experiments (irbook.instance.experiments): cached runs, learned whitening."""

import dataclasses

import numpy as np
import pytest
import torch

from irbook.data.sfm import load_sfm120k
from irbook.data.synth.sfm import write_sfm120k
from irbook.instance import FinetuneConfig, experiments
from irbook.models import fit_learned_whitening, make_backbone
from irbook.models.net import RetrievalNet


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from irbook.device import single_cpu_thread

    with single_cpu_thread("cpu"):
        yield


@pytest.fixture(scope="module")
def sfm(tmp_path_factory):
    root = write_sfm120k(tmp_path_factory.mktemp("sfm"), seed=0, n_clusters=10,
                         images_per_cluster=3, image_size=40, val_clusters=3)
    return load_sfm120k(root)


def _config(**overrides):
    values = {"lr": 1e-3, "epochs": 2, "n_queries": 6, "pool_size": 21, "tuples_per_batch": 3,
              "image_size": 40, "mining_batch_size": 16, "device": "cpu", "progress": False}
    return FinetuneConfig(**{**values, **overrides})


def test_the_key_follows_what_changes_the_weights(sfm):
    net = make_backbone("smallcnn", seed=0)
    key = experiments.finetune_key(net, sfm.train, _config())
    assert key == experiments.finetune_key(net, sfm.train, _config(progress=True))
    assert key != experiments.finetune_key(net, sfm.train, _config(lr=2e-3))
    assert key != experiments.finetune_key(make_backbone("smallcnn", seed=1), sfm.train,
                                           _config())
    assert key != experiments.finetune_key(net, sfm.val, _config())
    other = dataclasses.replace(sfm.train, clusters=sfm.train.clusters[::-1].copy())
    assert key != experiments.finetune_key(net, other, _config())


def test_a_finished_run_is_read_back_without_training(sfm, tmp_path, monkeypatch):
    net = make_backbone("smallcnn", seed=0)
    first = experiments.cached_finetune(net, sfm.train, _config(), tmp_path)
    assert len(list(tmp_path.glob("finetune-*.pt"))) == 1 and len(first.history) == 2

    def no_mining(*args, **kwargs):
        raise AssertionError("a finished run must not mine tuples again")

    monkeypatch.setattr("irbook.data.sfm.TupleSampler.tuples", no_mining)
    again = experiments.cached_finetune(net, sfm.train, _config(), tmp_path)
    for (name, a), b in zip(first.net.state_dict().items(), again.net.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in again.history] == [r["loss"] for r in first.history]


def test_split_whitening_is_radenovic_on_the_split_pairs(sfm):
    net = RetrievalNet(make_backbone("smallcnn", seed=0), "gem").eval()
    found = experiments.split_descriptors(net, sfm.val, 40, "cpu", batch_size=8,
                                          progress=False)
    assert found.shape == (sfm.val.n_images, net.dim)
    with torch.no_grad():
        image = experiments.SplitImages(sfm.val, 40)[2].unsqueeze(0)
        np.testing.assert_allclose(found[2], net(image)[0].numpy(), rtol=1e-5, atol=1e-6)
    white = experiments.split_learned_whitening(found, sfm.val, dim=4)
    expected = fit_learned_whitening(found, sfm.val.qidxs, sfm.val.pidxs, dim=4)
    np.testing.assert_allclose(white.P, expected.P)
    with pytest.raises(ValueError, match="one row per image"):
        experiments.split_learned_whitening(found[:-1], sfm.val)


def test_split_maps_are_the_backbone_maps_of_square_resized_images(sfm, tmp_path):
    from PIL import Image

    from irbook.data.sfm import SfmSplit

    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 50, 3), dtype=np.uint8)
                    ).save(wide)
    split = SfmSplit("val", [*sfm.val.image_paths[:2], wide], ["a", "b", "wide"],
                     np.array([0, 0, 1]), np.array([0]), np.array([1]))
    backbone = make_backbone("smallcnn", seed=0).eval()
    maps = experiments.split_conv_maps(backbone, split, 32, "cpu", batch_size=2, progress=False)
    square = experiments.SquareSplitImages(split, 32)[2]
    assert square.shape == (3, 32, 32)  # the 50 x 20 image, its aspect not kept
    with torch.no_grad():
        expected = backbone(square.unsqueeze(0))[0]
    assert maps.shape == (3, *expected.shape) and maps.dtype == torch.float32
    torch.testing.assert_close(maps[2], expected, rtol=1e-5, atol=1e-6)
