"""Loaders for the fine-grained (and CIFAR-100) datasets of chapters 5-7, read from their
official on-disk layouts (REFERENCE_PROTOCOLS, "On-disk layouts").

Every loader returns a :class:`ClassSplit` whose labels are 0-based class indices in the
official class order (CUB ``classes.txt``, Stanford Dogs ``labels`` 1-120, CIFAR-100
``fine_label_names``, Stanford Cars ``class`` 1-196 naming ``cars_meta.mat``'s
``class_names``), so "the first 100 classes" of the thesis is ``labels < 100``.

Splits:

- ``"official"``: the split shipped with the dataset (CUB ``train_test_split.txt``, Dogs
  ``train_list.mat``/``test_list.mat``, CIFAR-100 ``train``/``test``, Stanford Cars
  ``cars_train``/``cars_test``; Cars has only this split, chapter 7 re-splits it by class,
  :mod:`irbook.data.lifelong`).
- ``"thesis"`` (CUB and Dogs): 60% of the images of every class for training, 40% for testing
  (thesis chapter 6, setup; chapter 5 for CUB). Per class, the images in official order (CUB
  image id, Dogs ``file_list.mat`` order) are assigned by :func:`within_class_split`: train
  gets ``floor(0.6 n)`` of them, spread evenly over the class. The floor follows the author's
  released ``train.txt``/``test.txt`` for CUB: e.g. Least Auklet (41 images) has 24 training
  images, Rhinoceros Auklet (48) 28, Sooty Albatross (58) 34 -- floor, not round. Which images
  the author drew is random there and not reproducible from the official files, so only the
  per-class counts (7,048 / 4,740 in total on the real CUB) match, not the membership.
  Stanford Dogs: chapter 6 says 60/40 per class, but its Table 5.1 counts (12,000 train /
  8,580 test, 100 training images per class) are those of the official split, which chapter 5
  states it uses; ``split="official"`` reproduces those counts.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from irbook.data.errors import DatasetCorruptError, require

FINEGRAINED_DATASETS = ("cub200", "dogs", "cifar100", "cars")
SPLITS = {"cub200": ("thesis", "official"), "dogs": ("thesis", "official"),
          "cifar100": ("official",), "cars": ("official",)}
DEFAULT_SPLIT = {"cub200": "thesis", "dogs": "official", "cifar100": "official",
                 "cars": "official"}
TRAIN_FRACTION = (3, 5)  # 60% of each class for training in the thesis split

DISPLAY_NAMES = {"cub200": "CUB-200-2011", "dogs": "Stanford Dogs", "cifar100": "CIFAR-100",
                 "cars": "Stanford Cars"}
FOLDERS = {"cub200": "CUB_200_2011", "dogs": "StanfordDogs", "cifar100": "cifar-100-python",
           "cars": "stanford_cars"}  # torchvision's StanfordCars reads the same folder
SYNTH_HINT = ("Without real data the book writes a synthetic stand-in with "
              "irbook.data.synth.ensure_finegrained")
HOW_TO_GET = {
    "cub200": (
        "download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
        "and extract it into <root>/ so that <root>/CUB_200_2011/images.txt exists. "
        + SYNTH_HINT
    ),
    "dogs": (
        "download images.tar and lists.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/;"
        " extract images.tar into <root>/StanfordDogs/ (giving Images/<wnid>-<breed>/) and "
        "lists.tar into <root>/StanfordDogs/lists/. " + SYNTH_HINT
    ),
    "cifar100": (
        "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
        "extract it into <root>/ (giving <root>/cifar-100-python/{train,test,meta}). "
        + SYNTH_HINT
    ),
    "cars": (
        "get cars_train.tgz, cars_test.tgz and car_devkit.tgz (first published at "
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html, now only on mirrors) and "
        "cars_test_annos_withlabels.mat; extract the three archives into <root>/stanford_cars/ "
        "(giving cars_train/, cars_test/ and devkit/) and put cars_test_annos_withlabels.mat "
        "beside them, in <root>/stanford_cars/. " + SYNTH_HINT
    ),
}


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, eq=False)
class LabelledSet:
    """Images with 0-based class labels: ``items`` is a list of image paths or an
    ``(N, H, W, 3)`` uint8 array (CIFAR); ``labels`` an int64 array of length N."""

    items: list[Path] | np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} "
                             f"and dtype {labels.dtype}")
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        if isinstance(self.items, np.ndarray):
            if self.items.ndim != 4 or self.items.shape[-1] != 3 or self.items.dtype != np.uint8:
                raise ValueError("array items must be (N, H, W, 3) uint8, got "
                                 f"{self.items.shape} {self.items.dtype}")
        else:
            object.__setattr__(self, "items", [Path(p) for p in self.items])
        if len(self.items) != len(labels):
            raise ValueError(f"{len(self.items)} items for {len(labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> np.ndarray:
        """The sorted distinct labels present."""
        return np.unique(self.labels)

    def subset(self, classes: Iterable[int]) -> LabelledSet:
        """The items whose label is in ``classes``, in their original order (labels kept)."""
        keep = np.isin(self.labels, np.asarray(list(classes), dtype=np.int64))
        if isinstance(self.items, np.ndarray):
            items: list[Path] | np.ndarray = self.items[keep]
        else:
            items = [p for p, k in zip(self.items, keep, strict=True) if k]
        return LabelledSet(items, self.labels[keep])


@dataclass(frozen=True, eq=False)
class ClassSplit:
    """A dataset's class names (official order) and its train/test :class:`LabelledSet`."""

    name: str
    class_names: list[str]
    train: LabelledSet
    test: LabelledSet
    split: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- split rule


