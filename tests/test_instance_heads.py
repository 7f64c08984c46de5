"""Heads on frozen features (irbook.instance.heads): tuple training, deep hashing, resume."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from irbook.data.sfm import SfmSplit, TupleSampler
from irbook.instance.heads import (
    HASH_TERMS,
    HEAD_LOSSES,
    HashTrainingConfig,
    HeadConfig,
    train_hash_head,
    train_head_on_tuples,
)
from irbook.losses.deep_hashing import DeepHashingWeights
from irbook.models.hash_head import HashHead
from irbook.models.netvlad import NetVLAD

N_CLUSTERS, PER_CLUSTER, DIM = 12, 6, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on busy shared cores."""
    from irbook.device import single_cpu_thread

    with single_cpu_thread("cpu"):
        yield


def _planted(seed=0, signal=4, scale=1.0, noise=3.0):
    """(N, DIM) features: a cluster centre in ``signal`` dimensions, strong noise in the others,
    then a fixed random rotation hides which dimensions carry the clusters. Shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER))
    centres = rng.normal(size=(N_CLUSTERS, signal)) * scale
    latent = rng.normal(size=(labels.size, DIM)) * noise
    latent[:, :signal] = centres[labels] + 0.3 * rng.normal(size=(labels.size, signal))
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return torch.tensor(latent @ rotation, dtype=torch.float32), labels


def _split(labels):
    """An SfmSplit over the planted items (no files are read): each image paired with the next
    image of its cluster."""
    qidxs, pidxs = [], []
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        qidxs += members.tolist()
        pidxs += np.roll(members, -1).tolist()
    n = labels.size
    return SfmSplit("planted", [Path(f"img{i}") for i in range(n)], [f"img{i}" for i in range(n)],
                    labels.astype(np.int64), np.array(qidxs), np.array(pidxs))


@pytest.fixture(scope="module")
def planted():
    features, labels = _planted()
    return features, labels, _split(labels)


def _config(**overrides):
    values = {"n_negatives": 3, "n_queries": 72, "pool_size": 72, "tuples_per_batch": 12,
              "epochs": 8, "lr": 1e-2, "progress": False}
    return HeadConfig(**{**values, **overrides})


def _linear(seed=0, in_dim=DIM, out_dim=8):
    torch.manual_seed(seed)
    return nn.Linear(in_dim, out_dim)


def _mean_ap(scores, labels):
    """mAP of every item as a query against all the others, ``scores`` (N, N) higher = closer;
    ties broken by index (the planted items are shuffled)."""
    aps = []
    for q in range(labels.size):
        others = np.delete(np.arange(labels.size), q)
        order = others[np.argsort(-scores[q, others], kind="stable")]
        hits = labels[order] == labels[q]
        ranks = np.flatnonzero(hits) + 1
        aps.append(np.mean(np.arange(1, ranks.size + 1) / ranks))
    return float(np.mean(aps))


def _cosine_map(head, features, labels):
    with torch.no_grad():
        x = torch.nn.functional.normalize(head(features), dim=-1).numpy()
    return _mean_ap(x @ x.T, labels)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("overrides", "message"), [
    ({"loss": "siamese"}, "loss must be one of contrastive, triplet"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"margin": float("nan")}, "margin must be a finite number > 0"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
    ({"n_negatives": 0}, "n_negatives must be an integer >= 1"),
    ({"tuples_per_batch": 2.5}, "tuples_per_batch must be an integer >= 1"),
    ({"epochs": True}, "epochs must be an integer >= 0"),
    ({"progress": 1}, "progress must be True or False"),
])
def test_head_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig(**overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_bits": 0}, "n_bits must be an integer >= 1"),
    ({"batch_size": 1}, "batch_size must be an integer >= 2"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"margin": float("nan")}, "margin must be a finite number > 0"),
    ({"margin": 0.0}, "margin must be a finite number > 0"),
    ({"weights": {"balance": 1.0}}, "weights must be a DeepHashingWeights"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_hash_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        HashTrainingConfig(**overrides)


def test_bad_inputs_are_refused_before_training(planted):
    features, labels, split = planted
    with pytest.raises(ValueError, match="one row per image of split 'planted' \\(72\\)"):
        train_head_on_tuples(_linear(), features[:-1], split, _config())
    with pytest.raises(ValueError, match="n_negatives must be <= 11"):
        train_head_on_tuples(_linear(), features, split, _config(n_negatives=12))
    nan = features.clone()
    nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        train_head_on_tuples(_linear(), nan, split, _config())
    no_pairs = SfmSplit("empty", split.image_paths, split.cids, split.clusters,
                        np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="no query-positive pairs"):
        train_head_on_tuples(_linear(), features, no_pairs, _config())
    with pytest.raises(ValueError, match="head must map"):
        train_head_on_tuples(nn.Flatten(0), features, split, _config())
    with pytest.raises(ValueError, match="labels must be 72 integer class labels"):
        train_hash_head(features, labels[:-1], HashTrainingConfig(progress=False))
    with pytest.raises(ValueError, match="labels must be 72 integer"):
        train_hash_head(features, labels.astype(float), HashTrainingConfig(progress=False))


# --------------------------------------------------------------------------- heads on tuples


@pytest.mark.parametrize("loss", HEAD_LOSSES)
def test_a_linear_head_learns_the_hidden_clusters(planted, loss):
    features, labels, split = planted
    head = _linear()
    before = copy.deepcopy(head.state_dict())
    result = train_head_on_tuples(head, features, split, _config(loss=loss))
    assert _states_equal(head.state_dict(), before)  # the argument is not trained
    untrained, trained = _cosine_map(head, features, labels), _cosine_map(result.head, features,
                                                                         labels)
    assert trained > untrained + 0.15, (untrained, trained)
    losses = [r["loss"] for r in result.history]
    assert [r["epoch"] for r in result.history] == list(range(1, 9))
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2])
    first, last = result.history[0], result.history[-1]
    gap = last["negative_distance"] - last["positive_distance"]
    assert gap > first["negative_distance"] - first["positive_distance"]
    assert all(0 <= r[k] <= 2 for r in result.history  # unit descriptors
               for k in ("positive_distance", "negative_distance"))
    assert not result.head.training and result.seconds > 0


def test_first_epoch_loss_is_cirtorch_contrastive_of_tuples_mined_with_the_initial_head(planted):
    features, labels, split = planted
    head = _linear(seed=3)
    config = _config(epochs=1, n_queries=20, tuples_per_batch=20)  # one step: initial head

    def describe(idx):
        with torch.no_grad():
            x = head(features[torch.as_tensor(idx)]).numpy()
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    tuples = TupleSampler(split, n_queries=20, n_negatives=3, pool_size=72, seed=0).tuples(
        0, describe)
    x = describe(np.arange(labels.size))
    expected = 0.0
    for q, p, *negatives in tuples:
        expected += 0.5 * np.sum((x[q] - x[p]) ** 2)
        expected += sum(0.5 * max(0.0, 0.7 - np.linalg.norm(x[q] - x[n])) ** 2
                        for n in negatives)
        assert all(labels[n] != labels[q] for n in negatives)
    (record,) = train_head_on_tuples(head, features, split, config).history
    assert record["loss"] == pytest.approx(expected, rel=1e-5)


def _maps(seed=0, channels=8):
    """(N, C, 3, 3) conv maps: each cluster a fixed pattern at every location, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER))
    patterns = rng.normal(size=(N_CLUSTERS, channels, 3, 3))
    maps = patterns[labels] + 1.5 * rng.normal(size=(labels.size, channels, 3, 3))
    return torch.tensor(maps, dtype=torch.float32), labels


