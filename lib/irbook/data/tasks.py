"""Class schedules of the class-incremental protocol of chapters 5 and 6.

Task 0 holds the old classes ``0 .. n_old-1`` (the thesis's "classes 1-100"); later tasks add
the remaining classes in official order, all at once or in groups. The thesis schedules
(:data:`THESIS_SCHEDULES`):

- CUB-200: 100 old classes, then 4 groups of 25 (101-125, ..., 176-200); chapter 5 Table
  5.9, chapter 6 multi-task setting, and the author's code. Chapter 6 also runs 10 groups of 10
  (``group_size=10``); chapter 5 Table 5.4 adds only the first 25 new classes at once.
- Stanford Dogs: 60 old, then 4 groups of 15 (61-75, ..., 106-120); chapter 5 Table 5.10,
  chapter 6. Chapter 5 Table 5.5 also adds only 5 new classes.
- CIFAR-100: 5 tasks of 20 classes (chapter 5, Table 5.6), i.e. 20 old then groups of 20.

``group_size=None`` adds all new classes at once (the one-task setting of both chapters).
"""

from __future__ import annotations

import numpy as np

THESIS_CLASS_COUNTS = {"cub200": 200, "dogs": 120, "cifar100": 100}
THESIS_SCHEDULES: dict[str, dict[str, int]] = {
    "cub200": {"n_old": 100, "group_size": 25},
    "dogs": {"n_old": 60, "group_size": 15},
    "cifar100": {"n_old": 20, "group_size": 20},
}


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def task_classes(n_classes: int, n_old: int, group_size: int | None = None) -> list[np.ndarray]:
    """Class indices of each task: ``[0..n_old-1]``, then the remaining classes at once
    (``group_size=None``) or in consecutive groups of ``group_size`` (the last group holds what
    is left when ``group_size`` does not divide ``n_classes - n_old``)."""
    n_classes = _check_int("n_classes", n_classes, 1)
    n_old = _check_int("n_old", n_old, 1)
    if n_old > n_classes:
        raise ValueError(f"n_old must be at most n_classes={n_classes}, got {n_old}")
    tasks = [np.arange(n_old, dtype=np.int64)]
    if group_size is None:
        group_size = max(n_classes - n_old, 1)
    group_size = _check_int("group_size", group_size, 1)
    for start in range(n_old, n_classes, group_size):
        tasks.append(np.arange(start, min(start + group_size, n_classes), dtype=np.int64))
    return tasks


def scaled_schedule(name: str, n_classes: int) -> dict[str, int]:
    """The thesis schedule of ``name`` (a key of :data:`THESIS_SCHEDULES`) for a dataset of
    ``n_classes`` classes: same share of old classes and same number of equal new groups (4).

    ``n_old`` is ``round(n_classes * share)``; the new classes are cut into equal groups and
    any remainder joins the old task. For CUB/Dogs 16 classes give 8 old + 4 x 2, 40 give
    20 + 4 x 5; for CIFAR-100 20 classes give 4 + 4 x 4.
    """
    if name not in THESIS_SCHEDULES:
        raise ValueError(f"name must be one of {sorted(THESIS_SCHEDULES)}, got {name!r}")
    total = THESIS_CLASS_COUNTS[name]
    n_old, group = THESIS_SCHEDULES[name]["n_old"], THESIS_SCHEDULES[name]["group_size"]
    n_groups = (total - n_old) // group
    n_classes = _check_int("n_classes", n_classes, n_groups + 1)
    old = min(max(round(n_classes * n_old / total), 1), n_classes - n_groups)
    group_size = (n_classes - old) // n_groups
    return {"n_old": n_classes - n_groups * group_size, "group_size": group_size}