def within_class_split(labels: np.ndarray, fraction: tuple[int, int] = TRAIN_FRACTION
                       ) -> np.ndarray:
    """Boolean train mask: in each class, ``floor(n * a / b)`` of its ``n`` items (in the given
    order) go to train, spread evenly -- the item at within-class position ``i`` is a training
    item iff ``floor((i + 1) a / b) > floor(i a / b)``. For ``a/b = 3/5`` the pattern is
    test, train, test, train, train, repeated; a class of 41 images gets 24 training images."""
    a, b = fraction
    if not (0 < a < b):
        raise ValueError(f"fraction must be (a, b) with 0 < a < b, got {fraction}")
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        pos = np.arange(len(idx))
        mask[idx] = (pos + 1) * a // b > pos * a // b
    return mask


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS[name]:
        raise ValueError(f"split must be one of {list(SPLITS[name])} for {name}, got {split!r}")


# --------------------------------------------------------------------------- CUB-200-2011


def _read_table(path: Path, n_fields: int, dataset: str) -> list[list[str]]:
    """Whitespace-separated lines ``id field...`` (the last field may contain no spaces)."""
    path = require(path, DISPLAY_NAMES[dataset], HOW_TO_GET[dataset])
    rows = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != n_fields:
            raise DatasetCorruptError(path, f"line {k} has {len(parts)} fields, expected "
                                      f"{n_fields}: {line!r}")
        rows.append(parts)
    if not rows:
        raise DatasetCorruptError(path, "is empty")
    return rows