def test_a_netvlad_head_trains_on_conv_maps():
    maps, labels = _maps()
    torch.manual_seed(0)
    head = NetVLAD(num_clusters=4, dim=8, alpha=10.0)
    result = train_head_on_tuples(head, maps, _split(labels), _config(epochs=6, lr=5e-3))
    with torch.no_grad():
        out = result.head(maps[:5])
    assert out.shape == (5, 4 * 8) and head.output_dim == 32
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0] and losses[-1] == min(losses), losses
    assert _cosine_map(result.head, maps, labels) > _cosine_map(head, maps, labels)


def test_same_seed_same_weights_and_the_seed_changes_the_tuples(planted):
    features, _, split = planted
    config = _config(epochs=2)
    a = train_head_on_tuples(_linear(), features, split, config)
    b = train_head_on_tuples(_linear(), features, split, config)
    c = train_head_on_tuples(_linear(), features, split, _config(epochs=2, seed=1))
    assert _states_equal(a.head.state_dict(), b.head.state_dict())
    assert _without_time(a.history) == _without_time(b.history)
    assert not _states_equal(a.head.state_dict(), c.head.state_dict())


def test_resume_equals_uninterrupted_and_mines_only_the_remaining_epochs(
        planted, tmp_path, monkeypatch):
    features, _, split = planted
    epochs, real_tuples = [], TupleSampler.tuples

    def spy_tuples(self, epoch, describe):
        epochs.append(epoch)
        return real_tuples(self, epoch, describe)

    monkeypatch.setattr(TupleSampler, "tuples", spy_tuples)
    straight = train_head_on_tuples(_linear(), features, split, _config(epochs=4))
    train_head_on_tuples(_linear(), features, split, _config(epochs=2), tmp_path / "c.pt")
    resumed = train_head_on_tuples(_linear(seed=9), features, split, _config(epochs=4),
                                   tmp_path / "c.pt")
    assert epochs == [0, 1, 2, 3, 0, 1, 2, 3]
    assert _states_equal(resumed.head.state_dict(), straight.head.state_dict())
    assert _without_time(resumed.history) == _without_time(straight.history)


