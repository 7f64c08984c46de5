"""Representative-image generation by BatchNorm inversion (thesis Algorithm 2, lines 7-16) with a
tiny teacher whose BN running statistics come from known structured images."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.losses.inversion import batchnorm_statistics, bn_statistics_loss
from irbook.train.inversion import (
    GeneratedImages,
    InversionConfig,
    denormalize,
    generate_representatives,
    pseudo_labels,
)

SIZE = 16


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def normalise(images01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images01 - mean) / std


@pytest.fixture(scope="module")
def teacher() -> Tiny:
    """Running statistics = the (cumulative) statistics of smooth colour images."""
    torch.manual_seed(0)
    net = Tiny()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    coarse = torch.rand(64, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    smooth = nn.functional.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)
    with torch.no_grad():
        net.train()(normalise(smooth))
    return net.eval()


def bn_loss_of(net: nn.Module, images_uint8: np.ndarray) -> float:
    x = normalise(torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad(), batchnorm_statistics(net) as stats:
        net(x)
        return bn_statistics_loss(stats).item()


def config(**kwargs) -> InversionConfig:
    values = {"iterations": 60, "lr": 0.1, "image_size": SIZE, "batch_size": 8,
              "progress": False, "seed": 3}
    return InversionConfig(**{**values, **kwargs})


def test_generation_lowers_the_bn_loss_far_below_that_of_noise(teacher):
    # the BN term weighted up: with the thesis weights the cluster term dominates this tiny net
    result = generate_representatives(teacher, 8, 2, config(bn_weight=1.0, cluster_weight=0.01,
                                                            tv_weight=0.0, l2_weight=0.0))
    noise = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), batchnorm_statistics(teacher) as stats:
        teacher(noise)
        noise_loss = bn_statistics_loss(stats).item()
    generated_loss = bn_loss_of(teacher, result.images)
    assert generated_loss < 0.1 * noise_loss
    bn = [row["bn"] for row in result.history]
    assert bn[-1] < 0.1 * bn[0]


def test_generation_with_the_cluster_term_only_separates_the_pseudo_classes(teacher):
    result = generate_representatives(teacher, 8, 2, config(bn_weight=0.0, tv_weight=0.0,
                                                            l2_weight=0.0))
    cluster = [row["cluster"] for row in result.history]
    assert np.mean(cluster[-5:]) < 0.5 * np.mean(cluster[:5])


def test_output_shapes_types_labels_and_history(teacher):
    result = generate_representatives(teacher, 12, 3, config(iterations=4, batch_size=5))
    assert isinstance(result, GeneratedImages)
    assert result.images.shape == (12, SIZE, SIZE, 3) and result.images.dtype == np.uint8
    assert result.labels.shape == (12,) and result.labels.dtype == np.int64
    assert np.bincount(result.labels).tolist() == [4, 4, 4]
    # 12 images in batches of at most 5: three batches of 4, 4 rows each
    assert [row["batch"] for row in result.history] == [0] * 4 + [1] * 4 + [2] * 4
    assert [row["iteration"] for row in result.history[:4]] == [1, 2, 3, 4]
    for row in result.history:
        assert {"bn", "cluster", "tv", "l2", "total", "lr", "stopped_early"} <= set(row)
        weighted = 0.01 * row["bn"] + 0.1 * row["cluster"] + 1e-4 * row["tv"] + 1e-5 * row["l2"]
        assert row["total"] == pytest.approx(weighted, rel=1e-5)
    lrs = [row["lr"] for row in result.history[:4]]
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)])
    assert not result.stopped_early and result.snapshots == []


def test_same_seed_gives_identical_images_and_another_seed_differs(teacher):
    first = generate_representatives(teacher, 6, 2, config(iterations=8))
    second = generate_representatives(teacher, 6, 2, config(iterations=8))
    other = generate_representatives(teacher, 6, 2, config(iterations=8, seed=4))
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert [r["total"] for r in first.history] == [r["total"] for r in second.history]
    assert not np.array_equal(first.images, other.images)


def test_teacher_is_left_unchanged(teacher):
    net = copy.deepcopy(teacher).train()
    net.features[1].eval()
    net.head.weight.requires_grad_(False)
    before = copy.deepcopy(net.state_dict())
    modes = [m.training for m in net.modules()]
    generate_representatives(net, 4, 2, config(iterations=3))
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == [
        name != "head.weight" for name, _ in net.named_parameters()]
    assert all(p.grad is None for p in net.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_pseudo_labels_are_balanced_grouped_and_seeded():
    labels = pseudo_labels(40, 4, 20, torch.Generator().manual_seed(0))
    assert np.bincount(labels.numpy()).tolist() == [10] * 4
    for batch in labels.split([20, 20]):  # each batch: all four classes, five of each
        assert np.bincount(batch.numpy()).tolist() == [5] * 4
    again = pseudo_labels(40, 4, 20, torch.Generator().manual_seed(0))
    assert torch.equal(labels, again)
    many = pseudo_labels(61, 30, 16, torch.Generator().manual_seed(0))  # K > batch: pairs
    assert sorted(np.bincount(many.numpy()).tolist()) == [2] * 29 + [3]
    first_batch = many[:16].numpy()
    assert len(set(first_batch.tolist())) == 8 and set(np.bincount(first_batch)) <= {0, 2}


def test_snapshots_and_time_budget(teacher):
    result = generate_representatives(teacher, 6, 2, config(iterations=10, snapshot_every=4,
                                                            snapshot_images=3, batch_size=3))
    assert [it for it, _ in result.snapshots] == [0, 4, 8, 10]
    assert all(images.shape == (3, SIZE, SIZE, 3) for _, images in result.snapshots)
    np.testing.assert_array_equal(result.snapshots[-1][1], result.images[:3])
    stopped = generate_representatives(teacher, 6, 2, config(iterations=50, batch_size=3,
                                                             time_budget_s=1e-9))
    assert stopped.stopped_early
    assert [(r["batch"], r["iteration"], r["stopped_early"]) for r in stopped.history] == [
        (0, 1, True), (1, 1, True)]
    assert stopped.images.shape == (6, SIZE, SIZE, 3)


def test_denormalize_inverts_the_imagenet_normalisation():
    pixels = torch.tensor([0.0, 0.4, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    images = denormalize(normalise(pixels))
    assert images.shape == (1, 2, 2, 3) and images.dtype == np.uint8
    assert images[0, 0, 0].tolist() == [0, 102, 255]
    assert denormalize(torch.full((1, 3, 1, 1), 100.0))[0, 0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("field", "value"), [
    ("iterations", 0), ("iterations", 2.0), ("lr", float("nan")), ("lr", 0.0),
    ("bn_weight", -1.0), ("cluster_weight", float("inf")), ("tv_weight", float("nan")),
    ("margin", -0.5), ("jitter", -1), ("jitter", SIZE), ("first_bn_multiplier", 0.0),
    ("batch_size", 0), ("seed", 1.5), ("snapshot_every", 0), ("time_budget_s", float("nan")),
    ("flip", 1), ("progress", "yes"), ("bn_squared", None)])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        config(**{field: value})


def test_generation_errors(teacher):
    with pytest.raises(ValueError, match="n_classes"):
        generate_representatives(teacher, 4, 1, config())
    with pytest.raises(ValueError, match="n_images"):
        generate_representatives(teacher, 2, 3, config())
    with pytest.raises(ValueError, match="InversionConfig"):
        generate_representatives(teacher, 4, 2, {"iterations": 3})
    with pytest.raises(ValueError, match="BatchNorm2d"):
        generate_representatives(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 4, 2,
                                 config(iterations=1))
    with pytest.raises(ValueError, match=r"\(B, D\) features"):
        generate_representatives(teacher.features, 4, 2, config(iterations=1))
    single = generate_representatives(teacher, 3, 1, config(iterations=2, cluster_weight=0.0))
    assert [row["cluster"] for row in single.history] == [0.0, 0.0]
