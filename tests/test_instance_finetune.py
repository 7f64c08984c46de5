"""Fine-tuning on SfM tuples (irbook.instance.finetuning): losses, tuples, mining, resume."""

import copy
import importlib
import math

import numpy as np
import pytest
import torch

from irbook.data.images import ImageListDataset
from irbook.data.sfm import TupleSampler, load_sfm120k
from irbook.data.synth.sfm import write_sfm120k
from irbook.instance import (
    LOSSES,
    FinetuneConfig,
    TupleImages,
    build_model,
    embed_tuples,
    finetune,
    make_optimizer,
    tuple_distances,
    tuple_loss,
)
from irbook.models import GeM, RetrievalNet, make_backbone
from irbook.models.extract import extract_descriptors
from irbook.train.loop import load_checkpoint

finetune_module = importlib.import_module("irbook.instance.finetuning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on busy shared cores."""
    from irbook.device import single_cpu_thread

    with single_cpu_thread("cpu"):
        yield


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """8 training clusters x 4 views of 48 px (32 images, 32 query-positive pairs)."""
    root = write_sfm120k(tmp_path_factory.mktemp("sfm"), seed=0, n_clusters=10,
                         images_per_cluster=4, image_size=48, val_clusters=2)
    return load_sfm120k(root).train


def _config(**overrides):
    values = {"lr": 1e-3, "gem_p_lr": 1e-2, "epochs": 1, "n_queries": 8, "pool_size": 32,
              "tuples_per_batch": 4, "image_size": 48, "mining_batch_size": 32,
              "device": "cpu", "progress": False}
    return FinetuneConfig(**{**values, **overrides})


def _backbone(seed=0):
    return make_backbone("smallcnn", seed=seed)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_time(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("overrides", "message"), [
    ({"loss": "arcface"}, "loss must be one of contrastive, siamese"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"gem_p_lr": float("inf")}, "gem_p_lr must be a finite number"),
    ({"margin": -0.1}, "margin must be a finite number > 0"),
    ({"loss": "double_margin", "margin": 0.5, "margin_similar": 0.5},
     "margin_similar .* must be smaller than margin"),
    ({"lr_decay": 1.5}, "lr_decay must be a finite number > 0 and <= 1"),
    ({"pooling": "rmac"}, "pooling must be one of gem, mac, spoc"),
    ({"epochs": True}, "epochs must be an integer >= 0"),
    ({"n_negatives": 0}, "n_negatives must be an integer >= 1"),
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
    ({"freeze_batchnorm": 1}, "freeze_batchnorm must be True or False"),
])
def test_config_rejects_bad_values_naming_the_argument(overrides, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**overrides)


def test_a_split_with_too_few_clusters_is_refused_before_training(split):
    with pytest.raises(ValueError, match="n_negatives must be <= 7"):
        finetune(_backbone(), split, _config(n_negatives=8))


def test_margin_order_is_only_required_by_the_double_margin_loss():
    assert FinetuneConfig(loss="siamese", margin=0.5, margin_similar=0.9).margin == 0.5
    assert FinetuneConfig(loss="double_margin", margin=0.5, margin_similar=0.2).loss \
        == "double_margin"


def test_optimizer_groups_follow_cirtorch(split):
    config = FinetuneConfig()  # the defaults: cirtorch's
    model = build_model(_backbone(), split, config)
    rest, pooling = make_optimizer(model, config).param_groups
    assert (rest["lr"], rest["weight_decay"]) == (1e-6, 1e-6)
    assert pooling["lr"] == pytest.approx(1e-5) and pooling["weight_decay"] == 0.0
    assert pooling["params"] == [model.net.pooling.p]
    n_params = sum(1 for _ in model.parameters())
    assert len(rest["params"]) == n_params - 1
    mac = make_optimizer(build_model(_backbone(), split, FinetuneConfig(pooling="mac")), config)
    assert len(mac.param_groups) == 1  # MAC has nothing to learn


# --------------------------------------------------------------------------- losses


def _random_tuples(tuples=3, k=3, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(tuples, 2 + k, dim, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=2)


def _sq(a, b):
    return float(((a - b) ** 2).sum())


def _naive_losses(x, margin, margin_similar, logits, labels, alpha, beta):
    """Every loss of the module written out pair by pair, triplet by triplet."""
    contrastive = pairs = pairs_dm = triplets = 0.0
    n_pairs = n_triplets = 0
    for t in range(x.shape[0]):
        q, p = x[t, 0], x[t, 1]
        contrastive += 0.5 * _sq(q, p)
        pairs += 0.5 * _sq(q, p)
        pairs_dm += 0.5 * max(0.0, _sq(q, p) - margin_similar)
        n_pairs += 1
        for n in x[t, 2:]:
            contrastive += 0.5 * max(0.0, margin - math.sqrt(_sq(q, n))) ** 2
            pairs += 0.5 * max(0.0, margin - _sq(q, n))
            pairs_dm += 0.5 * max(0.0, margin - _sq(q, n))
            triplets += max(0.0, margin + _sq(q, p) - _sq(q, n))
            n_pairs += 1
            n_triplets += 1
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]).numpy(), labels.reshape(-1)
    log_softmax = flat_logits - np.log(np.exp(flat_logits).sum(axis=1, keepdims=True))
    cross_entropy = -np.mean([log_softmax[i, c] for i, c in enumerate(flat_labels.tolist())])
    triplet = triplets / n_triplets
    return {"contrastive": contrastive, "siamese": pairs / n_pairs,
            "double_margin": pairs_dm / n_pairs, "triplet": triplet,
            "joint": alpha * triplet + beta * cross_entropy}


