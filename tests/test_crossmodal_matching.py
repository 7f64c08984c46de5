"""Chapter-4 matching trainer (Algorithm 1, baselines), evaluation and complexity."""

import math

import numpy as np
import pytest
import torch

from irbook.crossmodal.complexity import complexity, count_flops
from irbook.crossmodal.features import to_input_tensor
from irbook.crossmodal.matching import (
    COMPONENTS,
    MatchingConfig,
    MatchingNetwork,
    _Trainer,
    evaluate_matching,
    generator_losses,
    train_matching,
)
from irbook.losses.crossmodal import modality_cross_entropy
from irbook.metrics.crossmodal import i2t_ranks, recall_at, t2i_ranks

N_WORDS = 2 + 15 + 10  # PAD, UNK, 3 attributes x 5 values, 10 noise words


def tiny_problem(n_images=60, per_image=3, seed=0, dim=24):
    """Images with 3 hidden attributes (5 values each): features are a random linear map of the
    attributes plus noise; each caption names the attributes in random order among noise words."""
    rng = np.random.default_rng(seed)
    attributes = rng.integers(0, 5, size=(n_images, 3))
    onehot = np.zeros((n_images, 15))
    for a in range(3):
        onehot[np.arange(n_images), 5 * a + attributes[:, a]] = 1
    features = onehot @ rng.normal(size=(15, dim)) + 0.1 * rng.normal(size=(n_images, dim))
    captions = []
    for i in range(n_images):
        for _ in range(per_image):
            words = [2 + 5 * a + attributes[i, a] for a in range(3)]
            words += list(17 + rng.integers(0, 10, size=rng.integers(1, 3)))
            rng.shuffle(words)
            captions.append(words)
    tokens = np.zeros((len(captions), 5), dtype=np.int64)
    lengths = np.array([len(c) for c in captions])
    for j, words in enumerate(captions):
        tokens[j, :len(words)] = words
    caption_image = np.repeat(np.arange(n_images), per_image)
    return features.astype(np.float32), tokens, lengths, caption_image, np.arange(n_images)


PROBLEM = tiny_problem()
SMALL = dict(embed_dim=16, word_dim=8, text_hidden=16, batch_size=30, lr=3e-3,
             generator_steps=2)


def train(**overrides):
    config = MatchingConfig(**{**SMALL, "epochs": 1, **overrides})
    return train_matching(config, *PROBLEM, vocab_size=N_WORDS, progress=False)


def evaluate(model, **kwargs):
    return evaluate_matching(model, *PROBLEM, **kwargs)


@pytest.fixture(scope="module")
def trained():
    return train(epochs=8)


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("method", "sgd"), ("components", ("ce", "xx")), ("components", ("ce", "ce")),
    ("components", ()), ("discriminator", "both"), ("tau", 0.0), ("tau", math.inf),
    ("margin", -0.1), ("generator_steps", 0), ("embed_dim", 0), ("epochs", 1.5),
    ("batch_size", 1), ("dropout", 1.0), ("lr", 0.0), ("seed", -1), ("device", "tpu"),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"MatchingConfig.{field}"):
        MatchingConfig(**{field: value})


def test_config_terms():
    assert MatchingConfig(components=["ce", "tr"]).components == ("ce", "tr")
    assert MatchingConfig().terms == ("ce", "tr", "di", "kl", "s")
    assert MatchingConfig(discriminator="separate").terms[-2:] == ("s", "c_rev")
    assert MatchingConfig(method="vsepp").terms == ("vsepp",)
    assert MatchingConfig(method="cmpm_cmpc", components=()).terms == ("cmpm", "cmpc")
    assert not MatchingConfig(components=("tr", "kl")).needs_classifier


# --- training --------------------------------------------------------------------------------

def test_training_learns_both_directions(trained):
    result = evaluate(trained)
    chance = 100 / 60 * 3  # generous (i2t: three captions per image; t2i chance is 100 / 60)
    assert result.recall["i2t"][1] > 5 * chance  # seeds 0-3 reach 50-72 %
    assert result.recall["t2i"][1] > 5 * chance  # seeds 0-3 reach 41-60 %
    untrained = evaluate(train(epochs=1, lr=1e-6))
    assert result.rsum > untrained.rsum + 100
    first, last = trained.history[0], trained.history[-1]
    assert last["total"] < first["total"]
    assert set(first) >= {"epoch", "ce", "tr", "di", "kl", "s", "c", "total", "seconds"}


