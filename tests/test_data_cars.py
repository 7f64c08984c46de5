"""Stanford Cars loader on a tiny hand-made fixture in the official layout (MATLAB v5 struct
arrays written here with scipy.io.savemat), and its missing/damaged cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError
from irbook.data.finegrained import (
    load_finegrained,
    load_stanford_cars,
    stanford_cars_boxes,
)

CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
# fname -> (x1, y1, x2, y2 (1-based, inclusive), class (1-based)); listed in this order
TRAIN = {"00001.jpg": (2, 1, 9, 6, 3), "00002.jpg": (1, 1, 10, 8, 1),
         "00003.jpg": (3, 2, 8, 7, 2), "00004.jpg": (1, 2, 6, 5, 3)}
TEST = {"00001.jpg": (1, 1, 5, 5, 2), "00002.jpg": (4, 3, 10, 8, 3), "00003.jpg": (2, 2, 7, 6, 1)}


def _annotations(rows: dict[str, tuple[int, ...]], fields=FIELDS, as_float=False) -> np.ndarray:
    """A 1 x N MATLAB struct array (as the real files: every field a 1 x 1 matrix, fname a
    string)."""
    ann = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for k, (fname, values) in enumerate(rows.items()):
        numbers = dict(zip(FIELDS[:5], values, strict=True))
        for field in fields:
            if field == "fname":
                ann[0, k][field] = fname
            else:
                ann[0, k][field] = np.array([[numbers[field]]],
                                            dtype=np.float64 if as_float else np.uint16)
    return ann


def _tiny_jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 8), (90, 90, 200)).save(path, "JPEG")


def write_cars_fixture(root: Path, as_float: bool = False) -> Path:
    folder = root / "stanford_cars"
    (folder / "devkit").mkdir(parents=True)
    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    for k, name in enumerate(CAR_CLASSES):
        names[0, k] = name
    scipy.io.savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": names})
    scipy.io.savemat(str(folder / "devkit" / "cars_train_annos.mat"),
                     {"annotations": _annotations(TRAIN, as_float=as_float)})
    scipy.io.savemat(str(folder / "devkit" / "cars_test_annos.mat"),
                     {"annotations": _annotations(TEST, fields=FIELDS[:4] + FIELDS[5:])})
    scipy.io.savemat(str(folder / "cars_test_annos_withlabels.mat"),
                     {"annotations": _annotations(TEST, as_float=as_float)})
    for part, rows in (("cars_train", TRAIN), ("cars_test", TEST)):
        for fname in rows:
            _tiny_jpg(folder / part / fname)
    return folder


@pytest.mark.parametrize("as_float", [False, True])
def test_official_split_in_annotation_order(tmp_path, as_float):
    folder = write_cars_fixture(tmp_path, as_float)
    cs = load_stanford_cars(tmp_path)
    assert cs.name == "cars" and cs.split == "official"
    assert cs.class_names == CAR_CLASSES
    assert cs.train.items == [folder / "cars_train" / f for f in TRAIN]
    assert cs.test.items == [folder / "cars_test" / f for f in TEST]
    assert cs.train.labels.tolist() == [v[4] - 1 for v in TRAIN.values()]
    assert cs.test.labels.tolist() == [1, 2, 0]
    same = load_finegrained(tmp_path, "cars")
    assert same.split == "official" and same.train.items == cs.train.items
    np.testing.assert_array_equal(same.test.labels, cs.test.labels)


def test_boxes_become_zero_based_pixel_edges(tmp_path):
    folder = write_cars_fixture(tmp_path)
    boxes = stanford_cars_boxes(tmp_path)
    assert len(boxes) == len(TRAIN) + len(TEST)
    # 1-based inclusive (2, 1, 9, 6) covers pixel columns 1..8 and rows 0..5 of the image
    assert boxes[folder / "cars_train" / "00001.jpg"] == (1.0, 0.0, 9.0, 6.0)
    assert boxes[folder / "cars_test" / "00002.jpg"] == (3.0, 2.0, 10.0, 8.0)


def test_missing_dataset_and_parts_name_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="stanford_cars") as info:
        load_stanford_cars(tmp_path)
    assert "cars_test_annos_withlabels.mat" in str(info.value)  # how to get it
    assert "ensure_finegrained" in str(info.value)
    folder = write_cars_fixture(tmp_path)
    (folder / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="cars_test_annos_withlabels.mat"):
        load_stanford_cars(tmp_path)
    shutil.rmtree(folder / "cars_test")
    with pytest.raises(DatasetNotFoundError, match="cars_test"):
        load_stanford_cars(tmp_path)
    (folder / "devkit" / "cars_meta.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="cars_meta.mat"):
        load_stanford_cars(tmp_path)


def test_devkit_test_file_without_labels_is_refused_with_a_hint(tmp_path):
    folder = write_cars_fixture(tmp_path)
    shutil.copy(folder / "devkit" / "cars_test_annos.mat",
                folder / "cars_test_annos_withlabels.mat")
    with pytest.raises(DatasetCorruptError, match=r"lacks the fields \['class'\].*withlabels"):
        load_stanford_cars(tmp_path)


def _damage(folder: Path, name: str) -> Path:
    return {"meta": folder / "devkit" / "cars_meta.mat",
            "train": folder / "devkit" / "cars_train_annos.mat",
            "test": folder / "cars_test_annos_withlabels.mat"}[name]


@pytest.mark.parametrize("target, variables, message", [
    ("train", None, "not a readable MATLAB file"),
    ("meta", {"names": np.zeros((1, 3))}, "needs 'class_names'"),
    ("train", {"annos": np.zeros((1, 3))}, "needs an 'annotations' struct array"),
    ("train", {"annotations": _annotations({"00001.jpg": (1, 1, 2, 2, 4)})},
     r"class must lie in 1\.\.3"),
    ("test", {"annotations": _annotations({"00001.jpg": (1, 1, 2, 2, 0)})}, "1-based"),
    ("test", {"annotations": np.concatenate([_annotations(TEST)] * 2, axis=1)}, "twice"),
    ("train", {"annotations": _annotations({"09999.jpg": (1, 1, 2, 2, 1)})},
     "listed images are missing from disk: .*09999.jpg"),
])
def test_damaged_files_name_the_file(tmp_path, target, variables, message):
    folder = write_cars_fixture(tmp_path)
    path = _damage(folder, target)
    if variables is None:
        path.write_bytes(b"this is not a MATLAB file at all" * 8)
    else:
        scipy.io.savemat(str(path), variables)
    with pytest.raises(DatasetCorruptError, match=message) as info:
        load_stanford_cars(tmp_path)
    assert info.value.path == path


def test_bad_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \['official'\] for cars"):
        load_stanford_cars(tmp_path, split="thesis")
    with pytest.raises(ValueError, match="split must be one of"):
        load_finegrained(tmp_path, "cars", split="random")
