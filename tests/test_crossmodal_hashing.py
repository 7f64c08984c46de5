"""Training and evaluation of the chapter-3 hashing methods on a tiny synthetic problem."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.crossmodal import hashing
from irbook.crossmodal.hashing import (
    METHODS,
    HashingConfig,
    HashingModel,
    build_networks,
    evaluate_hashing,
    train_hashing,
)
from irbook.metrics.hashing import hamming_average_precision

try:
    from irbook.data.crossmodal import TaggedPairs
except ImportError:  # pragma: no cover - helper A's module not there yet
    @dataclass(frozen=True)
    class TaggedPairs:
        name: str
        root: Path
        images: np.ndarray
        tags: np.ndarray
        labels: np.ndarray
        query: np.ndarray
        retrieval: np.ndarray
        train: np.ndarray
        label_names: tuple


N_PAIRS, N_QUERY, N_TRAIN, DIM, VOCAB, N_LABELS = 240, 40, 200, 32, 60, 4
SMALL = dict(n_bits=16, common_dim=32, text_hidden=64, batch_size=32, dropout=0.1, lr=1e-3)


@pytest.fixture(scope="module")
def problem():
    """Image features and tags that are noisy functions of 4 labels."""
    rng = np.random.default_rng(0)
    labels = (rng.random((N_PAIRS, N_LABELS)) < 0.3).astype(np.float32)
    empty = labels.sum(1) == 0
    labels[empty, rng.integers(0, N_LABELS, empty.sum())] = 1
    features = (labels @ rng.standard_normal((N_LABELS, DIM))
                + 0.8 * rng.standard_normal((N_PAIRS, DIM))).astype(np.float32)
    words = rng.random((N_LABELS, VOCAB)) < 0.15
    tags = (rng.random((N_PAIRS, VOCAB)) < np.clip(labels @ words * 0.7 + 0.03, 0, 1))
    perm = rng.permutation(N_PAIRS)
    data = TaggedPairs(name="mirflickr", root=Path("."), images=np.zeros((N_PAIRS, 2, 2, 3),
                       np.uint8), tags=tags.astype(np.float32), labels=labels,
                       query=perm[:N_QUERY], retrieval=perm[N_QUERY:],
                       train=perm[N_QUERY:N_QUERY + N_TRAIN],
                       label_names=tuple("abcd"))
    return data, features


def train(problem, **overrides):
    data, features = problem
    config = HashingConfig(**{**SMALL, **overrides})
    return train_hashing(config, features[data.train], data.tags[data.train],
                         data.labels[data.train], progress=False)


def test_training_raises_map_in_both_directions(problem):
    data, features = problem
    config = HashingConfig(**SMALL, epochs=8)
    torch.manual_seed(config.seed)
    untrained = HashingModel(config, build_networks(config, DIM, VOCAB, N_LABELS).eval(), [])
    before = evaluate_hashing(untrained, data, features).map
    after = evaluate_hashing(train(problem, epochs=8), data, features).map
    for direction in ("i2t", "t2i"):
        assert after[direction] > before[direction] + 0.2, (before, after)
        assert after[direction] > 0.8


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_evaluates(problem, method):
    data, features = problem
    model = train(problem, method=method, epochs=2)
    assert len(model.history) == 2
    assert all(np.isfinite(v) for h in model.history for v in h.values())
    result = evaluate_hashing(model, data, features)
    for name, rows in (("image_query", N_QUERY), ("image_db", N_PAIRS - N_QUERY),
                       ("text_query", N_QUERY), ("text_db", N_PAIRS - N_QUERY)):
        codes = result.codes[name]
        assert codes.shape == (rows, 16) and codes.dtype == np.int8
        assert set(np.unique(codes)) <= {-1, 1}
    for direction in ("i2t", "t2i"):
        assert result.ap[direction].shape == (N_QUERY,)
        assert 0.0 <= result.map[direction] <= 1.0
        assert result.map[direction] == pytest.approx(result.ap[direction].mean())
        assert result.pr[direction].radius.tolist() == list(range(17))


def test_ap_is_the_metric_applied_to_the_codes(problem):
    data, features = problem
    result = evaluate_hashing(train(problem, epochs=1), data, features)
    expected = hamming_average_precision(result.codes["text_query"], result.codes["image_db"],
                                         data.labels[data.query], data.labels[data.retrieval])
    assert np.array_equal(result.ap["t2i"], expected)


def test_same_seed_same_codes_other_seed_other_codes(problem):
    data, features = problem
    codes = [train(problem, epochs=2, seed=s).image_codes(features) for s in (3, 3, 4)]
    assert np.array_equal(codes[0], codes[1])
    assert not np.array_equal(codes[0], codes[2])


def test_training_leaves_the_callers_torch_generator_alone(problem):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(problem, epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_the_domain_weight_changes_the_result(problem):
    _, features = problem
    with_domain = train(problem, epochs=2, alpha=100.0).image_codes(features)
    without = train(problem, epochs=2, alpha=0.0).image_codes(features)
    assert not np.array_equal(with_domain, without)


def test_history_records_each_loss_term(problem):
    expected = {
        "ours": {"pairs", "quantization", "label", "multilevel", "domain", "domain_ce"},
        "baseline1": {"pairs", "quantization"},
        "baseline2": {"pairs", "quantization", "label"},
        "baseline3": {"pairs", "quantization", "label", "multilevel"},
        "dcmh": {"pairs", "quantization", "balance"},
        "ssah": {"label_net", "pairs_feature", "pairs_code", "quantization", "label",
                 "adversarial", "discriminator"},
    }
    for method, terms in expected.items():
        record = train(problem, method=method, epochs=1).history[0]
        assert set(record) == terms | {"epoch", "total", "seconds"}, method
    ours = train(problem, epochs=1).history[0]
    assert ours["domain"] < 0  # minus the entropy of the domain predictions


def test_domain_predictors_learn_and_the_entropy_term_confuses_them(problem):
    free = [h["domain_ce"] for h in train(problem, epochs=6, alpha=0.0).history]
    confused = [h["domain_ce"] for h in train(problem, epochs=6, alpha=100.0).history]
    assert free[-1] < 0.5 * free[0]  # alone, the predictors learn to tell the modalities
    assert confused[-1] > free[-1] + 0.1  # maximising their entropy keeps them uncertain


def test_alternating_steps_update_one_branch_at_a_time(problem, monkeypatch):
    steps = []

    def recording_step(optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        steps.append({id(p) for g in optimizer.param_groups for p in g["params"]
                      if p.grad is not None})
        optimizer.step()

    monkeypatch.setattr(hashing, "_step", recording_step)
    model = train(problem, epochs=1, batch_size=100)  # 2 batches
    owners = {id(p): name for name, net in model.nets.items() for p in net.parameters()}
    touched = [{owners[i] for i in step} for step in steps]
    image, text = {"image", "label", "domain_real", "domain_binary"}, \
        {"text", "label", "domain_real", "domain_binary"}
    assert [t & {"image", "text"} for t in touched] == [{"image"}, {"text"}, set()] * 2
    assert touched[0] <= image and touched[1] <= text
    assert touched[2] == {"domain_real", "domain_binary"}  # the predictors' own step


@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "dch", "method must be one of"),
    ("n_bits", 0, "n_bits must be a positive integer"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("alpha", -1.0, "alpha must be a finite number >= 0"),
    ("epsilon", float("nan"), "epsilon must be a finite number >= 0"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
])
def test_config_is_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        HashingConfig(**{field: value})


def test_inputs_are_validated(problem):
    data, features = problem
    with pytest.raises(ValueError, match="same positive number of rows"):
        train_hashing(HashingConfig(**SMALL, epochs=1), features[:10], data.tags[:9],
                      data.labels[:10], progress=False)
    model = train(problem, epochs=1)
    with pytest.raises(ValueError, match="one row per pair"):
        evaluate_hashing(model, data, features[:10])


# --- end-to-end fine-tuning of the image backbone --------------------------------------------

IMAGES = np.random.default_rng(7).integers(0, 256, size=(N_PAIRS, 16, 16, 3), dtype=np.uint8)
FINETUNE = dict(SMALL, backbone_lr=1e-3, image_size=16, epochs=1)


def smallcnn(seed=0):
    from irbook.models import make_backbone

    torch.manual_seed(seed)
    return make_backbone("smallcnn")


def finetune(problem, backbone=None, **overrides):
    data, _ = problem
    config = HashingConfig(**{**FINETUNE, **overrides})
    return train_hashing(config, IMAGES[data.train], data.tags[data.train],
                         data.labels[data.train], progress=False,
                         backbone=backbone if backbone is not None else smallcnn())


def test_finetuning_updates_a_copy_of_the_backbone_at_its_own_lr(problem):
    backbone = smallcnn()
    original = {k: v.clone() for k, v in backbone.state_dict().items()}
    # one batch of all 200 pairs: one image step, Adam's first step moves a parameter by
    # lr * g / (|g| + eps), i.e. by at most (about) its group's lr
    model = finetune(problem, backbone, batch_size=N_TRAIN, backbone_lr=1e-5, lr=1e-2)
    assert model.finetuned and not train(problem, epochs=1).finetuned
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, original[key])  # the caller's backbone is left alone
    trained = model.nets["backbone"].backbone.state_dict()
    for key, value in original.items():
        change = float((trained[key].float() - value.float()).abs().max())
        if "running" in key or "num_batches" in key:
            assert change == 0, key  # BatchNorm statistics stay those of the pre-training
        else:
            assert 0.9e-5 < change <= 1e-5 * 1.01, key
    head = model.nets["image"].common.weight.detach()
    torch.manual_seed(model.config.seed)  # the initial head of train_hashing
    init = build_networks(model.config, 256, VOCAB, N_LABELS)["image"].common.weight.detach()
    assert 0.9e-2 < float((head - init).abs().max()) <= 1e-2 * 1.01


def test_backbone_is_its_own_group_of_the_main_optimiser(problem):
    config = HashingConfig(**FINETUNE)
    nets = build_networks(config, 256, VOCAB, N_LABELS)
    frozen = hashing._optimizers(config, nets)["main"].param_groups
    assert len(frozen) == 1 and frozen[0]["lr"] == config.lr
    from irbook.crossmodal.features import PooledBackbone

    nets["backbone"] = PooledBackbone(smallcnn())
    groups = hashing._optimizers(config, nets)["main"].param_groups
    assert [g["lr"] for g in groups] == [config.lr, 1e-3]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in nets["backbone"].parameters()]
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in frozen[0]["params"]]


def test_backbone_learns_in_the_image_steps_only(problem, monkeypatch):
    steps = []

    def recording_step(optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        steps.append({id(p) for g in optimizer.param_groups for p in g["params"]
                      if p.grad is not None})
        optimizer.step()

    monkeypatch.setattr(hashing, "_step", recording_step)
    model = finetune(problem, batch_size=100)  # 2 batches: image, text, domain steps
    owners = {id(p): name for name, net in model.nets.items() for p in net.parameters()}
    touched = [{owners[i] for i in step} & {"backbone", "image", "text"} for step in steps]
    assert touched == [{"backbone", "image"}, {"text"}, set()] * 2


@pytest.fixture(scope="module")
def finetuned_model(problem):
    return finetune(problem, method="dcmh", image_grid=2, image_size=32)


def test_finetuned_codes_run_the_trained_backbone(problem, finetuned_model):
    data, features = problem
    model = finetuned_model
    x = torch.from_numpy(IMAGES[:30]).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        maps = model.nets["backbone"].backbone((x - mean) / std)  # smallcnn: a 2 x 2 map
        cells = maps.flatten(2)  # grid 2 over a 2 x 2 map: one cell per location
        logits = model.nets["image"].eval()(cells.flatten(1)).logits.numpy()
    codes = model.image_codes(IMAGES[:30])
    assert model.nets["image"].common.in_features == 256 * 4
    agree = codes == np.where(logits >= 0, 1, -1)
    assert agree[np.abs(logits) > 1e-4].all()
    result = evaluate_hashing(model, data, IMAGES)
    assert np.array_equal(result.codes["image_query"], model.image_codes(IMAGES[data.query]))
    assert all(0 <= v <= 1 for v in result.map.values())
    with pytest.raises(ValueError, match="image_features must be uint8 images"):
        evaluate_hashing(model, data, features)
    with pytest.raises(ValueError, match="image inputs must be uint8 images"):
        model.image_codes(features)


def test_finetuning_is_seeded(problem):
    codes = [finetune(problem, seed=s).image_codes(IMAGES) for s in (3, 3, 4)]
    assert np.array_equal(codes[0], codes[1])
    assert not np.array_equal(codes[0], codes[2])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("backbone_lr", float("nan"), "backbone_lr must be a finite number >= 0"),
    ("backbone_lr", -1e-5, "backbone_lr must be a finite number >= 0"),
    ("backbone_lr", True, "backbone_lr must be a finite number >= 0"),
    ("image_size", 0, "image_size must be a positive integer"),
    ("image_grid", 1.5, "image_grid must be a positive integer"),
])
def test_finetuning_config_is_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        HashingConfig(**{field: value})


def test_finetuning_inputs_are_validated(problem):
    data, features = problem
    args = (data.tags[data.train], data.labels[data.train])
    with pytest.raises(ValueError, match="pass backbone="):
        train_hashing(HashingConfig(**FINETUNE), IMAGES[data.train], *args, progress=False)
    with pytest.raises(ValueError, match=r"image_features must be uint8 images .*"
                                         r"backbone_lr > 0 \(fine-tuning\); got float32"):
        train_hashing(HashingConfig(**FINETUNE), features[data.train], *args, progress=False,
                      backbone=smallcnn())
    with pytest.raises(ValueError, match="backbone is used only with backbone_lr > 0"):
        train_hashing(HashingConfig(**SMALL), features[data.train], *args, progress=False,
                      backbone=smallcnn())
