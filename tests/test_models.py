"""Backbones, pretrained-weight loading, RetrievalNet, whitening and extraction."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from irbook.models import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedWeightsMissingError,
    RetrievalNet,
    extract_descriptors,
    extract_feature_maps,
    fit_learned_whitening,
    fit_pca_whitening,
    gem,
    l2n,
    make_backbone,
    pool_maps,
    pretrained_weights_path,
)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_smallcnn_maps_64px_images_to_a_4x4_grid_of_256_channels():
    backbone = make_backbone("smallcnn")
    assert backbone.out_channels == 256
    assert backbone(torch.rand(2, 3, 64, 64)).shape == (2, 256, 4, 4)
    assert 200_000 < sum(p.numel() for p in backbone.parameters()) < 500_000


def test_resnet18_is_cut_before_global_pooling():
    backbone = make_backbone("resnet18").eval()
    assert backbone.out_channels == 512
    assert backbone(torch.rand(1, 3, 32, 32)).shape == (1, 512, 1, 1)
    assert not any(isinstance(m, nn.Linear | nn.AdaptiveAvgPool2d) for m in backbone.modules())


def test_unknown_backbone_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match="backbone must be one of " + ", ".join(BACKBONES)):
        make_backbone("alexnet")


def test_pretrained_smallcnn_points_to_the_book_pretraining():
    with pytest.raises(ValueError, match=r"irbook\.train\.pretrain"):
        make_backbone("smallcnn", pretrained=True)


def test_weight_file_names_come_from_torchvision():
    assert pretrained_weights_path("resnet50").name == "resnet50-0676ba61.pth"
    assert pretrained_weights_path("vgg16").name == "vgg16-397923af.pth"


def test_missing_pretrained_weights_name_the_expected_path(hub_dir):
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedWeightsMissingError) as info:
        make_backbone("resnet18", pretrained=True)
    assert isinstance(info.value, FileNotFoundError)
    assert str(expected) in str(info.value) and "copy" in str(info.value)


def test_damaged_pretrained_weights_are_reported(hub_dir):
    path = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsMissingError, match="cannot be read"):
        make_backbone("resnet18", pretrained=True)


def test_present_pretrained_weights_are_loaded(hub_dir):
    torch.manual_seed(123)
    reference = tvm.resnet18(weights=None)
    (hub_dir / "checkpoints").mkdir()
    torch.save(reference.state_dict(), hub_dir / "checkpoints" / "resnet18-f37072fd.pth")
    torch.manual_seed(0)  # a different random init, overwritten by the file
    backbone = make_backbone("resnet18", pretrained=True).eval()
    images = torch.rand(1, 3, 32, 32)
    expected = nn.Sequential(*list(reference.eval().children())[:-2])(images)
    torch.testing.assert_close(backbone(images), expected, rtol=0, atol=0)


def test_retrieval_net_outputs_unit_descriptors_with_and_without_whitening():
    backbone = make_backbone("smallcnn").eval()
    images = torch.rand(3, 3, 64, 64)
    plain = RetrievalNet(backbone, "gem")
    assert plain.dim == 256
    whitened = RetrievalNet(backbone, "mac", whiten=nn.Linear(256, 16))
    for net, dim in ((plain, 256), (whitened, 16)):
        out = net(images)
        assert out.shape == (3, dim)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert plain.feature_maps(images).shape == (3, 256, 4, 4)


def test_pool_maps_gives_normalised_float32_rows():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(8, 3, 5, generator=generator), torch.rand(8, 4, 4, generator=generator)]
    for pooling in ("mac", "spoc", "gem", "rmac", "crow"):
        out = pool_maps(maps, pooling)
        assert out.shape == (2, 8) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pool_maps(maps, "gem")[1], l2n(gem(maps[1][None]))[0], rtol=1e-6)


class _MixedImages(torch.utils.data.Dataset):
    """Images of different sizes; odd items come as (image, label) tuples."""

    def __init__(self):
        generator = torch.Generator().manual_seed(1)
        self.images = [torch.rand(3, 64 + 16 * i, 64, generator=generator) for i in range(3)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return (self.images[index], index) if index % 2 else self.images[index]


def test_extraction_handles_mixed_sizes_and_restores_the_training_mode():
    torch.manual_seed(0)
    net = RetrievalNet(make_backbone("smallcnn"), "spoc")
    net.train()
    dataset = _MixedImages()
    maps = extract_feature_maps(net.backbone, dataset, progress=False)
    assert [m.shape for m in maps] == [(256, 4, 4), (256, 5, 4), (256, 6, 4)]
    descriptors = extract_descriptors(net, dataset, progress=False)
    assert net.training and descriptors.shape == (3, 256) and descriptors.dtype == np.float32
    np.testing.assert_allclose(descriptors, pool_maps(maps, "spoc"), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(descriptors[2], net.eval()(dataset.images[2][None])[0],
                                   rtol=1e-5, atol=1e-6)


def test_imagenet_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_old_constant_names_are_the_shared_constants():
    from irbook import constants
    from irbook.data import torchsets
    from irbook.models import POOLINGS

    assert BACKBONES is constants.BACKBONES and POOLINGS is constants.POOLINGS
    assert IMAGENET_MEAN is constants.IMAGENET_MEAN and IMAGENET_STD is constants.IMAGENET_STD
    assert torchsets.IMAGENET_MEAN is constants.IMAGENET_MEAN


def test_constants_module_does_not_import_torch():
    code = ("import sys, irbook.constants as c; assert 'torch' not in sys.modules, 'torch'; "
            "print(','.join(c.BACKBONES), ','.join(c.POOLINGS), ','.join(c.INSTANCE_BENCHMARKS))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "smallcnn,resnet18,resnet50,resnet101,vgg16,mobilenet_v2,googlenet",
        "mac,spoc,gem,rmac,crow", "roxford5k,rparis6k,holidays,ukbench"]


def test_googlenet_trunk_stops_after_inception5b():
    torch.manual_seed(0)
    trunk = make_backbone("googlenet", pretrained=False).eval()
    assert trunk.out_channels == 1024 and not trunk.half_range_input
    assert not any(isinstance(m, nn.Linear | nn.Dropout | nn.AdaptiveAvgPool2d)
                   for m in trunk.modules())
    # The same weights in a whole torchvision GoogLeNet: the trunk's output must be the
    # output of its inception5b block (before avgpool, dropout and fc).
    reference = tvm.googlenet(weights=None, aux_logits=False, init_weights=False,
                              transform_input=False).eval()
    names = [name for name, _ in reference.named_children()]
    kept = names[: names.index("inception5b") + 1]
    assert len(trunk.features) == len(kept)
    state = {f"{kept[int(key.split('.')[1])]}.{key.split('.', 2)[2]}": value
             for key, value in trunk.state_dict().items()}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    captured = {}
    reference.inception5b.register_forward_hook(lambda m, i, out: captured.update(out=out))
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        maps = trunk(images)
        reference(images)
    assert maps.shape == (2, 1024, 7, 7)
    torch.testing.assert_close(maps, captured["out"], rtol=0, atol=0)


def _correlated_descriptors(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_pca_whitened_training_data_has_identity_covariance():
    X = _correlated_descriptors()
    whitening = fit_pca_whitening(X)
    Y = whitening.apply(X, normalize=False)
    np.testing.assert_allclose(np.cov(Y.T), np.eye(6), atol=1e-8)
    np.testing.assert_allclose(Y.mean(axis=0), 0.0, atol=1e-10)


def test_pca_eigenvalues_are_sorted_and_dimensions_truncate():
    X = _correlated_descriptors()
    whitening = fit_pca_whitening(X)
    expected = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]
    np.testing.assert_allclose(whitening.eigenvalues, expected, rtol=1e-8)
    reduced = whitening.apply(X, dim=3)
    assert reduced.shape == (300, 3)
    np.testing.assert_allclose(np.linalg.norm(reduced, axis=1), 1.0)
    np.testing.assert_allclose(fit_pca_whitening(X, dim=3).apply(X), reduced)
    with pytest.raises(ValueError, match="dim must be between 1 and 6"):
        whitening.apply(X, dim=7)


def test_whitening_as_linear_matches_apply():
    X = _correlated_descriptors()
    whitening = fit_pca_whitening(X)
    layer = whitening.as_linear(dim=4)
    with torch.no_grad():
        out = layer(torch.from_numpy(X).float()).numpy()
    np.testing.assert_allclose(out, whitening.apply(X, dim=4, normalize=False), rtol=1e-4,
                               atol=1e-4)


def test_learned_whitening_whitens_matching_pair_differences():
    X = _correlated_descriptors(n=200)
    rng = np.random.default_rng(3)
    queries = np.arange(100)
    positives = queries + 100
    X[positives] = X[queries] + 0.05 * rng.normal(size=(100, 6)) * [1, 1, 1, 5, 5, 5]
    whitening = fit_learned_whitening(X, queries, positives, eps=0.0)
    assert whitening.P.shape == (6, 6) and fit_learned_whitening(X, queries, positives,
                                                                  dim=2).P.shape == (2, 6)
    assert np.all(np.diff(whitening.eigenvalues) <= 0)
    differences = whitening.apply(X[queries], normalize=False) - whitening.apply(
        X[positives], normalize=False)
    np.testing.assert_allclose(differences.T @ differences / 100, np.eye(6), atol=1e-8)


def _weights(module: nn.Module) -> torch.Tensor:
    return torch.cat([t.flatten() for t in module.state_dict().values() if t.is_floating_point()])


def test_seeded_backbone_is_the_same_in_every_process_and_leaves_the_global_rng_alone():
    code = ("import torch; from irbook.models import make_backbone; "
            "b = make_backbone('smallcnn', seed=3); "
            "print(float(torch.cat([t.flatten() for t in b.state_dict().values() "
            "if t.is_floating_point()]).sum()))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert runs[0] == runs[1]
    state = torch.random.get_rng_state()
    first = _weights(make_backbone("smallcnn", seed=3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, _weights(make_backbone("smallcnn", seed=3)))
    assert not torch.equal(first, _weights(make_backbone("smallcnn", seed=4)))
    assert float(first.sum()) == pytest.approx(float(runs[0]), rel=1e-6)


def test_sample_local_descriptors_draws_map_positions_per_image():
    import torch

    from irbook.models import sample_local_descriptors

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    images = [torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3) + 100 * i
              for i in range(2)]  # two "maps" of C = 2 channels at 3 x 3 positions
    drawn = sample_local_descriptors(Identity(), images, per_image=4, seed=1, progress=False)
    assert drawn.shape == (8, 2)
    for i, rows in enumerate((drawn[:4], drawn[4:])):
        positions = images[i].flatten(1).T.numpy()  # (9, 2): every local descriptor
        assert all(any(np.array_equal(r, p) for p in positions) for r in rows)
        assert len({tuple(r) for r in rows}) == 4  # without replacement
    again = sample_local_descriptors(Identity(), images, per_image=4, seed=1, progress=False)
    np.testing.assert_array_equal(drawn, again)
    assert sample_local_descriptors(Identity(), images, per_image=50, progress=False).shape == (
        18, 2)
    with pytest.raises(ValueError, match="per_image must be an integer >= 1"):
        sample_local_descriptors(Identity(), images, per_image=0)


def test_extract_pooled_takes_modules_by_name():
    import torch

    from irbook.models import extract_pooled
    from irbook.models.pooling import MAC

    class Double(torch.nn.Module):
        def forward(self, maps):
            return 2 * maps.mean(dim=(2, 3))

    images = [torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    out = extract_pooled(torch.nn.Identity(), images, {"mac": MAC(), "double": Double()},
                         progress=False)
    by_name = extract_pooled(torch.nn.Identity(), images, ["mac"], progress=False)
    np.testing.assert_allclose(out["mac"], by_name["mac"])
    means = np.stack([im.mean(dim=(1, 2)).numpy() for im in images])
    np.testing.assert_allclose(out["double"], means / np.linalg.norm(means, axis=1,
                                                                     keepdims=True), rtol=1e-6)