@pytest.mark.parametrize("overrides", [
    dict(method="vsepp"), dict(method="cmpm_cmpc"), dict(discriminator="separate"),
    *[dict(components=(c,)) for c in COMPONENTS],
    dict(components=("ce", "tr")), dict(components=("ce", "tr", "di")),
    dict(components=("ce", "tr", "di", "kl")),
])
def test_every_method_and_component_subset_runs(overrides):
    model = train(**overrides)
    stats = model.history[0]
    for term in model.config.terms:
        assert math.isfinite(stats[term])
    assert ("c" in stats) == model.config.adversarial
    image = model.image_embeddings(PROBLEM[0])
    assert image.shape == (60, 16) and np.allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)


def test_same_seed_same_embeddings_other_seed_differs():
    a, b, c = train(seed=3), train(seed=3), train(seed=4)
    tokens, lengths = PROBLEM[1], PROBLEM[2]
    assert np.array_equal(a.text_embeddings(tokens, lengths), b.text_embeddings(tokens, lengths))
    assert np.array_equal(a.image_embeddings(PROBLEM[0]), b.image_embeddings(PROBLEM[0]))
    assert not np.allclose(a.image_embeddings(PROBLEM[0]), c.image_embeddings(PROBLEM[0]))


def test_components_change_the_result():
    base = train(components=("ce", "tr")).image_embeddings(PROBLEM[0])
    for extra in ("di", "kl", "adv"):
        other = train(components=("ce", "tr", extra)).image_embeddings(PROBLEM[0])
        assert not np.allclose(base, other, atol=1e-4), extra
    separate = train(discriminator="separate").image_embeddings(PROBLEM[0])
    assert not np.allclose(train().image_embeddings(PROBLEM[0]), separate, atol=1e-4)


def _batch(config, size=12):
    features, tokens, lengths, caption_image, labels = PROBLEM
    index = np.arange(size)
    return (torch.as_tensor(features[caption_image[index]]), torch.as_tensor(tokens[index]),
            torch.as_tensor(lengths[index]), torch.as_tensor(labels[caption_image[index]]))


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, q) for p, q in zip(module.parameters(), before, strict=True))


@pytest.mark.parametrize("discriminator", ["unified", "separate"])
def test_algorithm_1_alternation(discriminator):
    torch.manual_seed(0)
    config = MatchingConfig(**{**SMALL, "generator_steps": 3, "discriminator": discriminator})
    net = MatchingNetwork(config, PROBLEM[0].shape[1], N_WORDS, n_classes=60)
    trainer = _Trainer(config, net)
    d, batch = net.discriminator(), _batch(config)
    d_before, e_before = _snapshot(d), _snapshot(net.image)
    for step in range(1, 4):
        _, z_image, z_text = trainer.generator_step(batch)
        assert not _changed(d, d_before)          # θ_D fixed in the generator steps
        assert all(p.grad is None for p in d.parameters())
        e_after = _snapshot(net.image)
        loss = trainer.discriminator_step(z_image, z_text)
        assert (loss is None) == (step < 3)        # one D step per generator_steps
    assert _changed(d, d_before)
    assert not _changed(net.image, e_after)        # encoders fixed in the discriminator step
    assert _changed(net.image, e_before)


def test_separate_paradigm_reverses_classifier_gradient_to_encoders():
    torch.manual_seed(1)
    config = MatchingConfig(**{**SMALL, "discriminator": "separate", "components": ("adv",)})
    net = MatchingNetwork(config, PROBLEM[0].shape[1], N_WORDS, n_classes=60)
    z_image = torch.randn(5, 16, requires_grad=True)
    z_text = torch.randn(5, 16, requires_grad=True)
    labels = torch.arange(5)
    generator_losses(config, net, z_image, z_text, labels)["c_rev"].backward()
    reversed_grad = z_image.grad.clone()
    z_image.grad = None
    classifier = net.adversary.classifier
    modality_cross_entropy(classifier(z_image), classifier(z_text)).backward()
    assert torch.allclose(reversed_grad, -z_image.grad)
    assert id(classifier.net[0].weight) in {id(p) for p in net.generator_parameters()}