def test_every_loss_equals_its_written_out_formula_on_the_tuples():
    x = _random_tuples()
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (3, 5), generator=generator)
    expected = _naive_losses(x, 1.2, 0.3, logits, labels, alpha=0.7, beta=2.0)
    assert 0 < expected["siamese"] and 0 < expected["triplet"]  # hinges are active
    for loss in LOSSES:
        config = FinetuneConfig(loss=loss, margin=1.2, margin_similar=0.3, alpha=0.7, beta=2.0)
        got = tuple_loss(x, config, logits, labels)
        assert float(got) == pytest.approx(expected[loss], abs=1e-5), loss


def test_joint_loss_needs_logits_and_tuple_shapes_are_checked():
    with pytest.raises(ValueError, match="logits"):
        tuple_loss(_random_tuples(), FinetuneConfig(loss="joint"))
    with pytest.raises(ValueError, match=r"\(T, 2 \+ k, D\)"):
        tuple_loss(torch.zeros(3, 2, 4), FinetuneConfig())


def test_tuple_distances_are_query_to_positive_and_negatives():
    x = _random_tuples(tuples=2, k=2)
    positive, negative = tuple_distances(x)
    for t in range(2):
        assert float(positive[t]) == pytest.approx(math.sqrt(_sq(x[t, 0], x[t, 1])))
        for i in range(2):
            assert float(negative[t, i]) == pytest.approx(math.sqrt(_sq(x[t, 0], x[t, 2 + i])))


# --------------------------------------------------------------------------- tuples as images


def test_tuple_images_shrink_only_and_label_images_by_cluster(split):
    tuples = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    small = TupleImages(split, tuples, image_size=32)
    images, labels = small[1]
    assert images.shape == (4, 3, 32, 32)
    reference = ImageListDataset([split.image_paths[5]], max_size=32)[0]
    assert torch.equal(images[1], reference)
    ranks = {c: r for r, c in enumerate(sorted(set(split.clusters.tolist())))}
    assert labels.tolist() == [ranks[int(split.clusters[i])] for i in (4, 5, 6, 7)]
    big, _ = TupleImages(split, tuples, image_size=96)[0]
    assert big.shape == (4, 3, 48, 48)  # never enlarged, as cirtorch's thumbnail
    with pytest.raises(ValueError, match="index the split's 32 images"):
        TupleImages(split, np.array([[0, 1, 99]]), image_size=32)
    with pytest.raises(ValueError, match="k >= 1"):
        TupleImages(split, np.array([[0, 1]]), image_size=32)


def test_embed_tuples_of_mixed_sizes_equals_one_image_at_a_time():
    torch.manual_seed(0)
    net = RetrievalNet(_backbone(), GeM()).eval()
    sizes = [(40, 48), (48, 48), (40, 48), (48, 32)]
    items = [([torch.randn(3, *s) for s in sizes], torch.arange(4)) for _ in range(2)]
    with torch.no_grad():
        descriptors, labels = embed_tuples(net, items)
        for t, (images, _) in enumerate(items):
            for j, image in enumerate(images):
                torch.testing.assert_close(descriptors[t, j], net(image[None])[0])
    assert descriptors.shape == (2, 4, net.dim) and labels.shape == (2, 4)


# --------------------------------------------------------------------------- training


def _tuple_loss_of(net, split, tuples, config):
    items = TupleImages(split, tuples, config.image_size)
    with torch.no_grad():
        descriptors, _ = embed_tuples(net.eval(), [items[i] for i in range(len(items))])
    gap = tuple_distances(descriptors)
    return float(tuple_loss(descriptors, config)), float(gap[1].mean() - gap[0].mean())


