"""Class-balanced P x K batches for metric learning (chapters 5-7).

Each batch holds ``classes_per_batch`` (P) distinct classes with ``samples_per_class`` (K)
images each, as in the sampler of the chapter-6 reference code (5 images per class, 16 classes,
batch 80). Classes are visited in shuffled rounds, so within an epoch of ``ceil(n_classes / P)``
batches every class appears once -- the reference code's "epoch" of ``#classes x K`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["BatchShares", "ClassBalancedBatchSampler", "DistributedClassBalancedBatchSampler",
           "class_balanced_sampler"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices: P classes x K samples per batch.

    A class with fewer than K items is sampled with replacement, otherwise without.
    ``batches_per_epoch=None`` gives ``ceil(n_classes / P)`` batches. The draws of an epoch
    depend only on ``(seed, epoch)``; iterating uses the current epoch and then advances it, and
    :meth:`set_epoch` jumps to a given epoch (to resume a run).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, classes_per_batch: int,
                 samples_per_class: int, batches_per_epoch: int | None = None,
                 seed: int = 0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a non-empty 1-D integer array; got shape "
                             f"{labels.shape} and dtype {labels.dtype}")
        self.classes_per_batch = _positive_int("classes_per_batch", classes_per_batch)
        self.samples_per_class = _positive_int("samples_per_class", samples_per_class)
        self.classes = np.unique(labels)
        if self.classes_per_batch > self.classes.size:
            raise ValueError(f"classes_per_batch must be at most the number of classes "
                             f"({self.classes.size}); got {classes_per_batch}")
        if batches_per_epoch is None:
            batches_per_epoch = math.ceil(self.classes.size / self.classes_per_batch)
        self.batches_per_epoch = _positive_int("batches_per_epoch", batches_per_epoch)
        self.seed = int(seed)
        self.epoch = 0
        self.members = {int(c): np.flatnonzero(labels == c) for c in self.classes}

    def set_epoch(self, epoch: int) -> None:
        """The next iteration draws the batches of ``epoch`` (0-based)."""
        if epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0; got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _class_rounds(self, rng: np.random.Generator) -> Iterator[list[int]]:
        """P distinct classes per batch from successive shuffles of all classes."""
        queue: list[int] = []
        while True:
            if len(queue) < self.classes_per_batch:
                fresh = [int(c) for c in rng.permutation(self.classes)]
                # classes not waiting in the queue first, so the next batch has P distinct ones
                queue += [c for c in fresh if c not in queue] + [c for c in fresh if c in queue]
            yield queue[: self.classes_per_batch]
            queue = queue[self.classes_per_batch:]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        rounds = self._class_rounds(rng)
        for _ in range(self.batches_per_epoch):
            batch: list[int] = []
            for c in next(rounds):
                members = self.members[c]
                replace = members.size < self.samples_per_class
                batch += rng.choice(members, self.samples_per_class, replace=replace).tolist()
            yield batch


class DistributedClassBalancedBatchSampler(ClassBalancedBatchSampler):
    """The P x K batches of :class:`ClassBalancedBatchSampler`, shared among the processes of
    a distributed run: every process draws the same batches (same ``seed`` and epoch) and keeps
    the K samples of its own classes, the ``rank``-th, ``rank + world_size``-th, ... of the P.

    The processes together see exactly the batches of one process, so the global batch, the
    number of steps per epoch and the class balance stay those of the single-process run
    (with P divisible by ``world_size`` every process holds P / world_size classes; otherwise
    the first ones hold one class more). Batch-hard mining then looks within a process's share.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, classes_per_batch: int,
                 samples_per_class: int, batches_per_epoch: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(labels, classes_per_batch, samples_per_class, batches_per_epoch, seed)
        self.world_size = _positive_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or not (
                0 <= rank < self.world_size):
            raise ValueError(f"rank must be an integer in [0, {self.world_size}); got {rank!r}")
        if self.classes_per_batch < self.world_size:
            raise ValueError(f"classes_per_batch ({self.classes_per_batch}) must be at least "
                             f"the number of processes ({self.world_size}): every process "
                             "needs one class of each batch")
        self.rank = int(rank)

    def __iter__(self) -> Iterator[list[int]]:
        k = self.samples_per_class
        for batch in super().__iter__():
            yield [i for j in range(self.rank, self.classes_per_batch, self.world_size)
                   for i in batch[j * k:(j + 1) * k]]


def class_balanced_sampler(labels: Sequence[int] | np.ndarray, classes_per_batch: int,
                           samples_per_class: int, batches_per_epoch: int | None = None,
                           seed: int = 0) -> ClassBalancedBatchSampler:
    """The P x K sampler of this process: its share of every batch under torchrun
    (:mod:`irbook.distributed`), the whole batch in one process. With fewer classes per batch
    than processes every process draws the whole batch: DDP then averages equal gradients,
    the single-process step."""
    from ..distributed import world

    here = world()
    if not here.distributed or classes_per_batch < here.world_size:
        return ClassBalancedBatchSampler(labels, classes_per_batch, samples_per_class,
                                         batches_per_epoch, seed)
    return DistributedClassBalancedBatchSampler(labels, classes_per_batch, samples_per_class,
                                                batches_per_epoch, seed, here.rank,
                                                here.world_size)


class BatchShares(Sampler[list[int]]):
    """This process's share (:func:`irbook.distributed.share`) of every batch ``batches``
    yields: under torchrun each process loads its items of the batch, in one process the
    batches are unchanged. ``set_epoch`` is passed on."""

    def __init__(self, batches: Iterable[list[int]], minimum: int = 1) -> None:
        self.batches, self.minimum = batches, _positive_int("minimum", minimum)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        from ..distributed import share

        for batch in self.batches:
            yield share(list(batch), self.minimum)
