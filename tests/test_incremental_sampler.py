"""ClassBalancedBatchSampler: P classes x K samples per batch, seeded per epoch."""

import numpy as np
import pytest

from irbook.data.samplers import ClassBalancedBatchSampler

LABELS = np.array([7] * 6 + [3] * 2 + [9] * 5 + [4] * 4 + [1] * 3)


def _batches(sampler):
    return [list(batch) for batch in sampler]


def test_each_batch_has_p_distinct_classes_with_k_samples_each_from_the_given_labels():
    sampler = ClassBalancedBatchSampler(LABELS, classes_per_batch=3, samples_per_class=4,
                                        batches_per_epoch=7, seed=1)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) == 7
    for batch in batches:
        labels = LABELS[batch]
        assert len(batch) == 12
        classes, counts = np.unique(labels, return_counts=True)
        assert classes.size == 3 and (counts == 4).all()
        # a class with >= K items is sampled without replacement
        for c in classes:
            members = [i for i in batch if LABELS[i] == c]
            if (LABELS == c).sum() >= 4:
                assert len(set(members)) == 4
    assert set(np.concatenate([LABELS[b] for b in batches])) <= set(LABELS)


def test_a_class_smaller_than_k_is_drawn_with_replacement():
    sampler = ClassBalancedBatchSampler(np.array([0, 0, 1, 1, 1, 1]), 2, 4, 1, seed=0)
    (batch,) = _batches(sampler)
    assert sorted(set(i for i in batch if i < 2)) == [0, 1]
    assert sum(i < 2 for i in batch) == 4


def test_default_epoch_visits_every_class_once():
    sampler = ClassBalancedBatchSampler(LABELS, classes_per_batch=2, samples_per_class=1, seed=3)
    assert len(sampler) == 3  # ceil(5 classes / 2)
    batches = _batches(sampler)
    seen = np.concatenate([LABELS[b] for b in batches])
    assert set(seen[:5]) == set(LABELS)  # one shuffled round of the 5 classes comes first
    assert all(len(set(LABELS[b])) == 2 for b in batches)


def test_draws_depend_only_on_seed_and_epoch():
    def make(seed):
        return ClassBalancedBatchSampler(LABELS, 2, 3, 4, seed=seed)

    first = make(0)
    epoch0, epoch1 = _batches(first), _batches(first)
    assert epoch0 != epoch1  # iterating advances the epoch
    second = make(0)
    second.set_epoch(1)
    assert _batches(second) == epoch1
    assert _batches(make(0)) == epoch0
    assert _batches(make(1)) != epoch0


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="classes_per_batch must be at most the number"):
        ClassBalancedBatchSampler(LABELS, 6, 2)
    with pytest.raises(ValueError, match="samples_per_class"):
        ClassBalancedBatchSampler(LABELS, 2, 0)
    with pytest.raises(ValueError, match="labels"):
        ClassBalancedBatchSampler(np.array([0.5, 1.0]), 1, 1)


def test_batch_loader_yields_the_sampler_batches_and_refuses_bad_worker_counts():
    import torch
    from torch.utils.data import TensorDataset

    from irbook.data.loading import batch_loader

    data = TensorDataset(torch.arange(10.0), torch.arange(10))
    loader = batch_loader(data, [[0, 3], [5, 6, 9]])
    assert [labels.tolist() for _, labels in loader] == [[0, 3], [5, 6, 9]]
    assert not loader.pin_memory and not loader.persistent_workers
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_workers must be an integer >= 0"):
            batch_loader(data, [[0]], bad)