def test_training_input_checks():
    features, tokens, lengths, caption_image, labels = PROBLEM
    config = MatchingConfig(**SMALL, epochs=1)
    with pytest.raises(ValueError, match="vocab_size"):
        train_matching(config, *PROBLEM, vocab_size=10, progress=False)
    with pytest.raises(ValueError, match="caption_image"):
        train_matching(config, features, tokens, lengths, caption_image + 1, labels, N_WORDS,
                       progress=False)
    with pytest.raises(ValueError, match="labels"):
        train_matching(config, features, tokens, lengths, caption_image, labels[:5], N_WORDS,
                       progress=False)


def test_labels_may_be_any_integers():
    features, tokens, lengths, caption_image, labels = PROBLEM
    config = MatchingConfig(**SMALL, epochs=1)
    a = train_matching(config, *PROBLEM, vocab_size=N_WORDS, progress=False)
    b = train_matching(config, features, tokens, lengths, caption_image, 1000 + 7 * labels,
                       N_WORDS, progress=False)
    assert np.array_equal(a.image_embeddings(features), b.image_embeddings(features))


# --- evaluation ------------------------------------------------------------------------------

def test_evaluation_matches_the_metrics(trained):
    result = evaluate(trained)
    sim = result.embeddings["image"] @ result.embeddings["text"].T
    caption_image = PROBLEM[3]
    assert result.recall["i2t"] == recall_at(i2t_ranks(sim, caption_image))
    assert result.recall["t2i"] == recall_at(t2i_ranks(sim, caption_image))
    assert result.rsum == pytest.approx(sum(result.recall["i2t"].values())
                                        + sum(result.recall["t2i"].values()))
    for direction, n in (("i2t", 60), ("t2i", 180)):
        assert result.hits[direction][1].shape == (n,)
        assert result.hits[direction][5].mean() == pytest.approx(result.recall[direction][5])
        assert result.ap[direction].shape == (n,)
        assert 0 <= result.map[direction] <= 100
        assert list(result.pr[direction].columns) == ["recall", "precision"]
    # every image is its own instance: the AP of a caption is 100 / (rank of its image + 1)
    ranks = t2i_ranks(sim, caption_image)
    assert np.allclose(result.ap["t2i"], 100 / (ranks + 1))


def test_folds_are_scored_one_by_one_and_averaged(trained):
    folds = [np.arange(0, 30), np.arange(30, 60)]
    result = evaluate(trained, folds=folds)
    full = evaluate(trained)
    expected = []
    for fold in folds:
        captions = np.flatnonzero(np.isin(PROBLEM[3], fold))
        sim = full.embeddings["image"][fold] @ full.embeddings["text"][captions].T
        local = PROBLEM[3][captions] - fold[0]
        expected.append(recall_at(i2t_ranks(sim, local))[1])
    assert result.recall["i2t"][1] == pytest.approx(np.mean(expected))
    assert result.hits["t2i"][1].shape == (180,)
    assert result.recall["t2i"][1] >= full.recall["t2i"][1]  # 30 candidates instead of 60
    with pytest.raises(ValueError, match="folds"):
        evaluate(trained, folds=[np.array([0, 0])])


def test_noise_changes_embeddings_deterministically(trained):
    clean = evaluate(trained)
    zero = evaluate(trained, noise_sigma=0.0)
    assert np.array_equal(clean.embeddings["text"], zero.embeddings["text"])
    a = evaluate(trained, noise_sigma=0.5, noise_seed=1)
    b = evaluate(trained, noise_sigma=0.5, noise_seed=1)
    c = evaluate(trained, noise_sigma=0.5, noise_seed=2)
    for modality in ("image", "text"):
        assert np.array_equal(a.embeddings[modality], b.embeddings[modality])
        assert not np.allclose(a.embeddings[modality], clean.embeddings[modality])
        assert not np.allclose(a.embeddings[modality], c.embeddings[modality])
    with pytest.raises(ValueError, match="noise_sigma"):
        evaluate(trained, noise_sigma=-1.0)