def _int_column(rows: list[list[str]], col: int, path: Path) -> np.ndarray:
    try:
        return np.array([int(r[col]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise DatasetCorruptError(path, f"column {col + 1} is not an integer ({exc})") from exc


def _id_map(rows: list[list[str]], path: Path, ids: np.ndarray, images_txt: Path
            ) -> dict[int, str]:
    """``{image id: value}`` from a two-column table, checking it covers exactly ``ids`` (those
    of ``images_txt``). An id of the table that images.txt lacks blames images.txt (a truncated
    images.txt is the usual cause); an id of images.txt that the table lacks blames the table."""
    keys = _int_column(rows, 0, path)
    table = dict(zip(keys.tolist(), (r[1] for r in rows), strict=True))
    if len(table) != len(rows):
        raise DatasetCorruptError(path, "image ids are repeated")
    listed = set(ids.tolist())
    unlisted = [k for k in keys.tolist() if k not in listed]
    if unlisted:
        raise DatasetCorruptError(
            images_txt, f"image id {unlisted[0]} of {path.name} is not listed in it "
            f"({len(unlisted)} ids missing; {len(listed)} listed, {len(table)} in {path.name}): "
            f"it looks truncated; extract it again from CUB_200_2011.tgz")
    absent = [i for i in ids.tolist() if i not in table]
    if absent:
        raise DatasetCorruptError(path, f"image id {absent[0]} of images.txt has no entry "
                                  f"({len(absent)} ids missing)")
    return table


def _require_images(paths: list[Path], listing: Path) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DatasetCorruptError(
            listing, f"{len(missing)} listed images are missing from disk: {shown}"
        )


def load_cub200(root: str | PathLike[str], split: str = "thesis") -> ClassSplit:
    """CUB-200-2011 from ``<root>/CUB_200_2011/`` (images.txt, image_class_labels.txt,
    train_test_split.txt, classes.txt, images/). Items are ordered by image id."""
    _check_split("cub200", split)
    folder = require(Path(root) / FOLDERS["cub200"], "CUB-200-2011", HOW_TO_GET["cub200"])
    class_rows = _read_table(folder / "classes.txt", 2, "cub200")
    class_ids = _int_column(class_rows, 0, folder / "classes.txt")
    if not np.array_equal(class_ids, np.arange(1, len(class_rows) + 1)):
        raise DatasetCorruptError(folder / "classes.txt", "class ids must be 1, 2, ..., n in order")
    class_names = [r[1] for r in class_rows]

    image_rows = _read_table(folder / "images.txt", 2, "cub200")
    ids = _int_column(image_rows, 0, folder / "images.txt")
    if len(np.unique(ids)) != len(ids):
        raise DatasetCorruptError(folder / "images.txt", "image ids are repeated")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    rel = [image_rows[i][1] for i in order]

    label_path = folder / "image_class_labels.txt"
    label_of = _id_map(_read_table(label_path, 2, "cub200"), label_path, ids,
                       folder / "images.txt")
    try:
        labels = np.array([int(label_of[i]) for i in ids.tolist()], dtype=np.int64) - 1
    except ValueError as exc:
        raise DatasetCorruptError(label_path, f"a class id is not an integer ({exc})") from exc
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DatasetCorruptError(label_path, f"class ids must lie in 1..{len(class_names)}")

    if split == "official":
        split_path = folder / "train_test_split.txt"
        flag_of = _id_map(_read_table(split_path, 2, "cub200"), split_path, ids,
                          folder / "images.txt")
        flags = [flag_of[i] for i in ids.tolist()]
        if set(flags) - {"0", "1"}:
            raise DatasetCorruptError(split_path, "the train flag must be 1 or 0")
        is_train = np.array([f == "1" for f in flags])
    else:
        is_train = within_class_split(labels)

    paths = [folder / "images" / r for r in rel]
    _require_images(paths, folder / "images.txt")
    return _class_split("cub200", class_names, paths, labels, is_train, split)


def _class_split(name: str, class_names: list[str], paths: list[Path], labels: np.ndarray,
                 is_train: np.ndarray, split: str) -> ClassSplit:
    def pick(mask: np.ndarray) -> LabelledSet:
        return LabelledSet([p for p, k in zip(paths, mask, strict=True) if k], labels[mask])

    return ClassSplit(name, class_names, pick(is_train), pick(~is_train), split)


# --------------------------------------------------------------------------- Stanford Dogs


def _load_mat(path: Path, dataset: str) -> dict:
    import scipy.io

    path = require(path, DISPLAY_NAMES[dataset], HOW_TO_GET[dataset])
    try:
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DatasetCorruptError(path, f"not a readable MATLAB file ({exc})") from exc


def _load_mat_list(path: Path) -> tuple[list[str], np.ndarray]:
    """``file_list`` (N x 1 cell of relative paths) and ``labels`` (N x 1, 1-based) of a
    Stanford Dogs list file."""
    mat = _load_mat(path, "dogs")
    if "file_list" not in mat or "labels" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetCorruptError(path, f"needs 'file_list' and 'labels', found {keys}")
    try:
        files = [str(np.asarray(cell).reshape(-1)[0]) for cell in mat["file_list"].reshape(-1)]
        labels = np.asarray(mat["labels"], dtype=np.int64).reshape(-1)
    except (IndexError, TypeError, ValueError) as exc:
        raise DatasetCorruptError(path, f"'file_list'/'labels' have the wrong shape ({exc})"
                                  ) from exc
    if len(files) != len(labels) or len(files) == 0:
        raise DatasetCorruptError(path, f"{len(files)} files for {len(labels)} labels")
    if labels.min() < 1:
        raise DatasetCorruptError(path, "labels must be 1-based (1..120 on the real data)")
    return files, labels - 1


def _dog_class_names(files: list[str], labels: np.ndarray, where: Path) -> list[str]:
    """Class ``k`` is named by the folder (``<wnid>-<breed>``) of its files."""
    names: dict[int, str] = {}
    for f, c in zip(files, labels.tolist(), strict=True):
        folder = f.replace("\\", "/").split("/")[0]
        if names.setdefault(c, folder) != folder:
            raise DatasetCorruptError(where, f"label {c + 1} covers two folders: "
                                      f"{names[c]!r} and {folder!r}")
    n = max(names) + 1
    if sorted(names) != list(range(n)):
        raise DatasetCorruptError(where, f"labels do not cover 1..{n} without gaps")
    return [names[c] for c in range(n)]


def load_stanford_dogs(root: str | PathLike[str], split: str = "official") -> ClassSplit:
    """Stanford Dogs from ``<root>/StanfordDogs/`` (Images/<wnid>-<breed>/*.jpg and
    lists/{train,test,file}_list.mat). ``official`` reads train/test lists; ``thesis`` splits
    ``file_list.mat`` 60/40 within each class (:func:`within_class_split`)."""
    _check_split("dogs", split)
    folder = require(Path(root) / FOLDERS["dogs"], "Stanford Dogs", HOW_TO_GET["dogs"])
    images = require(folder / "Images", "Stanford Dogs", HOW_TO_GET["dogs"])
    lists = folder / "lists"
    if split == "official":
        train_files, train_labels = _load_mat_list(lists / "train_list.mat")
        test_files, test_labels = _load_mat_list(lists / "test_list.mat")
        files, labels = train_files + test_files, np.r_[train_labels, test_labels]
        is_train = np.arange(len(files)) < len(train_files)
        where = lists / "train_list.mat"
    else:
        files, labels = _load_mat_list(lists / "file_list.mat")
        is_train = within_class_split(labels)
        where = lists / "file_list.mat"
    class_names = _dog_class_names(files, labels, where)
    paths = [images / f for f in files]
    _require_images(paths, where)
    return _class_split("dogs", class_names, paths, labels, is_train, split)


# --------------------------------------------------------------------------- CIFAR-100


def _unpickle(path: Path) -> dict:
    path = require(path, "CIFAR-100", HOW_TO_GET["cifar100"])
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError, OSError) as exc:
        raise DatasetCorruptError(path, f"cannot be unpickled ({exc!r})") from exc
    if not isinstance(obj, dict):
        raise DatasetCorruptError(path, f"expected a dict, found {type(obj).__name__}")
    return obj


def _cifar_part(path: Path, n_classes: int) -> LabelledSet:
    obj = _unpickle(path)
    if "data" not in obj or "fine_labels" not in obj:
        raise DatasetCorruptError(path, f"needs 'data' and 'fine_labels', found {sorted(obj)}")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["fine_labels"], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetCorruptError(path, f"'data' must be N x 3072 uint8, got {data.shape} "
                                  f"{data.dtype}")
    if len(data) != len(labels):
        raise DatasetCorruptError(path, f"{len(data)} images for {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetCorruptError(path, f"fine_labels must lie in 0..{n_classes - 1}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # R, G, B planes -> HWC
    return LabelledSet(np.ascontiguousarray(images), labels)


def load_cifar100(root: str | PathLike[str], split: str = "official") -> ClassSplit:
    """CIFAR-100 from ``<root>/cifar-100-python/{train,test,meta}`` (no MD5 check); items are
    an (N, 32, 32, 3) uint8 array, labels the fine labels."""
    _check_split("cifar100", split)
    folder = require(Path(root) / FOLDERS["cifar100"], "CIFAR-100", HOW_TO_GET["cifar100"])
    meta = _unpickle(folder / "meta")
    if "fine_label_names" not in meta:
        raise DatasetCorruptError(folder / "meta", f"needs 'fine_label_names', found "
                                  f"{sorted(meta)}")
    class_names = [str(n) for n in meta["fine_label_names"]]
    train = _cifar_part(folder / "train", len(class_names))
    test = _cifar_part(folder / "test", len(class_names))
    return ClassSplit("cifar100", class_names, train, test, split)


# --------------------------------------------------------------------------- Stanford Cars

Box = tuple[float, float, float, float]


def _field(record: np.void, name: str) -> object:
    """The scalar inside a MATLAB struct field (stored as a 1 x 1 or 1-element array)."""
    return np.asarray(record[name]).reshape(-1)[0]


def _cars_annotations(path: Path) -> tuple[list[str], np.ndarray, list[Box]]:
    """``fname``, 0-based ``class`` and boxes (x1, y1, x2, y2 in 0-based pixel edges) of the
    ``annotations`` struct array of a Stanford Cars annotation file."""
    mat = _load_mat(path, "cars")
    ann = mat.get("annotations")
    fields = ann.dtype.names if isinstance(ann, np.ndarray) else None
    if fields is None:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetCorruptError(path, f"needs an 'annotations' struct array, found {keys}")
    missing = [f for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
               if f not in fields]
    if missing:
        hint = (" (devkit/cars_test_annos.mat has no labels: use "
                "cars_test_annos_withlabels.mat)" if missing == ["class"] else "")
        raise DatasetCorruptError(path, f"'annotations' lacks the fields {missing}, found "
                                  f"{list(fields)}{hint}")
    records = ann.reshape(-1)
    try:
        files = [str(_field(r, "fname")) for r in records]
        labels = np.array([int(_field(r, "class")) for r in records], dtype=np.int64)
        boxes = [(float(_field(r, "bbox_x1")) - 1, float(_field(r, "bbox_y1")) - 1,
                  float(_field(r, "bbox_x2")), float(_field(r, "bbox_y2"))) for r in records]
    except (IndexError, TypeError, ValueError) as exc:
        raise DatasetCorruptError(path, f"an annotation field has the wrong type or shape "
                                  f"({exc})") from exc
    if not files:
        raise DatasetCorruptError(path, "has no annotations")
    if labels.min() < 1:
        raise DatasetCorruptError(path, "class must be 1-based (1..196 on the real data)")
    if len(set(files)) != len(files):
        raise DatasetCorruptError(path, "an fname is listed twice")
    return files, labels - 1, boxes


def _cars_class_names(path: Path) -> list[str]:
    mat = _load_mat(path, "cars")
    if "class_names" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetCorruptError(path, f"needs 'class_names', found {keys}")
    try:
        names = [str(np.asarray(c).reshape(-1)[0]) for c in mat["class_names"].reshape(-1)]
    except (AttributeError, IndexError, TypeError) as exc:
        raise DatasetCorruptError(path, f"'class_names' is not a cell of strings ({exc})"
                                  ) from exc
    if not names:
        raise DatasetCorruptError(path, "'class_names' is empty")
    return names


def _cars_parts(root: str | PathLike[str]) -> tuple[list[str], list[tuple[Path, Path]]]:
    """Class names and the (image folder, annotation file) of the train and test parts."""
    folder = require(Path(root) / FOLDERS["cars"], "Stanford Cars", HOW_TO_GET["cars"])
    class_names = _cars_class_names(folder / "devkit" / "cars_meta.mat")
    parts = [(folder / "cars_train", folder / "devkit" / "cars_train_annos.mat"),
             (folder / "cars_test", folder / "cars_test_annos_withlabels.mat")]
    for images, _ in parts:
        require(images, "Stanford Cars", HOW_TO_GET["cars"])
    return class_names, parts


def load_stanford_cars(root: str | PathLike[str], split: str = "official") -> ClassSplit:
    """Stanford Cars from ``<root>/stanford_cars/`` (cars_train/, cars_test/,
    devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat, devkit/cars_meta.mat). Items
    are in annotation order; the only split is the official one (8,144 / 8,041 images)."""
    _check_split("cars", split)
    class_names, parts = _cars_parts(root)
    paths: list[Path] = []
    labels, is_train = [], []
    for (images, listing), train in zip(parts, (True, False), strict=True):
        files, part_labels, _ = _cars_annotations(listing)
        if part_labels.max() >= len(class_names):
            raise DatasetCorruptError(listing, f"class must lie in 1..{len(class_names)} (the "
                                      "class_names of devkit/cars_meta.mat)")
        part_paths = [images / f for f in files]
        _require_images(part_paths, listing)
        paths += part_paths
        labels.append(part_labels)
        is_train.append(np.full(len(files), train))
    return _class_split("cars", class_names, paths, np.concatenate(labels),
                        np.concatenate(is_train), split)


def stanford_cars_boxes(root: str | PathLike[str]) -> dict[Path, Box]:
    """The annotated box of every Stanford Cars image, ``{path: (x1, y1, x2, y2)}`` in 0-based
    pixel edges (the files' 1-based inclusive indices minus one at the start), ready for
    :func:`irbook.data.images.crop_to_box`."""
    _, parts = _cars_parts(root)
    boxes: dict[Path, Box] = {}
    for images, listing in parts:
        files, _, part_boxes = _cars_annotations(listing)
        boxes.update({images / f: b for f, b in zip(files, part_boxes, strict=True)})
    return boxes


# --------------------------------------------------------------------------- dispatcher

LOADERS = {"cub200": load_cub200, "dogs": load_stanford_dogs, "cifar100": load_cifar100,
           "cars": load_stanford_cars}


def load_finegrained(root: str | PathLike[str], name: str, split: str | None = None
                     ) -> ClassSplit:
    """Load dataset ``name`` (one of :data:`FINEGRAINED_DATASETS`) from ``root`` with
    ``split`` (default: the thesis split of that dataset, :data:`DEFAULT_SPLIT`)."""
    if name not in LOADERS:
        raise ValueError(f"name must be one of {list(FINEGRAINED_DATASETS)}, got {name!r}")
    return LOADERS[name](root, DEFAULT_SPLIT[name] if split is None else split)
