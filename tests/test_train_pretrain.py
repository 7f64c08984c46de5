"""The shared stand-in pre-training (irbook.train.standin) and its cache invalidation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import irbook.train.pretrain as pretrain_module
from irbook.data.synth import CLASSIFICATION_SCALES
from irbook.data.synth import classification as synth_classification
from irbook.models import SmallCNN, make_backbone
from irbook.train import fit, standin_backbone, standin_weights, standin_weights_path
from irbook.train.standin import standin_data, training_fingerprint

TINY = {"n_classes": 2, "per_class": 4, "val_per_class": 2, "image_size": 64}
RUN = {"seed": 0, "scale": "tiny", "epochs": 1, "device": "cpu", "progress": False}


@pytest.fixture
def fits(tmp_path, monkeypatch) -> list[int]:
    """Synthetic data and cache in ``tmp_path``, a 2-class preset, and a count of fit calls."""
    monkeypatch.setenv("IRBOOK_SYNTH", str(tmp_path / "synthetic"))
    monkeypatch.setenv("IRBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(CLASSIFICATION_SCALES, "tiny", TINY)
    calls: list[int] = []

    def counting_fit(*args, **kwargs):
        calls.append(kwargs["epochs"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "fit", counting_fit)
    return calls


def _forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fit(*args, **kwargs):
        raise AssertionError("the cached stand-in should have been loaded, not trained")

    monkeypatch.setattr(pretrain_module, "fit", failing_fit)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_second_call_loads_the_cache_without_training(fits, monkeypatch):
    trained = standin_backbone(**RUN)
    assert fits == [1]
    assert isinstance(trained, SmallCNN) and not trained.training
    assert not _same_weights(trained, make_backbone("smallcnn"))
    path = standin_weights_path(seed=0, scale="tiny", epochs=1)
    assert path.name == "smallcnn-synthetic-tiny-seed0-ep1.pt" and path.is_file()
    _forbid_training(monkeypatch)
    reused = standin_backbone(**RUN)
    assert _same_weights(trained, reused) and not reused.training


def test_changing_one_training_image_retrains(fits):
    standin_backbone(**RUN)
    train = standin_data(seed=0, scale="tiny") / "train"
    before = training_fingerprint(train)
    image = next(iter(sorted(train.rglob("*.png"))))
    pixels = np.asarray(Image.open(image).convert("RGB"))
    Image.fromarray(255 - pixels).save(image)
    assert training_fingerprint(train) != before
    standin_backbone(**RUN)
    assert fits == [1, 1]
    assert training_fingerprint(standin_data(seed=0, scale="tiny") / "train") != before
    standin_backbone(**RUN)  # the cache now matches the changed image
    assert fits == [1, 1]


def test_a_new_generator_version_retrains(fits, monkeypatch):
    standin_backbone(**RUN)
    train = standin_data(seed=0, scale="tiny") / "train"
    before = training_fingerprint(train)
    monkeypatch.setattr(synth_classification, "GENERATOR_VERSION",
                        synth_classification.GENERATOR_VERSION + 1)
    standin_backbone(**RUN)
    assert fits == [1, 1]
    # the regenerated files are identical: the version alone invalidated the cache
    assert training_fingerprint(train) == before


def test_other_epochs_use_another_cache_file(fits):
    standin_backbone(**RUN)
    standin_backbone(**{**RUN, "epochs": 2})
    assert fits == [1, 2]
    assert standin_weights_path(seed=0, scale="tiny", epochs=2).is_file()


def test_an_unreadable_cache_is_moved_aside_and_rebuilt(fits):
    path = standin_weights_path(seed=0, scale="tiny", epochs=1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="could not be read"):
        standin_backbone(**RUN)
    assert fits == [1]
    assert path.with_name(path.name + ".unreadable").read_bytes() == b"not a checkpoint"
    assert torch.load(path, weights_only=True)["config"]["epochs"] == 1


def test_weights_file_loads_into_a_fresh_smallcnn(fits):
    path = standin_weights(**RUN)
    assert path == standin_weights_path(seed=0, scale="tiny", epochs=1)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["config"]["extra"]["generator_version"] == synth_classification.GENERATOR_VERSION
    fresh = make_backbone("smallcnn")
    fresh.load_state_dict(payload["state_dict"])  # what IncrementalConfig.backbone_weights does
    cached = standin_backbone(**RUN)
    assert fits == [1] and _same_weights(fresh, cached)


def test_fingerprint_covers_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"12")
    first = training_fingerprint(tmp_path)
    (tmp_path / "a" / "x.png").write_bytes(b"13")
    second = training_fingerprint(tmp_path)
    (tmp_path / "a" / "x.png").rename(tmp_path / "a" / "y.png")
    assert len({first, second, training_fingerprint(tmp_path)}) == 3


def test_the_classifier_head_is_saved_and_classifies_the_training_images(fits, monkeypatch):
    from irbook.data.images import ImageFolderDataset
    from irbook.train.pretrain import cached_head
    from irbook.train.standin import STANDIN_IMAGE_SIZE, standin_head

    weight, bias = standin_head(**RUN)
    assert weight.shape == (TINY["n_classes"], 256) and bias.shape == (TINY["n_classes"],)
    backbone = standin_backbone(**RUN)
    assert fits == [1]  # one training gave both
    images = ImageFolderDataset(standin_data(seed=0, scale="tiny") / "train",
                                image_size=STANDIN_IMAGE_SIZE, train=False)
    batch = torch.stack([images[i][0] for i in range(len(images))])
    with torch.no_grad():
        logits = backbone(batch).mean(dim=(2, 3)) @ weight.T + bias
    assert logits.shape == (len(images), TINY["n_classes"])
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # a trained, non-constant head
    path = standin_weights_path(seed=0, scale="tiny", epochs=1)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    del payload["head"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match="holds no classifier head"):
        cached_head(path)


def test_other_depths_are_trained_and_cached_apart(fits, monkeypatch):
    shallow = standin_backbone(**RUN, depth=2)
    assert fits == [1]
    assert shallow.out_channels == 64 and len(shallow.features) == 6
    path = standin_weights_path(seed=0, scale="tiny", epochs=1, depth=2)
    assert path.name == "smallcnn-d2-synthetic-tiny-seed0-ep1.pt" and path.is_file()
    default = standin_backbone(**RUN)
    assert fits == [1, 1] and default.out_channels == 256
    _forbid_training(monkeypatch)
    assert _same_weights(shallow, standin_backbone(**RUN, depth=2))