# --- complexity ------------------------------------------------------------------------------

def test_linear_flops_are_two_in_out_batch():
    layer = torch.nn.Linear(7, 5)
    assert count_flops(layer, torch.zeros(3, 7)) == 2 * 7 * 5 * 3


def test_complexity_returns_positive_finite_numbers(trained):
    features = torch.as_tensor(PROBLEM[0][:4])
    tokens, lengths = torch.as_tensor(PROBLEM[1][:4]), torch.as_tensor(PROBLEM[2][:4])
    out = complexity(trained.image_encoder, trained.text_encoder, features, (tokens, lengths),
                     repeats=3, number=1)
    assert set(out) == {"flops", "flops_per_pair", "params_million", "ms_mean", "ms_std"}
    assert all(math.isfinite(v) and v > 0 for v in out.values())
    image_flops = 2 * 24 * 16 * 4
    assert out["flops"] > image_flops  # the image projection plus the Bi-LSTM and projection
    n_params = sum(p.numel() for m in (trained.image_encoder, trained.text_encoder)
                   for p in m.parameters())
    assert out["params_million"] == pytest.approx(n_params / 1e6)
    with pytest.raises(ValueError, match="same number"):
        complexity(trained.image_encoder, trained.text_encoder, features[:2], (tokens, lengths))
    with pytest.raises(ValueError, match="text_model must be a torch.nn.Module"):
        complexity(trained.image_encoder, trained, features, (tokens, lengths))
    from_numpy = complexity(trained.image_encoder, trained.text_encoder, PROBLEM[0][:4],
                            (PROBLEM[1][:4], PROBLEM[2][:4]), repeats=2, number=1)
    assert from_numpy["flops"] == out["flops"]


# --- end-to-end fine-tuning of the image backbone --------------------------------------------

IMAGES = np.random.default_rng(5).integers(0, 256, size=(60, 16, 16, 3), dtype=np.uint8)
FINETUNE = dict(SMALL, backbone_lr=1e-3, image_size=16, epochs=1)


def smallcnn(seed=0):
    from irbook.models import make_backbone

    torch.manual_seed(seed)
    return make_backbone("smallcnn")


def finetuned(backbone=None, **overrides):
    config = MatchingConfig(**{**FINETUNE, **overrides})
    return train_matching(config, IMAGES, *PROBLEM[1:], vocab_size=N_WORDS, progress=False,
                          backbone=backbone if backbone is not None else smallcnn())


def _max_change(module, before):
    return max(float((p.detach() - q).abs().max())
               for p, q in zip(module.parameters(), before, strict=True))


def test_finetuning_trains_a_copy_of_the_backbone_batchnorm_statistics_fixed():
    backbone = smallcnn()
    original = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = finetuned(backbone)
    assert model.finetuned and not train().finetuned
    for key, value in backbone.state_dict().items():  # the caller's backbone is left alone
        assert torch.equal(value, original[key])
    trained_state = model.network.backbone.backbone.state_dict()
    weights = [k for k in original if k.endswith("weight")]
    assert all(not torch.equal(trained_state[k], original[k]) for k in weights)
    for key in [k for k in original if "running" in k or "num_batches" in k]:
        assert torch.equal(trained_state[key], original[key])  # BatchNorm in eval mode


def test_backbone_has_its_own_parameter_group_and_learning_rate():
    config = MatchingConfig(**{**FINETUNE, "backbone_lr": 1e-5, "lr": 1e-2})
    torch.manual_seed(0)
    from irbook.crossmodal.features import PooledBackbone

    pooled = PooledBackbone(smallcnn(), size=16)
    net = MatchingNetwork(config, 256, N_WORDS, n_classes=60, backbone=pooled)
    trainer = _Trainer(config, net)
    groups = trainer.generator_opt.param_groups
    assert [g["lr"] for g in groups] == [1e-2, 1e-5]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in pooled.parameters()]
    assert not {id(p) for p in groups[0]["params"]} & {id(p) for p in pooled.parameters()}
    features, tokens, lengths, labels = _batch(config, size=24)
    batch = (pooled.inputs(IMAGES[PROBLEM[3][:24]]), tokens, lengths, labels)
    heads_before, backbone_before = _snapshot(net.image), _snapshot(pooled)
    trainer.generator_step(batch)
    # Adam's first step moves every parameter with a gradient by lr * g / (|g| + eps) <= lr
    # (up to float32 rounding of the weights)
    assert 0.9e-5 < _max_change(pooled, backbone_before) <= 1e-5 * 1.01
    assert 0.9e-2 < _max_change(net.image, heads_before) <= 1e-2 * 1.01