def test_contrastive_finetuning_pulls_positives_and_pushes_negatives(split):
    config = _config(epochs=3, n_queries=16)
    backbone = _backbone()
    before = copy.deepcopy(backbone.state_dict())
    initial = RetrievalNet(copy.deepcopy(backbone), GeM())
    result = finetune(backbone, split, config)
    assert _states_equal(backbone.state_dict(), before)  # the argument is not trained
    # the first epoch's tuples, mined here independently with the initial network
    sampler = TupleSampler(split, n_queries=16, n_negatives=5, pool_size=32, seed=0)
    tuples = sampler.tuples(0, lambda idx: extract_descriptors(
        initial, ImageListDataset([split.image_paths[i] for i in idx], max_size=48),
        progress=False))
    loss_before, gap_before = _tuple_loss_of(initial, split, tuples, config)
    loss_after, gap_after = _tuple_loss_of(result.net, split, tuples, config)
    assert loss_after < 0.8 * loss_before and gap_after > gap_before
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    p = [r["gem_p"] for r in result.history]
    assert len(set(p)) == 3 and 3.0 not in p
    assert p[-1] == pytest.approx(result.net.pooling.p.item())
    assert not result.net.training
    bn = result.net.backbone.features[1]  # frozen, as cirtorch: statistics kept
    assert torch.equal(bn.running_mean, initial.backbone.features[1].running_mean)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_an_epoch_with_a_finite_loss(split, loss):
    result = finetune(_backbone(), split, _config(loss=loss, n_queries=4))
    (record,) = result.history
    assert math.isfinite(record["loss"]) and record["loss"] > 0
    assert record["negative_distance"] > 0 and record["positive_distance"] > 0
    initial = RetrievalNet(_backbone(), GeM()).state_dict()
    changed = [k for k, v in result.net.state_dict().items() if not torch.equal(v, initial[k])]
    assert "pooling.p" in changed and any(k.startswith("backbone.") for k in changed)
    assert (result.head is not None) == (loss == "joint")
    if loss == "joint":
        assert result.head.out_features == 8  # one class per training cluster


def test_unfrozen_batchnorm_updates_its_statistics(split):
    result = finetune(_backbone(), split, _config(freeze_batchnorm=False, n_queries=4))
    initial = _backbone().features[1].running_mean
    assert not torch.equal(result.net.backbone.features[1].running_mean, initial)


def test_resume_equals_uninterrupted_and_mining_uses_the_epoch_start_network(
        split, tmp_path, monkeypatch):
    calls, epochs, mined = [], [], []
    real_extract, real_tuples = finetune_module.extract_descriptors, TupleSampler.tuples

    def spy_extract(model, dataset, **kwargs):
        calls.append((copy.deepcopy(model.net.state_dict()), len(dataset)))
        return real_extract(model, dataset, **kwargs)

    def spy_tuples(self, epoch, describe):
        epochs.append(epoch)
        mined.append(real_tuples(self, epoch, describe))
        return mined[-1]

    monkeypatch.setattr(finetune_module, "extract_descriptors", spy_extract)
    monkeypatch.setattr(TupleSampler, "tuples", spy_tuples)
    initial = RetrievalNet(_backbone(), GeM()).state_dict()
    straight = finetune(_backbone(), split, _config(epochs=2), tmp_path / "straight.pt")
    first = finetune(_backbone(), split, _config(epochs=1), tmp_path / "resumed.pt")
    after_one = first.net.state_dict()
    resumed = finetune(_backbone(seed=5), split, _config(epochs=2), tmp_path / "resumed.pt")

    assert epochs == [0, 1, 0, 1]  # the resumed run mines epoch 1 only
    assert [n for _, n in calls] == [8, 32] * 4  # the queries, then the pool
    assert all(_states_equal(s, initial) for s, _ in calls[:2] + calls[4:6])
    assert all(_states_equal(s, after_one) for s, _ in calls[2:4] + calls[6:])
    assert np.array_equal(mined[1], mined[3])
    assert _states_equal(resumed.net.state_dict(), straight.net.state_dict())
    assert _without_time(resumed.history) == _without_time(straight.history)
    lr = load_checkpoint(tmp_path / "resumed.pt")["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * math.exp(-0.02))  # decayed by exp(-0.01) per epoch


def test_training_images_are_resized_once_and_read_again_when_the_file_changes(tmp_path):
    import os

    from PIL import Image
    from torchvision.transforms import functional as TF

    from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
    from irbook.data.images import load_image, resize_max_side
    from irbook.instance.finetuning import training_image

    path = tmp_path / "view.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(path)

    def by_torchvision():
        image = resize_max_side(load_image(path), 45)
        return TF.normalize(TF.to_tensor(image), list(IMAGENET_MEAN), list(IMAGENET_STD))

    first = training_image(path, 45)
    assert first.shape == (3, 30, 45) and torch.equal(first, by_torchvision())
    assert torch.equal(training_image(path, 45), first)  # from memory, the same values
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(path)
    os.utime(path, ns=(1, 10**18))  # a new modification time: the cached pixels are stale
    changed = training_image(path, 45)
    assert torch.equal(changed, by_torchvision()) and not torch.equal(changed, first)
    assert training_image(path, 200).shape == (3, 60, 90)  # smaller images keep their size