# --------------------------------------------------------------------------- deep hashing


def _hamming_map(codes, labels):
    """mAP ranking by Hamming distance of ±1 codes (N, K), computed as the count of differing
    bits."""
    distance = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    return _mean_ap(-distance.astype(float), labels)


def _hash_config(**overrides):
    values = {"n_bits": 16, "epochs": 15, "batch_size": 24, "lr": 1e-2, "progress": False}
    return HashTrainingConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def hashing_data():
    return _planted(seed=1, signal=4, scale=2.0, noise=1.5)


def test_hash_head_codes_retrieve_the_clusters_better_than_an_untrained_head(hashing_data):
    features, labels = hashing_data
    # the similarity term alone (the code-quality terms are tested below); with all weights 1
    # the codes of this small planted set barely beat random ones within 15 epochs
    result = train_hash_head(features, torch.from_numpy(labels), _hash_config(
        weights=DeepHashingWeights(0.0, 0.0, 0.0)))
    assert isinstance(result.head, HashHead) and result.head.n_bits == 16
    assert not result.head.training
    torch.manual_seed(0)
    untrained = HashHead(DIM, 16)
    trained_map = _hamming_map(result.head.codes(features, "sign"), labels)
    untrained_map = _hamming_map(untrained.codes(features, "sign"), labels)
    assert trained_map > untrained_map + 0.08, (untrained_map, trained_map)
    history = result.history
    assert [r["epoch"] for r in history] == list(range(1, 16))
    assert all(set(HASH_TERMS) <= r.keys() for r in history)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["similarity"] < history[0]["similarity"]


def test_history_terms_add_up_to_the_weighted_total(hashing_data):
    features, labels = hashing_data
    weights = DeepHashingWeights(quantization=0.5, balance=2.0, decorrelation=0.25)
    result = train_hash_head(features, labels, _hash_config(epochs=2, weights=weights))
    for r in result.history:
        total = (r["similarity"] + 0.5 * r["quantization"] + 2.0 * r["balance"]
                 + 0.25 * r["decorrelation"])
        assert r["loss"] == pytest.approx(total, rel=1e-5)


def test_the_balance_weight_evens_out_the_bits(hashing_data):
    features, labels = hashing_data
    shifted = features + 3.0  # makes an untrained linear code lopsided
    results = {w: train_hash_head(shifted, labels, _hash_config(
        weights=DeepHashingWeights(balance=w, decorrelation=0.0))) for w in (0.0, 1.0)}
    imbalance = {w: float(np.mean(np.abs(r.head.codes(shifted, "sign").mean(axis=0))))
                 for w, r in results.items()}
    assert imbalance[1.0] < imbalance[0.0], imbalance
    balance = [r["balance"] for r in results[1.0].history]
    assert balance[-1] < balance[0]


def test_hash_training_resume_is_exact_and_the_last_single_row_joins_a_batch(
        hashing_data, tmp_path):
    features, labels = hashing_data
    config = _hash_config(epochs=4, batch_size=71)  # 72 rows: one batch of 72, not 71 + 1
    straight = train_hash_head(features, labels, config)
    train_hash_head(features, labels, _hash_config(epochs=2, batch_size=71), tmp_path / "h.pt")
    resumed = train_hash_head(features, labels, config, tmp_path / "h.pt")
    assert _states_equal(resumed.head.state_dict(), straight.head.state_dict())
    assert _without_time(resumed.history) == _without_time(straight.history)
    again = train_hash_head(features, labels, config)
    assert _states_equal(again.head.state_dict(), straight.head.state_dict())
    assert math.isfinite(straight.history[-1]["loss"])