def test_frozen_default_keeps_the_feature_path_and_one_parameter_group():
    config = MatchingConfig(**SMALL)
    assert config.backbone_lr == 0 and not config.finetune
    torch.manual_seed(0)
    net = MatchingNetwork(config, 24, N_WORDS, n_classes=60)
    assert net.backbone is None
    groups = _Trainer(config, net).generator_opt.param_groups
    assert len(groups) == 1 and groups[0]["lr"] == config.lr
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in net.generator_parameters()]
    with pytest.raises(ValueError, match="backbone is used only with"):
        train_matching(config, *PROBLEM, vocab_size=N_WORDS, progress=False,
                       backbone=smallcnn())


@pytest.fixture(scope="module")
def finetuned_model():
    return finetuned(image_grid=2, image_size=32)  # 16 px images -> 32 px -> a 2 x 2 map


def test_finetuned_evaluation_runs_the_trained_backbone(finetuned_model):
    model = finetuned_model
    assert model.network.image.in_dim == 256 * 4  # smallcnn: 256 channels, 2 x 2 grid
    net = model.network
    x = to_input_tensor(IMAGES, 32)
    with torch.no_grad():
        maps = net.backbone.backbone(x)
        cells = torch.stack([maps[:, :, i:i + 1, j:j + 1].mean(dim=(2, 3))
                             for i in (0, 1) for j in (0, 1)], dim=2).flatten(1)
        manual = torch.nn.functional.normalize(net.image(cells), dim=1).numpy()
    embeddings = model.image_embeddings(IMAGES)
    np.testing.assert_allclose(embeddings, manual, atol=1e-5)
    result = evaluate_matching(model, IMAGES, *PROBLEM[1:])
    assert np.array_equal(result.embeddings["image"], embeddings)
    assert 0 <= result.rsum <= 600
    noisy = [model.image_embeddings(IMAGES, noise_sigma=0.5, noise_seed=s) for s in (1, 1, 2)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.allclose(noisy[0], noisy[2])
    assert not np.allclose(noisy[0], embeddings)
    with pytest.raises(ValueError, match="image_features must be uint8 images"):
        model.image_embeddings(PROBLEM[0])


def test_finetuning_is_seeded():
    a, b, c = finetuned(seed=1), finetuned(seed=1), finetuned(seed=2)
    assert np.array_equal(a.image_embeddings(IMAGES), b.image_embeddings(IMAGES))
    assert not np.allclose(a.image_embeddings(IMAGES), c.image_embeddings(IMAGES))


@pytest.mark.parametrize("field, value", [
    ("backbone_lr", math.nan), ("backbone_lr", -1e-5), ("backbone_lr", math.inf),
    ("backbone_lr", True), ("image_size", 0), ("image_grid", 0),
])
def test_config_rejects_bad_finetuning_values(field, value):
    with pytest.raises(ValueError, match=f"MatchingConfig.{field}"):
        MatchingConfig(**{field: value})


def test_finetuning_input_checks():
    config = MatchingConfig(**FINETUNE)
    with pytest.raises(ValueError, match="pass backbone="):
        train_matching(config, IMAGES, *PROBLEM[1:], vocab_size=N_WORDS, progress=False)
    with pytest.raises(ValueError, match=r"image_features must be uint8 images .*"
                                         r"backbone_lr > 0 \(fine-tuning\); got float32"):
        train_matching(config, *PROBLEM, vocab_size=N_WORDS, progress=False,
                       backbone=smallcnn())
    with pytest.raises(ValueError, match="got float64"):
        train_matching(config, IMAGES.astype(float), *PROBLEM[1:], vocab_size=N_WORDS,
                       progress=False, backbone=smallcnn())
