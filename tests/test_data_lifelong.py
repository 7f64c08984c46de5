"""The seen/unseen splits of chapter 7 (irbook.data.lifelong): class counts of the thesis,
label ranges, disjoint parts, the within-class rule, determinism and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irbook.data.finegrained import ClassSplit, LabelledSet
from irbook.data.lifelong import (
    SEQUENCES,
    THESIS_IMAGES,
    THESIS_SPLITS,
    LifelongTask,
    lifelong_task,
    open_lifelong,
    seen_count,
    sequence_names,
)
from irbook.data.synth.finegrained import write_cub200, write_stanford_cars


def _split(name: str, sizes: list[int], seed: int = 0) -> ClassSplit:
    """A ClassSplit whose class c has sizes[c] images ``c<c>/<k>.jpg``, scattered over train
    and test in a random order (no files needed)."""
    rng = np.random.default_rng(seed)
    paths = [Path(f"/data/c{c:03d}/{k:03d}.jpg") for c, n in enumerate(sizes) for k in range(n)]
    labels = np.array([c for c, n in enumerate(sizes) for _ in range(n)])
    order = rng.permutation(len(paths))
    half = len(paths) // 2

    def part(idx: np.ndarray) -> LabelledSet:
        return LabelledSet([paths[i] for i in idx], labels[idx])

    names = [f"class {c}" for c in range(len(sizes))]
    return ClassSplit(name, names, part(order[:half]), part(order[half:]), "official")


def _all(task: LifelongTask) -> list[Path]:
    return task.seen_train.items + task.seen_test.items + task.unseen.items


def test_thesis_sizes_give_the_thesis_class_counts():
    for name, (n_seen, n_unseen, _) in THESIS_SPLITS.items():
        task = lifelong_task(_split(name, [3] * (n_seen + n_unseen)))
        assert (task.n_seen, task.n_unseen) == (n_seen, n_unseen)
        assert task.seen_train.classes.tolist() == list(range(n_seen))
        assert task.unseen.classes.tolist() == list(range(n_seen, n_seen + n_unseen))
    assert THESIS_SPLITS["cub200"] == (150, 50, (3, 5))
    assert THESIS_SPLITS["dogs"] == (100, 20, (4, 5))
    assert THESIS_SPLITS["cars"] == (160, 36, (4, 5))
    # Sec. 7.5.1: the three parts add up to the whole datasets
    totals = {name: sum(c.values()) for name, c in THESIS_IMAGES.items()}
    assert totals == {"cub200": 11788, "dogs": 20580, "cars": 16185}


def test_seen_count_rule_for_other_sizes():
    # floor(n * seen / total + 1/2), within 2..n-2
    assert [seen_count("cub200", n) for n in (4, 6, 10, 14, 16, 40)] == [2, 4, 8, 11, 12, 30]
    assert [seen_count("dogs", n) for n in (4, 16, 40)] == [2, 13, 33]
    assert [seen_count("cars", n) for n in (4, 16, 40, 100)] == [2, 13, 33, 82]
    with pytest.raises(ValueError, match="n_classes must be an integer >= 4"):
        seen_count("cars", 3)
    with pytest.raises(ValueError, match="n_classes must be an integer"):
        seen_count("cars", 10.0)
    with pytest.raises(ValueError, match="name must be one of"):
        seen_count("cifar100", 10)


def test_parts_labels_and_the_within_class_rule():
    sizes = [5, 7, 2, 10, 2, 3, 1]  # cars with 7 classes: 5 seen (5.7 -> 6, capped at 7 - 2)
    task = lifelong_task(_split("cars", sizes))
    assert (task.n_seen, task.n_unseen, task.n_classes) == (5, 2, 7)
    assert task.class_names == [f"class {c}" for c in range(7)]
    # expected, written out: per class in path order, position i is a training image iff
    # floor((i + 1) * 4 / 5) > floor(i * 4 / 5), i.e. the pattern test, train, train, train, train
    train, test = [], []
    for c in range(5):
        for i in range(sizes[c]):
            path = Path(f"/data/c{c:03d}/{i:03d}.jpg")
            (train if i % 5 != 0 else test).append(path)
    assert task.seen_train.items == train
    assert task.seen_test.items == test
    assert task.unseen.items == [Path(f"/data/c{c:03d}/{i:03d}.jpg")
                                 for c in (5, 6) for i in range(sizes[c])]
    for part in (task.seen_train, task.seen_test, task.unseen):
        assert part.labels.tolist() == [int(p.parent.name[1:]) for p in part.items]
    paths = _all(task)
    assert len(paths) == len(set(paths)) == sum(sizes)  # no image in two parts, none lost


def test_cub_takes_60_percent_of_each_seen_class():
    task = lifelong_task(_split("cub200", [10, 5, 41, 3, 6, 8, 2]))
    # 7 classes: floor(5.25 + 0.5) = 5 seen; floor(0.6 n) training images per class
    assert task.n_seen == 5
    assert np.bincount(task.seen_train.labels).tolist() == [6, 3, 24, 1, 3]
    assert np.bincount(task.seen_test.labels).tolist() == [4, 2, 17, 2, 3]


def test_result_does_not_depend_on_how_train_and_test_were_split():
    a = lifelong_task(_split("dogs", [6, 9, 4, 5, 7], seed=1))
    b = lifelong_task(_split("dogs", [6, 9, 4, 5, 7], seed=2))
    for part in ("seen_train", "seen_test", "unseen"):
        assert getattr(a, part).items == getattr(b, part).items
        np.testing.assert_array_equal(getattr(a, part).labels, getattr(b, part).labels)


def test_counts_on_synthetic_cars_and_cub(tmp_path):
    write_stanford_cars(tmp_path, seed=0, n_classes=6, per_class=5, image_size=24)
    write_cub200(tmp_path, seed=0, n_classes=5, per_class=5, image_size=24)
    cars = open_lifelong("cars", tmp_path)
    # 6 classes: floor(4.9 + 0.5) = 5, capped at 6 - 2 = 4 seen; 4 of 5 images train
    assert cars.counts() == {"seen_classes": 4, "unseen_classes": 2, "seen_train": 16,
                             "seen_test": 4, "unseen": 10}
    assert all(p.is_file() for p in _all(cars))
    assert len(set(_all(cars))) == 30
    again = open_lifelong("cars", tmp_path)
    assert again.seen_train.items == cars.seen_train.items
    assert again.class_names == cars.class_names
    cub = open_lifelong("cub200", tmp_path)
    # 5 classes: floor(3.75 + 0.5) = 4, capped at 5 - 2 = 3 seen; floor(0.6 * 5) = 3 train
    assert cub.counts() == {"seen_classes": 3, "unseen_classes": 2, "seen_train": 9,
                            "seen_test": 6, "unseen": 10}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="name must be one of"):
        lifelong_task(_split("cifar100", [3] * 6))
    with pytest.raises(ValueError, match="name must be one of"):
        open_lifelong("imagenet", "/nowhere")
    with pytest.raises(ValueError, match=r"class 2 \('class 2'\) has 1 images"):
        lifelong_task(_split("cars", [3, 3, 1, 3, 3, 3]))
    with pytest.raises(ValueError, match=r"class 5 \('class 5'\) has 0 images"):
        lifelong_task(_split("cars", [3, 3, 3, 3, 3, 0]))
    with pytest.raises(ValueError, match="n_classes must be an integer >= 4"):
        lifelong_task(_split("cub200", [3, 3, 3]))
    arrays = LabelledSet(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(ValueError, match="need image paths"):
        lifelong_task(ClassSplit("dogs", ["a", "b", "c", "d"], arrays, arrays, "official"))
    twice = _split("cars", [3] * 5)
    dup = ClassSplit("cars", twice.class_names, twice.train, twice.train, "official")
    with pytest.raises(ValueError, match="listed twice"):
        lifelong_task(dup)


def test_task_checks_its_label_ranges():
    seen = LabelledSet([Path("a.jpg"), Path("b.jpg")], np.array([0, 1]))
    unseen = LabelledSet([Path("c.jpg"), Path("d.jpg")], np.array([2, 3]))
    task = LifelongTask("cars", ["w", "x", "y", "z"], seen, seen, unseen)
    assert (task.n_seen, task.n_unseen) == (2, 2)
    with pytest.raises(ValueError, match=r"unseen labels must cover 4\.\.4 of the 5 "
                                         r"classes, got \[2\]"):
        LifelongTask("cars", ["v", "w", "x", "y", "z"], seen, seen,
                     LabelledSet([Path("c.jpg")], np.array([2])))
    with pytest.raises(ValueError, match=r"seen_test labels must lie in 0\.\.1"):
        LifelongTask("cars", ["w", "x", "y", "z"], seen,
                     LabelledSet([Path("e.jpg")], np.array([2])), unseen)


def test_sequences_of_the_chapter():
    assert SEQUENCES == {"cub-dogs": ("cub200", "dogs"), "cub-cars": ("cub200", "cars"),
                         "cub-dogs-cars": ("cub200", "dogs", "cars"),
                         "cub-cars-dogs": ("cub200", "cars", "dogs")}
    assert sequence_names("cub-cars") == ("cub200", "cars")
    with pytest.raises(ValueError, match="sequence must be one of"):
        sequence_names("dogs-cub")
