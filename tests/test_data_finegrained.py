"""Fine-grained loaders on tiny hand-made fixtures in the official layouts (CUB-200-2011 text
files, Stanford Dogs .mat lists, CIFAR-100 pickles)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError
from irbook.data.finegrained import (
    ClassSplit,
    LabelledSet,
    load_cifar100,
    load_cub200,
    load_finegrained,
    load_stanford_dogs,
    within_class_split,
)
from irbook.data.images import check_images

# --------------------------------------------------------------------------- fixtures

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# image id -> (class id 1-based, official train flag); class sizes 5, 3, 4
CUB_IMAGES = {
    1: (1, 1), 2: (1, 0), 3: (1, 1), 4: (1, 0), 5: (1, 1),
    6: (2, 0), 7: (2, 1), 8: (2, 1),
    9: (3, 1), 10: (3, 0), 11: (3, 0), 12: (3, 1),
}


def _tiny_jpg(path: Path, colour=(120, 40, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), colour).save(path, "JPEG")


def _cub_rel(image_id: int) -> str:
    cls = CUB_CLASSES[CUB_IMAGES[image_id][0] - 1]
    return f"{cls}/{cls[4:]}_{image_id:04d}.jpg"


def write_cub_fixture(root: Path) -> Path:
    folder = root / "CUB_200_2011"
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text(
        "".join(f"{k} {n}\n" for k, n in enumerate(CUB_CLASSES, 1)))
    ids = sorted(CUB_IMAGES, reverse=True)  # listed out of order: the loader sorts by id
    (folder / "images.txt").write_text("".join(f"{i} {_cub_rel(i)}\n" for i in ids))
    (folder / "image_class_labels.txt").write_text(
        "".join(f"{i} {CUB_IMAGES[i][0]}\n" for i in ids))
    (folder / "train_test_split.txt").write_text(
        "".join(f"{i} {CUB_IMAGES[i][1]}\n" for i in sorted(CUB_IMAGES)))
    for i in CUB_IMAGES:
        _tiny_jpg(folder / "images" / _cub_rel(i))
    return folder


DOG_FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]


def _cell(strings: list[str]) -> np.ndarray:
    cell = np.empty((len(strings), 1), dtype=object)
    for k, s in enumerate(strings):
        cell[k, 0] = np.array([s])
    return cell


def _mat(path: Path, files: list[str], labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"file_list": _cell(files),
                                 "annotation_list": _cell([f[:-4] for f in files]),
                                 "labels": np.array(labels, dtype=np.uint8).reshape(-1, 1)})


def write_dogs_fixture(root: Path) -> tuple[list[str], list[int]]:
    folder = root / "StanfordDogs"
    files, labels = [], []
    for c, (name, n) in enumerate(zip(DOG_FOLDERS, (5, 4), strict=True)):
        wnid = name.split("-")[0]
        for k in range(n):
            rel = f"{name}/{wnid}_{100 + k}.jpg"
            _tiny_jpg(folder / "Images" / rel)
            files.append(rel)
            labels.append(c + 1)
    _mat(folder / "lists" / "file_list.mat", files, labels)
    train = [0, 1, 5, 6]  # official: two per class, as Stanford's fixed count per class
    test = [i for i in range(len(files)) if i not in train]
    _mat(folder / "lists" / "train_list.mat", [files[i] for i in train],
         [labels[i] for i in train])
    _mat(folder / "lists" / "test_list.mat", [files[i] for i in test], [labels[i] for i in test])
    return files, labels


def _cifar_batch(labels: list[int], values: list[tuple[int, int, int]]) -> dict:
    data = np.zeros((len(labels), 3 * 32 * 32), np.uint8)
    for k, rgb in enumerate(values):
        for plane, v in enumerate(rgb):
            data[k, plane * 1024:(plane + 1) * 1024] = v
    return {"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels),
            "filenames": [f"img_{k}.png" for k in range(len(labels))]}


def write_cifar_fixture(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train = _cifar_batch([2, 0, 1, 2], [(10, 20, 30), (40, 50, 60), (70, 80, 90), (1, 2, 3)])
    train["data"][0, 0 * 1024 + 1 * 32 + 2] = 255  # R plane, row 1, column 2 of image 0
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    (folder / "test").write_bytes(pickle.dumps(_cifar_batch([1, 0], [(5, 6, 7), (8, 9, 10)]),
                                                protocol=2))
    meta = {"fine_label_names": ["apple", "aquarium_fish", "baby"],
            "coarse_label_names": ["fruit_and_vegetables"]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


# --------------------------------------------------------------------------- containers


def test_labelled_set_subset_keeps_order_and_labels():
    items = [Path(f"{k}.jpg") for k in range(6)]
    ls = LabelledSet(items, np.array([2, 0, 1, 2, 0, 3]))
    sub = ls.subset([2, 3])
    assert sub.items == [Path("0.jpg"), Path("3.jpg"), Path("5.jpg")]
    assert sub.labels.tolist() == [2, 2, 3] and sub.labels.dtype == np.int64
    assert len(sub) == 3 and len(ls.subset([])) == 0
    arr = np.arange(6 * 2 * 2 * 3, dtype=np.uint8).reshape(6, 2, 2, 3)
    arr_sub = LabelledSet(arr, ls.labels).subset(np.array([0]))
    np.testing.assert_array_equal(arr_sub.items, arr[[1, 4]])


def test_labelled_set_rejects_bad_input():
    with pytest.raises(ValueError, match="2 items for 3 labels"):
        LabelledSet([Path("a"), Path("b")], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        LabelledSet([Path("a")], np.array([0.5]))
    with pytest.raises(ValueError, match="uint8"):
        LabelledSet(np.zeros((1, 2, 2, 3), np.float32), np.array([0]))


@pytest.mark.parametrize("n", [1, 2, 5, 7, 41, 44, 48, 53, 58, 60])
def test_within_class_split_takes_floor_of_60_percent(n):
    # CUB counts in the author's train.txt: 41 -> 24, 44 -> 26, 48 -> 28, 53 -> 31, 58 -> 34
    labels = np.r_[np.full(n, 7), np.full(10, 3)]
    mask = within_class_split(labels)
    assert mask[:n].sum() == math.floor(n * 3 / 5)
    assert mask[n:].sum() == 6


def test_within_class_split_spreads_training_items():
    mask = within_class_split(np.zeros(10, np.int64))
    assert mask.tolist() == [False, True, False, True, True] * 2
    with pytest.raises(ValueError, match="fraction"):
        within_class_split(np.zeros(3, np.int64), (5, 3))


# --------------------------------------------------------------------------- CUB


def test_cub_official_split_follows_train_test_split_file(tmp_path):
    folder = write_cub_fixture(tmp_path)
    cs = load_cub200(tmp_path, split="official")
    assert isinstance(cs, ClassSplit) and cs.split == "official"
    assert cs.class_names == CUB_CLASSES and cs.n_classes == 3
    train_ids = [i for i in sorted(CUB_IMAGES) if CUB_IMAGES[i][1] == 1]
    test_ids = [i for i in sorted(CUB_IMAGES) if CUB_IMAGES[i][1] == 0]
    assert cs.train.items == [folder / "images" / _cub_rel(i) for i in train_ids]
    assert cs.train.labels.tolist() == [CUB_IMAGES[i][0] - 1 for i in train_ids]
    assert cs.test.labels.tolist() == [CUB_IMAGES[i][0] - 1 for i in test_ids]


def test_cub_thesis_split_is_60_40_within_each_class_in_id_order(tmp_path):
    write_cub_fixture(tmp_path)
    cs = load_finegrained(tmp_path, "cub200")  # thesis split by default
    assert cs.split == "thesis"
    # class sizes 5, 3, 4 -> 3, 1, 2 training images (floor of 60%)
    assert np.bincount(cs.train.labels).tolist() == [3, 1, 2]
    assert np.bincount(cs.test.labels).tolist() == [2, 2, 2]
    ids = [int(p.stem.split("_")[-1]) for p in cs.train.items]
    assert ids == [2, 4, 5, 7, 10, 12]  # positions test, train, test, train, train per class


def test_cub_missing_dataset_and_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cub200(tmp_path)
    assert str(tmp_path / "CUB_200_2011") in str(err.value)
    assert "cub_200_2011" in str(err.value).lower() and "https://" in str(err.value)
    folder = write_cub_fixture(tmp_path)
    (folder / "train_test_split.txt").unlink()
    load_cub200(tmp_path, split="thesis")  # the thesis split does not need it
    with pytest.raises(DatasetNotFoundError, match="train_test_split.txt"):
        load_cub200(tmp_path, split="official")


def test_cub_corrupt_files_name_the_path(tmp_path):
    folder = write_cub_fixture(tmp_path)
    (folder / "images.txt").write_text("1 a.jpg\n2\n")
    with pytest.raises(DatasetCorruptError, match="images.txt"):
        load_cub200(tmp_path)
    write_cub_fixture(tmp_path / "b")
    labels = tmp_path / "b" / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("12 3", "12 4"))
    with pytest.raises(DatasetCorruptError, match="image_class_labels.txt"):
        load_cub200(tmp_path / "b")
    write_cub_fixture(tmp_path / "c")
    (tmp_path / "c" / "CUB_200_2011" / "images" / _cub_rel(3)).unlink()
    with pytest.raises(DatasetCorruptError, match="missing from disk"):
        load_cub200(tmp_path / "c")


def test_truncated_images_txt_is_blamed_not_the_labels(tmp_path):
    folder = write_cub_fixture(tmp_path)
    kept = [f"{i} {_cub_rel(i)}\n" for i in range(1, 9)]  # ids 9..12 cut off
    (folder / "images.txt").write_text("".join(kept))
    with pytest.raises(DatasetCorruptError) as err:
        load_cub200(tmp_path)
    assert err.value.path == folder / "images.txt"
    # image_class_labels.txt lists ids 12, 11, ...: 12 is its first id images.txt lacks
    assert "image id 12 of image_class_labels.txt is not listed" in str(err.value)
    assert "4 ids missing" in str(err.value)
    with pytest.raises(DatasetCorruptError) as err:
        load_cub200(tmp_path, split="official")
    assert err.value.path == folder / "images.txt"


def test_table_lacking_an_image_id_is_blamed(tmp_path):
    folder = write_cub_fixture(tmp_path)
    split = folder / "train_test_split.txt"
    split.write_text("".join(line + "\n" for line in split.read_text().splitlines()
                             if not line.startswith("7 ")))
    with pytest.raises(DatasetCorruptError) as err:
        load_cub200(tmp_path, split="official")
    assert err.value.path == split
    assert "image id 7 of images.txt has no entry" in str(err.value)


def test_check_images_finds_undecodable_files(tmp_path):
    paths = [tmp_path / f"{k}.jpg" for k in range(10)]
    for k, path in enumerate(paths):
        Image.fromarray(np.full((40, 60, 3), 20 * k, np.uint8)).save(path, "JPEG")
    assert check_images(paths, "CUB-200-2011") == 10
    whole = paths[3].read_bytes()
    paths[3].write_bytes(whole[: len(whole) // 2])  # a truncated download
    with pytest.raises(DatasetCorruptError) as err:
        check_images(paths, "CUB-200-2011")
    assert err.value.path == paths[3]
    message = str(err.value)
    assert "truncated" in message.lower() and "re-download and re-extract CUB-200-2011" in message
    assert "for synthetic data delete the dataset's folder" in message
    # sample=4 of paths[4:] checks positions 0, 1, 3, 5 (floor(k 5 / 3)): paths 4, 5, 7, 9
    assert check_images(paths[4:], "CUB-200-2011", sample=4) == 4
    paths[6].write_text("<html>404 Not Found</html>")  # a text file named .jpg
    assert check_images(paths[4:], "CUB-200-2011", sample=4) == 4
    # sample=5 checks positions 0, 1, 2, 3, 5: paths 4, 5, 6, ...
    with pytest.raises(DatasetCorruptError, match=r"6\.jpg' is damaged: this CUB-200-2011 "
                                                  "image does not decode"):
        check_images(paths[4:], "CUB-200-2011", sample=5)
    paths[9].unlink()
    with pytest.raises(DatasetNotFoundError, match="9.jpg"):
        check_images(paths[9:], "CUB-200-2011")


def test_bad_split_and_name_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_cub200(tmp_path, split="random")
    with pytest.raises(ValueError, match="split must be one of"):
        load_cifar100(tmp_path, split="thesis")
    with pytest.raises(ValueError, match="name must be one of"):
        load_finegrained(tmp_path, "cars196")


# --------------------------------------------------------------------------- Stanford Dogs


def test_dogs_official_and_thesis_splits(tmp_path):
    files, labels = write_dogs_fixture(tmp_path)
    images = tmp_path / "StanfordDogs" / "Images"
    official = load_stanford_dogs(tmp_path, split="official")
    assert official.class_names == DOG_FOLDERS
    assert official.train.items == [images / files[i] for i in (0, 1, 5, 6)]
    assert official.train.labels.tolist() == [0, 0, 1, 1]
    assert official.test.labels.tolist() == [0, 0, 0, 1, 1]
    assert load_finegrained(tmp_path, "dogs").split == "official"  # Table 5.1's counts
    thesis = load_finegrained(tmp_path, "dogs", split="thesis")
    assert thesis.split == "thesis"
    # class sizes 5 and 4 -> 3 and 2 training images, in file_list order
    assert thesis.train.items == [images / files[i] for i in (1, 3, 4, 6, 8)]
    assert thesis.test.labels.tolist() == [0, 0, 1, 1]


def test_dogs_missing_and_corrupt_lists(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="StanfordDogs"):
        load_stanford_dogs(tmp_path)
    write_dogs_fixture(tmp_path)
    lists = tmp_path / "StanfordDogs" / "lists"
    (lists / "test_list.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_list.mat"):
        load_stanford_dogs(tmp_path, split="official")
    (lists / "file_list.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetCorruptError, match="file_list.mat"):
        load_stanford_dogs(tmp_path, split="thesis")
    scipy.io.savemat(str(lists / "file_list.mat"), {"labels": np.ones((2, 1))})
    with pytest.raises(DatasetCorruptError, match="needs 'file_list' and 'labels'"):
        load_stanford_dogs(tmp_path, split="thesis")


def test_dogs_label_that_spans_two_folders_is_corrupt(tmp_path):
    files, labels = write_dogs_fixture(tmp_path)
    _mat(tmp_path / "StanfordDogs" / "lists" / "file_list.mat", files, [1] * len(files))
    with pytest.raises(DatasetCorruptError, match="two folders"):
        load_stanford_dogs(tmp_path, split="thesis")


# --------------------------------------------------------------------------- CIFAR-100


def test_cifar100_arrays_labels_and_names(tmp_path):
    write_cifar_fixture(tmp_path)
    cs = load_finegrained(tmp_path, "cifar100")
    assert cs.split == "official" and cs.class_names == ["apple", "aquarium_fish", "baby"]
    assert cs.train.items.shape == (4, 32, 32, 3) and cs.train.items.dtype == np.uint8
    assert cs.train.labels.tolist() == [2, 0, 1, 2] and cs.test.labels.tolist() == [1, 0]
    assert cs.train.items[1, 5, 7].tolist() == [40, 50, 60]  # R, G, B planes -> channels
    assert cs.train.items[0, 1, 2].tolist() == [255, 20, 30]
    assert cs.train.items[0, 2, 1].tolist() == [10, 20, 30]
    assert cs.test.items[0, 31, 31].tolist() == [5, 6, 7]
    assert cs.train.subset([2]).items.shape == (2, 32, 32, 3)


def test_cifar100_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path)
    folder = write_cifar_fixture(tmp_path)
    (folder / "test").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetCorruptError, match="test"):
        load_cifar100(tmp_path)
    bad = _cifar_batch([0, 7], [(1, 1, 1), (2, 2, 2)])  # label 7 but only 3 names
    (folder / "test").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DatasetCorruptError, match="fine_labels must lie in 0..2"):
        load_cifar100(tmp_path)
    (folder / "meta").unlink()
    with pytest.raises(DatasetNotFoundError, match="meta"):
        load_cifar100(tmp_path)
