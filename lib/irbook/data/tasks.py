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


def incremental_schedule(n_classes: int, n_groups: int | None = None,
                         old_fraction: float = 0.5) -> list[np.ndarray]:
    """The one schedule rule of chapters 5-6: task 0 holds the first ``round(n_classes *
    old_fraction)`` classes (at least one), then the other classes follow in official order,
    all at once (``n_groups=None``) or in ``n_groups`` consecutive groups as equal as possible
    (``np.array_split``). The thesis schedules: CUB 0.5 and 4 groups (100 + 4 x 25) or 10
    groups, Dogs 0.5 and 4 groups (60 + 4 x 15), CIFAR-100 0.2 and 4 groups (5 tasks of 20).
    """
    n_classes = _check_int("n_classes", n_classes, 2)
    if not 0.0 < old_fraction < 1.0:
        raise ValueError(f"old_fraction must lie strictly between 0 and 1, got {old_fraction!r}")
    n_old = min(max(round(n_classes * old_fraction), 1), n_classes - 1)
    new = np.arange(n_old, n_classes, dtype=np.int64)
    if n_groups is None:
        return [np.arange(n_old, dtype=np.int64), new]
    n_groups = _check_int("n_groups", n_groups, 1)
    if n_groups > len(new):
        raise ValueError(f"n_groups must be from 1 to {len(new)} (the new classes of "
                         f"{n_classes} classes with {n_old} old ones); got {n_groups}")
    return [np.arange(n_old, dtype=np.int64), *np.array_split(new, n_groups)]


def thesis_old_fraction(name: str) -> float:
    """Share of old classes in the thesis schedule of dataset ``name``."""
    if name not in THESIS_SCHEDULES:
        raise ValueError(f"name must be one of {sorted(THESIS_SCHEDULES)}, got {name!r}")
    return THESIS_SCHEDULES[name]["n_old"] / THESIS_CLASS_COUNTS[name]
