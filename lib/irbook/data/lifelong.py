"""The datasets of chapter 7 (lifelong retrieval) split into seen and unseen classes.

Thesis Sec. 7.5.1 (:data:`THESIS_SPLITS`): each dataset of a task sequence is split by class
into a *seen* part S (trained on, then tested on held-out images of the same classes) and an
*unseen* part U (never trained on; retrieval among its images measures generalisation):

- CUB-200: 150 seen / 50 unseen classes; ~60% of every seen class for training.
- Stanford Dogs: 100 / 20; ~80% for training.
- Stanford Cars: 160 / 36; ~80% for training.

:func:`lifelong_task` turns a :class:`~irbook.data.finegrained.ClassSplit` into that split:

1. The official train and test images are pooled (the thesis re-splits whole datasets) and
   ordered by class, then by path, so the result does not depend on the split loaded.
2. The seen classes are the first ``n_seen`` in the official class order, the unseen ones the
   rest, so labels stay the official 0-based class indices: seen ``0..n_seen-1``, unseen
   ``n_seen..n_classes-1`` (class names need no reordering).
3. ``n_seen`` (:func:`seen_count`) is the thesis count when the dataset has the thesis number of
   classes, else ``floor(n_classes * thesis_seen / thesis_total + 1/2)`` kept within
   ``2..n_classes-2`` (at least two seen and two unseen classes), which gives the thesis count
   at the thesis size too.
4. Each seen class is split by :func:`~irbook.data.finegrained.within_class_split` with the
   dataset's fraction (3/5 or 4/5): ``floor(n a / b)`` of its ``n`` images train, spread evenly
   over the class.

Which images (and, for ~60%/~80%, which rounding) the author used is not published, so only
the class counts follow the thesis exactly; the image counts of the thesis (``THESIS_IMAGES``)
are there to compare with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from irbook.data.finegrained import ClassSplit, LabelledSet, load_finegrained, within_class_split

THESIS_SPLITS: dict[str, tuple[int, int, tuple[int, int]]] = {
    "cub200": (150, 50, (3, 5)),
    "dogs": (100, 20, (4, 5)),
    "cars": (160, 36, (4, 5)),
}
"""name -> (n_seen, n_unseen, train fraction (a, b) of every seen class); thesis Sec. 7.5.1."""

THESIS_IMAGES: dict[str, dict[str, int]] = {
    "cub200": {"seen_train": 5274, "seen_test": 3548, "unseen": 2966},
    "dogs": {"seen_train": 13063, "seen_test": 3965, "unseen": 3552},
    "cars": {"seen_train": 10038, "seen_test": 3107, "unseen": 3040},
}
"""Image counts stated in Sec. 7.5.1. For Cars the text gives the seen set as 10,038 images,
the same number as its training part; 10,038 + 3,107 + 3,040 = 16,185 (the whole dataset)
shows that 10,038 is the training part. The stated counts are 59.8% (CUB), 76.7% (Dogs) and
76.4% (Cars) of the seen images, not the ~60/80% the text gives."""

SEQUENCES: dict[str, tuple[str, ...]] = {
    "cub-dogs": ("cub200", "dogs"),  # Tables 7.1, 7.4, 7.6
    "cub-cars": ("cub200", "cars"),  # Table 7.2
    "cub-dogs-cars": ("cub200", "dogs", "cars"),  # Table 7.3, Fig. 7.3, Fig. 7.8(d) order 1
    "cub-cars-dogs": ("cub200", "cars", "dogs"),  # Fig. 7.8(d) order 2
}
"""The task sequences of chapter 7 (dataset names of :mod:`irbook.data.finegrained`)."""

MIN_SEEN = MIN_UNSEEN = 2


@dataclass(frozen=True, eq=False)
class LifelongTask:
    """One dataset of a lifelong sequence: class names (seen first, then unseen), the seen
    classes' training and test images, and all images of the unseen classes."""

    name: str
    class_names: list[str]
    seen_train: LabelledSet  # labels 0..n_seen-1
    seen_test: LabelledSet  # labels 0..n_seen-1, held-out images of the same classes
    unseen: LabelledSet  # labels n_seen..n_classes-1

    def __post_init__(self) -> None:
        n, n_seen = len(self.class_names), self.n_seen
        if not np.array_equal(self.unseen.classes, np.arange(n_seen, n)):
            raise ValueError(f"unseen labels must cover {n_seen}..{n - 1} of the {n} classes, "
                             f"got {self.unseen.classes.tolist()}")
        for part in ("seen_train", "seen_test"):
            labels = getattr(self, part).labels
            if labels.size and (labels.min() < 0 or labels.max() >= n_seen):
                raise ValueError(f"{part} labels must lie in 0..{n_seen - 1}, got "
                                 f"{labels.min()}..{labels.max()}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_unseen(self) -> int:
        return len(self.unseen.classes)

    @property
    def n_seen(self) -> int:
        return self.n_classes - self.n_unseen

    def counts(self) -> dict[str, int]:
        """Classes and images of each part (the numbers of the thesis's Sec. 7.5.1)."""
        return {"seen_classes": self.n_seen, "unseen_classes": self.n_unseen,
                "seen_train": len(self.seen_train), "seen_test": len(self.seen_test),
                "unseen": len(self.unseen)}


def _check_name(name: str) -> None:
    if name not in THESIS_SPLITS:
        raise ValueError(f"name must be one of {list(THESIS_SPLITS)}, got {name!r}")


def seen_count(name: str, n_classes: int) -> int:
    """Number of seen classes of dataset ``name`` with ``n_classes`` classes: the thesis count
    at the thesis size, else the thesis share rounded half up, with at least two seen and two
    unseen classes (module docstring, step 3)."""
    _check_name(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or (
            n_classes < MIN_SEEN + MIN_UNSEEN):
        raise ValueError(f"n_classes must be an integer >= {MIN_SEEN + MIN_UNSEEN} (two seen "
                         f"and two unseen classes), got {n_classes!r}")
    thesis_seen, thesis_unseen, _ = THESIS_SPLITS[name]
    if n_classes == thesis_seen + thesis_unseen:
        return thesis_seen
    share = math.floor(n_classes * thesis_seen / (thesis_seen + thesis_unseen) + 0.5)
    return min(max(share, MIN_SEEN), int(n_classes) - MIN_UNSEEN)


def _pooled(split: ClassSplit) -> tuple[list[Path], np.ndarray]:
    """Train and test images of ``split`` together, ordered by class, then by path."""
    paths = list(split.train.items) + list(split.test.items)
    labels = np.concatenate([split.train.labels, split.test.labels])
    order = sorted(range(len(paths)), key=lambda i: (int(labels[i]), str(paths[i])))
    paths = [paths[i] for i in order]
    if len(set(paths)) != len(paths):
        raise ValueError(f"{split.name}: an image is listed twice in the train and test parts")
    return paths, labels[order]


def lifelong_task(split: ClassSplit) -> LifelongTask:
    """The seen/unseen split of thesis Sec. 7.5.1 of ``split`` (cub200, dogs or cars; module
    docstring). Every seen class needs two images, every unseen class one."""
    _check_name(split.name)
    if isinstance(split.train.items, np.ndarray):
        raise ValueError(f"{split.name}: lifelong tasks need image paths, not arrays")
    n_classes = split.n_classes
    n_seen = seen_count(split.name, n_classes)
    paths, labels = _pooled(split)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{split.name}: labels must lie in 0..{n_classes - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    sizes = np.bincount(labels, minlength=n_classes)
    few = [c for c in range(n_classes) if sizes[c] < (2 if c < n_seen else 1)]
    if few:
        raise ValueError(f"{split.name}: class {few[0]} ({split.class_names[few[0]]!r}) has "
                         f"{sizes[few[0]]} images; a seen class needs 2, an unseen class 1")
    seen = labels < n_seen
    seen_paths = [p for p, s in zip(paths, seen, strict=True) if s]
    is_train = within_class_split(labels[seen], THESIS_SPLITS[split.name][2])

    def pick(mask: np.ndarray) -> LabelledSet:
        return LabelledSet([p for p, k in zip(seen_paths, mask, strict=True) if k],
                           labels[seen][mask])

    unseen = LabelledSet([p for p, s in zip(paths, seen, strict=True) if not s], labels[~seen])
    return LifelongTask(split.name, list(split.class_names), pick(is_train), pick(~is_train),
                        unseen)


def open_lifelong(name: str, root: str | PathLike[str]) -> LifelongTask:
    """Load dataset ``name`` from ``root`` (:func:`~irbook.data.finegrained.load_finegrained`,
    its default split; train and test are pooled anyway) and split it with
    :func:`lifelong_task`."""
    _check_name(name)
    return lifelong_task(load_finegrained(root, name))


def sequence_names(sequence: str) -> tuple[str, ...]:
    """The dataset names of task sequence ``sequence`` (a key of :data:`SEQUENCES`)."""
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be one of {list(SEQUENCES)}, got {sequence!r}")
    return SEQUENCES[sequence]
