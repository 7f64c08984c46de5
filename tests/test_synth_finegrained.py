"""Synthetic fine-grained datasets: written in the official layouts and read back by the real
loaders, deterministic, with the intended class structure; and the incremental class
schedules."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

from irbook.data.finegrained import (
    load_cifar100,
    load_cub200,
    load_finegrained,
    load_stanford_cars,
    load_stanford_dogs,
    stanford_cars_boxes,
)
from irbook.data.synth import (
    FINEGRAINED_SCALES,
    ensure_finegrained,
    write_cifar100,
    write_cub200,
    write_stanford_dogs,
)
from irbook.data.synth.finegrained import (
    DETAILS,
    design_classes,
    draw_animal,
    render_image,
    write_stanford_cars,
)
from irbook.data.synth.patterns import make_rng
from irbook.data.synth.vehicles import CAR_DETAILS, design_cars, draw_car, render_car
from irbook.data.tasks import (
    THESIS_SCHEDULES,
    incremental_schedule,
    task_classes,
    thesis_old_fraction,
)

TINY = {"n_classes": 5, "per_class": 5, "image_size": 32, "classes_per_species": 2}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_cub_round_trip_counts_names_and_boxes(tmp_path):
    root = write_cub200(tmp_path, seed=1, **TINY)
    cs = load_cub200(root, split="thesis")
    assert cs.n_classes == 5
    assert [n[:4] for n in cs.class_names] == ["001.", "002.", "003.", "004.", "005."]
    assert np.bincount(cs.train.labels).tolist() == [3] * 5  # floor(0.6 * 5)
    assert np.bincount(cs.test.labels).tolist() == [2] * 5
    official = load_cub200(root, split="official")
    assert np.bincount(official.train.labels).tolist() == [3] * 5  # even positions
    assert {p.name for p in official.train.items} != {p.name for p in cs.train.items}
    with Image.open(cs.train.items[0]) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    meta = json.loads((root / "CUB_200_2011" / "synth_meta.json").read_text())
    assert [c["species"] for c in meta["classes"]] == [0, 0, 1, 1, 2]
    assert cs.class_names[0].endswith(meta["classes"][0]["name"])
    for line in (root / "CUB_200_2011" / "bounding_boxes.txt").read_text().splitlines():
        x, y, w, h = map(float, line.split()[1:])
        assert 0 <= x and 0 <= y and w > 4 and h > 4 and x + w <= 32 and y + h <= 32


def test_dogs_round_trip(tmp_path):
    root = write_stanford_dogs(tmp_path, seed=2, n_classes=3, per_class=4, image_size=32)
    official = load_stanford_dogs(root, split="official")
    thesis = load_stanford_dogs(root, split="thesis")
    assert official.class_names == thesis.class_names
    assert official.class_names[0].startswith("n99000000-")
    assert len(official.train) == 6 and len(official.test) == 6
    assert np.bincount(thesis.train.labels).tolist() == [2, 2, 2]  # floor(0.6 * 4)
    assert all(p.is_file() for p in thesis.train.items + thesis.test.items)


def test_cifar_round_trip_shapes_and_meta(tmp_path):
    root = write_cifar100(tmp_path, seed=3, n_classes=4, per_class_train=3, per_class_test=2,
                          classes_per_species=2)
    cs = load_cifar100(root)
    assert cs.n_classes == 4 and len(cs.class_names) == 4  # exactly n_classes names
    assert cs.train.items.shape == (12, 32, 32, 3) and cs.test.items.shape == (8, 32, 32, 3)
    assert cs.train.items.dtype == np.uint8
    assert np.bincount(cs.train.labels).tolist() == [3] * 4
    assert cs.train.labels.tolist() != sorted(cs.train.labels.tolist())  # shuffled, as real
    with open(root / "cifar-100-python" / "train", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    species = np.array(batch["coarse_labels"])
    assert np.array_equal(species, np.array(batch["fine_labels"]) // 2)
    # the stored pixels are the rendered image, planes R, G, B
    k = int(np.flatnonzero(cs.train.labels == 0)[0])
    img = np.asarray(render_image(make_rng(3, "finegrained", "cifar100", "image", 0,
                                           _index_of(batch, k)),
                                  design_classes(3, "cifar100", 4, 2)[0], 32)[0])
    np.testing.assert_array_equal(cs.train.items[k], img)


def _index_of(batch: dict, k: int) -> int:
    return int(batch["filenames"][k].rsplit("_", 1)[1].split(".")[0])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    digests = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_cub200(tmp_path / name, seed=seed, n_classes=2, per_class=2, image_size=32)
        write_stanford_dogs(tmp_path / name, seed=seed, n_classes=2, per_class=2, image_size=32)
        write_cifar100(tmp_path / name, seed=seed, n_classes=2, per_class_train=2,
                       per_class_test=1)
        digests[name] = _tree_digest(tmp_path / name)
    assert digests["a"] == digests["b"] != digests["c"]


def test_siblings_share_species_and_differ_in_two_diagnostic_details():
    for seed in range(6):
        classes = design_classes(seed, "cub200", 16)
        for s in range(4):
            group = classes[4 * s: 4 * s + 4]
            assert {c.species.index for c in group} == {s}
            kinds = group[0].species.diagnostic
            assert len(kinds) == 3 and all(tuple(c.details) == kinds for c in group)
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    assert sum(a.details[k] != b.details[k] for k in kinds) >= 2
        assert len({c.name for c in classes}) == 16


def test_classes_do_not_depend_on_the_number_drawn():
    few = design_classes(4, "dogs", 6)
    many = design_classes(4, "dogs", 12)
    assert [c.name for c in few] == [c.name for c in many[:6]]
    assert all(c.species.plan == "dog" for c in many)


def test_diagnostic_details_fixed_other_details_vary():
    fine = design_classes(0, "cub200", 1)[0]
    shown = [draw_animal(make_rng(0, "t", i), fine, 64)[1] for i in range(40)]
    for kind in DETAILS:
        values = {d[kind] for d in shown}
        if kind in fine.details:
            assert values == {fine.details[kind]}
        else:
            assert len(values) > 1


def test_design_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        design_classes(0, "cars", 4)
    with pytest.raises(ValueError, match="classes_per_species must be at most"):
        design_classes(0, "cub200", 4, classes_per_species=20)
    with pytest.raises(ValueError, match="n_classes"):
        design_classes(0, "cub200", 0)


def test_ensure_writes_once_and_validates(tmp_path, monkeypatch):
    tiny = {"n_classes": 3, "per_class_train": 2, "per_class_test": 1}
    monkeypatch.setitem(FINEGRAINED_SCALES["smoke"], "cifar100", tiny)
    root = ensure_finegrained(tmp_path, "cifar100", seed=0, scale="smoke")
    first = (tmp_path / "cifar-100-python" / "train").stat().st_mtime_ns
    assert ensure_finegrained(tmp_path, "cifar100", seed=0, scale="smoke") == root
    assert (tmp_path / "cifar-100-python" / "train").stat().st_mtime_ns == first
    assert load_cifar100(root).n_classes == 3
    with pytest.raises(ValueError, match="scale must be one of"):
        ensure_finegrained(tmp_path, "cub200", seed=0, scale="huge")
    with pytest.raises(ValueError, match="name must be one of"):
        ensure_finegrained(tmp_path, "aircraft", seed=0, scale="smoke")


# --------------------------------------------------------------------------- schedules


def test_thesis_schedules_reproduce_the_class_ranges_of_the_thesis():
    cub = task_classes(200, **THESIS_SCHEDULES["cub200"])
    assert [(t[0] + 1, t[-1] + 1) for t in cub] == [(1, 100), (101, 125), (126, 150),
                                                    (151, 175), (176, 200)]
    dogs = task_classes(120, **THESIS_SCHEDULES["dogs"])
    assert [(t[0] + 1, t[-1] + 1) for t in dogs] == [(1, 60), (61, 75), (76, 90), (91, 105),
                                                     (106, 120)]
    cifar = task_classes(100, **THESIS_SCHEDULES["cifar100"])
    assert [len(t) for t in cifar] == [20] * 5
    np.testing.assert_array_equal(np.concatenate(cifar), np.arange(100))


def test_task_classes_at_once_remainder_and_errors():
    old, new = task_classes(10, 6)
    assert old.tolist() == list(range(6)) and new.tolist() == [6, 7, 8, 9]
    assert [t.tolist() for t in task_classes(9, 3, 4)] == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    assert [t.tolist() for t in task_classes(3, 3)] == [[0, 1, 2]]
    with pytest.raises(ValueError, match="n_old must be at most"):
        task_classes(5, 6)
    with pytest.raises(ValueError, match="group_size"):
        task_classes(5, 2, 0)
    with pytest.raises(ValueError, match="n_old"):
        task_classes(5, 0)


def test_incremental_schedule_keeps_the_thesis_proportions():
    for name, total in (("cub200", 200), ("dogs", 120), ("cifar100", 100)):
        tasks = incremental_schedule(total, 4, thesis_old_fraction(name))
        expected = task_classes(total, **THESIS_SCHEDULES[name])
        assert [t.tolist() for t in tasks] == [t.tolist() for t in expected]
    assert [len(t) for t in incremental_schedule(16, 4, 0.5)] == [8, 2, 2, 2, 2]
    assert [len(t) for t in incremental_schedule(40, 4, 0.2)] == [8, 8, 8, 8, 8]
    assert [len(t) for t in incremental_schedule(16, 3, 0.5)] == [8, 3, 3, 2]  # as equal as can be
    assert [len(t) for t in incremental_schedule(16, None, 0.5)] == [8, 8]
    for scale in FINEGRAINED_SCALES.values():
        for name, preset in scale.items():
            if name not in THESIS_SCHEDULES:  # cars: chapter 7 only, no class schedule
                continue
            tasks = incremental_schedule(preset["n_classes"], 4, thesis_old_fraction(name))
            assert len(tasks) == 5 and len({len(t) for t in tasks[1:]}) == 1
    with pytest.raises(ValueError, match="n_groups must be from 1 to 2"):
        incremental_schedule(4, 3, 0.5)
    with pytest.raises(ValueError, match="old_fraction"):
        incremental_schedule(10, 2, 1.0)
    with pytest.raises(ValueError, match="name must be one of"):
        thesis_old_fraction("cars")


# --------------------------------------------------------------------------- Stanford Cars


CARS_TINY = {"n_classes": 5, "per_class": 4, "image_size": 32, "classes_per_make": 2}


def test_cars_round_trip_layout_names_and_boxes(tmp_path):
    root = write_stanford_cars(tmp_path, seed=1, **CARS_TINY)
    folder = root / "stanford_cars"
    cs = load_stanford_cars(root)
    assert cs.class_names == [c.name for c in design_cars(1, 5, 2)]
    assert len(set(cs.class_names)) == 5
    assert np.bincount(cs.train.labels).tolist() == [2] * 5  # even positions: official train
    assert np.bincount(cs.test.labels).tolist() == [2] * 5
    assert [p.name for p in cs.train.items] == [f"{k:05d}.jpg" for k in range(1, 11)]
    assert cs.train.labels.tolist() != sorted(cs.train.labels.tolist())  # mixed, as real
    with Image.open(cs.test.items[0]) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    unlabelled = scipy.io.loadmat(str(folder / "devkit" / "cars_test_annos.mat"))
    assert "class" not in unlabelled["annotations"].dtype.names
    assert unlabelled["annotations"].shape == (1, 10)
    for x1, y1, x2, y2 in stanford_cars_boxes(root).values():
        assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32
        assert x2 - x1 > 12 and y2 - y1 > 4  # a car, long and low
    meta = json.loads((folder / "synth_meta.json").read_text())
    assert [c["make"] for c in meta["classes"]] == [0, 0, 1, 1, 2]


def test_cars_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    digests = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_stanford_cars(tmp_path / name, seed=seed, n_classes=3, per_class=2, image_size=32)
        digests[name] = _tree_digest(tmp_path / name)
    assert digests["a"] == digests["b"] != digests["c"]


def test_car_siblings_share_make_and_differ_in_two_diagnostic_details():
    for seed in range(6):
        classes = design_cars(seed, 28)
        assert len({c.make.body for c in classes[::4]}) == 7  # the first 7 makes: 7 bodies
        for m in range(7):
            group = classes[4 * m: 4 * m + 4]
            assert {c.make.index for c in group} == {m}
            kinds = group[0].make.diagnostic
            assert len(kinds) == 3 and all(tuple(c.details) == kinds for c in group)
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    assert sum(a.details[k] != b.details[k] for k in kinds) >= 2
        assert len({c.name for c in classes}) == 28
    assert [c.name for c in design_cars(3, 6)] == [c.name for c in design_cars(3, 13)[:6]]


def test_car_diagnostic_details_fixed_other_details_vary():
    car = design_cars(0, 1)[0]
    draw = ImageDraw.Draw(Image.new("RGB", (128, 128)))
    shown = [draw_car(draw, make_rng(0, "t", i), car, 64, 100, 100, 1.0)[1] for i in range(40)]
    for kind in CAR_DETAILS:
        values = {d[kind] for d in shown}
        if kind in car.details:
            assert values == {car.details[kind]}
        else:
            assert len(values) > 1


def test_cars_look_unlike_birds_and_dogs():
    """Grey roads and skies: many more low-saturation pixels and a bluer mean than the animals
    (the colour shift that chapter 7's BatchNorm statistics see)."""
    def low_saturation_and_blue(images):
        x = np.stack([np.asarray(img, float) / 255 for img in images])
        top, bottom = x.max(-1), x.min(-1)
        saturation = (top - bottom) / np.maximum(top, 1e-6)
        return (saturation < 0.15).mean(), (x[..., 2] - x[..., 0]).mean()

    cars, birds, dogs = design_cars(0, 8), design_classes(0, "cub200", 8), design_classes(
        0, "dogs", 8)
    car_stats = low_saturation_and_blue(
        [render_car(make_rng(0, "c", i), cars[i % 8], 48)[0] for i in range(24)])
    for animals in (birds, dogs):
        stats = low_saturation_and_blue(
            [render_image(make_rng(0, "a", i), animals[i % 8], 48)[0] for i in range(24)])
        assert car_stats[0] > 1.5 * stats[0]
        assert car_stats[1] > stats[1] + 0.03


def test_cars_design_and_ensure(tmp_path, monkeypatch):
    assert all(FINEGRAINED_SCALES[s]["cars"] == FINEGRAINED_SCALES[s]["cub200"]
               for s in FINEGRAINED_SCALES)
    with pytest.raises(ValueError, match="classes_per_make must be at most"):
        design_cars(0, 4, classes_per_make=9)
    with pytest.raises(ValueError, match="n_classes"):
        design_cars(0, 0)
    monkeypatch.setitem(FINEGRAINED_SCALES["smoke"], "cars",
                        {"n_classes": 4, "per_class": 2, "image_size": 24})
    root = ensure_finegrained(tmp_path, "cars", seed=0, scale="smoke")
    first = (tmp_path / "stanford_cars" / "cars_train" / "00001.jpg").stat().st_mtime_ns
    assert ensure_finegrained(tmp_path, "cars", seed=0, scale="smoke") == root
    assert (tmp_path / "stanford_cars" / "cars_train" / "00001.jpg").stat().st_mtime_ns == first
    assert load_finegrained(root, "cars").n_classes == 4
