"""Loaders for the image-text datasets of chapters 3 and 4, read from the layouts the reference
code reads (REFERENCE_PROTOCOLS, "Cross-modal hashing" and "Cross-modal retrieval").

Tagged image sets (chapter 3, DCMH/SSAH protocol) give a :class:`TaggedPairs`:

- MIRFlickr-25K: ``MIRFLICKR-25K/FLICKR-25K.mat``, the MATLAB v7.3 (HDF5) file released with
  DCMH, read with h5py. MATLAB stores arrays column-major, so h5py sees every axis reversed:
  ``images`` (or ``IAll``) is ``224 x 224 x 3 x N`` in MATLAB (height, width, channel, image)
  and ``(N, 3, W, H)`` through h5py, turned here into ``(N, H, W, 3)`` -- the
  ``transpose(0, 3, 2, 1)`` of the DCMH TensorFlow and SSAH loaders. An ``N x H x W x 3``
  MATLAB array (h5py ``(3, W, H, N)``) is accepted as well; which axis holds the images is
  found from the number of label rows. ``LAll`` is ``N x 24`` in MATLAB (h5py ``(24, N)``),
  ``YAll`` ``N x 1386`` (h5py ``(1386, N)``).
- NUS-WIDE: the 21-concept set of the DCMH release, one variable per file, in ``NUS-WIDE/``:
  ``nus-wide-tc21-iall.mat`` (``IAll``, v7.3/HDF5, the image layout above),
  ``nus-wide-tc21-lall.mat`` (``LAll``, ``N x 21``) and ``nus-wide-tc21-yall.mat`` (``YAll``,
  ``N x 1000`` bag of words), the last two MATLAB v5 files read with ``scipy.io.loadmat``
  (this is how the public PyTorch ports of DCMH read them; the ``XAll`` feature file is not
  needed). Any of the three may also be a v7.3 file: every ``.mat`` is opened with h5py when
  it is HDF5 and with scipy otherwise, and arrays are always used in MATLAB's orientation.
  The files carry no concept names; columns are assumed to follow NUS-WIDE's alphabetical
  concept list restricted to the 21 most frequent concepts (:data:`NUSWIDE_LABELS`).

The query / retrieval / training split is drawn by :func:`split_pairs`, as in the DCMH MATLAB
demo and SSAH.

Captioned image sets (chapter 4) give a :class:`CaptionedImages`:

- Flickr8K, Flickr30K, MS-COCO with Karpathy's splits: ``dataset_<name>.json``
  (``images[].filename/imgid/split/sentids/sentences[].tokens/raw``, COCO also ``filepath``)
  beside the image folder: ``Flickr8K/Flicker8k_Dataset/`` (the folder name of the official
  Flickr8k zip, misspelling included), ``Flickr30K/flickr30k-images/``,
  ``COCO/<filepath>/<filename>`` (``train2014/``, ``val2014/``). Split ``restval`` is
  training data (VSE++); a sentence without ``tokens`` is tokenized from ``raw``.
- CUHK-PEDES: ``CUHK-PEDES/reid_raw.json`` (a list of ``{split, file_path, id, captions}``)
  and ``CUHK-PEDES/imgs/<file_path>``; identities are renumbered ``0..n_ids-1`` in increasing
  order of the original ``id``.

A missing file raises :class:`~irbook.data.errors.DatasetNotFoundError` (path, dataset, how to
get it); a file that cannot be read or contradicts itself raises
:class:`~irbook.data.errors.DatasetCorruptError` naming the path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError, require
from irbook.data.text import tokenize

TAGGED_DATASETS = ("mirflickr", "nuswide")
KARPATHY_DATASETS = ("flickr8k", "flickr30k", "coco")
SPLITS = ("train", "val", "test")

FOLDERS = {"mirflickr": "MIRFLICKR-25K", "nuswide": "NUS-WIDE", "flickr8k": "Flickr8K",
           "flickr30k": "Flickr30K", "coco": "COCO", "pedes": "CUHK-PEDES"}
MIRFLICKR_FILE = "FLICKR-25K.mat"
NUSWIDE_FILES = {"IAll": "nus-wide-tc21-iall.mat", "LAll": "nus-wide-tc21-lall.mat",
                 "YAll": "nus-wide-tc21-yall.mat"}
KARPATHY_JSON = {name: f"dataset_{name}.json" for name in KARPATHY_DATASETS}
KARPATHY_IMAGES = {"flickr8k": "Flicker8k_Dataset", "flickr30k": "flickr30k-images",
                   "coco": ""}  # COCO: <filepath>/<filename>
PEDES_JSON, PEDES_IMAGES = "reid_raw.json", "imgs"

LAYOUTS: dict[str, str] = {
    "mirflickr": "MIRFLICKR-25K/FLICKR-25K.mat (v7.3: images|IAll, LAll, YAll)",
    "nuswide": ", ".join(f"NUS-WIDE/{f} ({v})" for v, f in NUSWIDE_FILES.items()),
    "flickr8k": "Flickr8K/dataset_flickr8k.json, Flickr8K/Flicker8k_Dataset/<filename>",
    "flickr30k": "Flickr30K/dataset_flickr30k.json, Flickr30K/flickr30k-images/<filename>",
    "coco": "COCO/dataset_coco.json, COCO/<filepath>/<filename> (train2014/, val2014/)",
    "pedes": "CUHK-PEDES/reid_raw.json, CUHK-PEDES/imgs/<file_path>",
}
DISPLAY_NAMES = {"mirflickr": "MIRFlickr-25K", "nuswide": "NUS-WIDE", "flickr8k": "Flickr8K",
                 "flickr30k": "Flickr30K", "coco": "MS-COCO", "pedes": "CUHK-PEDES"}
_SYNTH = ("Without real data the book writes a synthetic stand-in with "
          "irbook.data.synth.ensure_crossmodal")
_KARPATHY = "Karpathy's split file (dataset_<name>.json, from the neuraltalk 'caption_datasets'"
HOW_TO_GET = {
    "mirflickr": ("get FLICKR-25K.mat from the DCMH release (github.com/jiangqy/DCMH-CVPR2017, "
                  "data links in its readme) and put it at <root>/" + LAYOUTS["mirflickr"]
                  + ". " + _SYNTH),
    "nuswide": ("get the NUS-WIDE top-21-concept files of the DCMH release "
                "(github.com/jiangqy/DCMH-CVPR2017) and put them at <root>/"
                + LAYOUTS["nuswide"] + ". " + _SYNTH),
    "flickr8k": (f"{_KARPATHY} zip) and the Flickr8k_Dataset zip, arranged as <root>/"
                 + LAYOUTS["flickr8k"] + ". " + _SYNTH),
    "flickr30k": (f"{_KARPATHY} zip) and the Flickr30k images (shannon.cs.illinois.edu/"
                  "DenotationGraph), arranged as <root>/" + LAYOUTS["flickr30k"] + ". "
                  + _SYNTH),
    "coco": (f"{_KARPATHY} zip) and the MS-COCO train2014/val2014 images (cocodataset.org), "
             "arranged as <root>/" + LAYOUTS["coco"] + ". " + _SYNTH),
    "pedes": ("request CUHK-PEDES from its authors (github.com/ShuangLI59/Person-Search-with-"
              "Natural-Language-Description) and arrange it as <root>/" + LAYOUTS["pedes"]
              + ". " + _SYNTH),
}

MIRFLICKR_LABELS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water",
)
"""The 24 potential labels of MIRFlickr-25K in alphabetical order, the column order of the
DCMH ``LAll`` (the file itself names no labels)."""
NUSWIDE_LABELS = (
    "animal", "beach", "buildings", "clouds", "flowers", "grass", "lake", "mountain", "ocean",
    "person", "plants", "reflection", "road", "rocks", "sky", "snow", "sunset", "tree",
    "vehicle", "water", "window",
)
"""The 21 most frequent NUS-WIDE concepts in the alphabetical order of its concept list."""


# --------------------------------------------------------------------------- tagged pairs


@dataclass(frozen=True, eq=False)
class TaggedPairs:
    """Images with a tag bag-of-words and multi-hot labels, and the DCMH query / retrieval /
    training split (indices into the ``N`` pairs)."""

    name: str
    root: Path
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    tags: np.ndarray  # (N, V) float32
    labels: np.ndarray  # (N, C) float32 in {0, 1}
    query: np.ndarray
    retrieval: np.ndarray
    train: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {self.images.shape} "
                             f"{self.images.dtype}")
        if self.tags.shape[0] != n or self.labels.shape[0] != n:
            raise ValueError(f"tags {self.tags.shape} and labels {self.labels.shape} must have "
                             f"{n} rows")
        if len(self.label_names) != self.labels.shape[1]:
            raise ValueError(f"{len(self.label_names)} label names for "
                             f"{self.labels.shape[1]} labels")

    @property
    def n_pairs(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_labels(self) -> int:
        return int(self.labels.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.tags.shape[1])


def split_pairs(n: int, n_query: int, n_train: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query, retrieval, train)`` int64 indices: a seeded random permutation of ``0..n-1``
    whose first ``n_query`` entries are the queries, the rest the retrieval set (the database),
    and the first ``n_train`` of the retrieval set, in permuted order, the training set (DCMH
    MATLAB demo, SSAH). numpy's generator replaces MATLAB's ``randperm``, so the membership
    differs from the authors' runs; the sizes are theirs."""
    for arg, value in (("n", n), ("n_query", n_query), ("n_train", n_train), ("seed", seed)):
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{arg} must be a non-negative integer, got {value!r}")
    if n_query < 1 or n_query >= n:
        raise ValueError(f"n_query must be in 1..{n - 1} for {n} pairs, got {n_query}")
    if n_train < 1 or n_train > n - n_query:
        raise ValueError(f"n_train must be in 1..{n - n_query} (the retrieval set) for {n} "
                         f"pairs and {n_query} queries, got {n_train}")
    perm = np.random.default_rng(int(seed)).permutation(int(n)).astype(np.int64)
    retrieval = perm[n_query:]
    return perm[:n_query], retrieval, retrieval[:n_train].copy()


def _read_mat(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The first of ``names`` found in ``path`` (``{name: array}``), in MATLAB's orientation:
    HDF5 (v7.3) files through h5py with all axes reversed back, older files through scipy."""
    import h5py
    import scipy.io

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                for name in names:
                    if name in f and isinstance(f[name], h5py.Dataset):
                        return {name: np.asarray(f[name][()]).transpose()}
                found = sorted(f.keys())
        else:
            data = scipy.io.loadmat(path, variable_names=list(names))
            for name in names:
                if name in data:
                    return {name: np.asarray(data[name])}
            found = sorted(k for k in scipy.io.whosmat(path))
    except Exception as exc:  # noqa: BLE001 - whatever h5py/scipy raise, the file is damaged
        raise DatasetCorruptError(path, f"not a readable MATLAB file ({type(exc).__name__}: "
                                  f"{exc})") from exc
    raise DatasetCorruptError(path, f"has no variable {' or '.join(names)} (found {found})")


def _images_nhwc(array: np.ndarray, n: int, path: Path, name: str) -> np.ndarray:
    """``H x W x 3 x N`` (DCMH) or ``N x H x W x 3`` MATLAB image arrays as ``(N, H, W, 3)``."""
    if array.ndim == 4 and array.shape[3] == n and array.shape[2] == 3:
        array = array.transpose(3, 0, 1, 2)
    elif not (array.ndim == 4 and array.shape[0] == n and array.shape[3] == 3):
        raise DatasetCorruptError(path, f"{name} has MATLAB shape {array.shape}; expected "
                                  f"H x W x 3 x {n} or {n} x H x W x 3 ({n} label rows)")
    if array.dtype != np.uint8:
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise DatasetCorruptError(path, f"{name} values lie outside 0..255")
        array = array.round()
    return np.ascontiguousarray(array, dtype=np.uint8)


def _matrix(array: np.ndarray, n: int, path: Path, name: str, binary: bool) -> np.ndarray:
    """A MATLAB ``N x D`` matrix as float32, checked against ``n`` rows (and {0, 1})."""
    if array.ndim != 2 or array.shape[0] != n:
        raise DatasetCorruptError(path, f"{name} has MATLAB shape {array.shape}; expected {n} "
                                  "rows, one per image")
    out = np.asarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DatasetCorruptError(path, f"{name} holds non-finite values")
    if binary and not np.isin(out, (0.0, 1.0)).all():
        raise DatasetCorruptError(path, f"{name} must hold only 0 and 1")
    return out


def _names(official: tuple[str, ...], count: int) -> tuple[str, ...]:
    return official if count == len(official) else tuple(f"label_{k}" for k in range(count))


def load_mirflickr(root: str | PathLike[str], *, n_query: int = 2000, n_train: int = 10000,
                   seed: int = 0) -> TaggedPairs:
    """MIRFlickr-25K from ``<root>/MIRFLICKR-25K/FLICKR-25K.mat`` (module docstring); the
    split of :func:`split_pairs` (DCMH: 2,000 queries, 10,000 training pairs)."""
    folder = Path(root) / FOLDERS["mirflickr"]
    path = require(folder / MIRFLICKR_FILE, DISPLAY_NAMES["mirflickr"], HOW_TO_GET["mirflickr"])
    labels_raw = _read_mat(path, ["LAll"])["LAll"]
    if labels_raw.ndim != 2:
        raise DatasetCorruptError(path, f"LAll has MATLAB shape {labels_raw.shape}; expected "
                                  "N x 24")
    n = labels_raw.shape[0]
    name, array = next(iter(_read_mat(path, ["images", "IAll"]).items()))
    images = _images_nhwc(array, n, path, name)
    labels = _matrix(labels_raw, n, path, "LAll", binary=True)
    tags = _matrix(_read_mat(path, ["YAll"])["YAll"], n, path, "YAll", binary=False)
    query, retrieval, train = split_pairs(n, n_query, n_train, seed)
    return TaggedPairs("mirflickr", folder, images, tags, labels, query, retrieval, train,
                       _names(MIRFLICKR_LABELS, labels.shape[1]))


def load_nuswide(root: str | PathLike[str], *, n_query: int = 2100, n_train: int = 10500,
                 seed: int = 0) -> TaggedPairs:
    """NUS-WIDE (21 concepts, 1000-d tags) from the three DCMH files in ``<root>/NUS-WIDE/``
    (module docstring); the split of :func:`split_pairs` (2,100 queries, 10,500 training)."""
    folder = Path(root) / FOLDERS["nuswide"]
    paths = {var: require(folder / f, DISPLAY_NAMES["nuswide"], HOW_TO_GET["nuswide"])
             for var, f in NUSWIDE_FILES.items()}
    labels_raw = _read_mat(paths["LAll"], ["LAll"])["LAll"]
    if labels_raw.ndim != 2:
        raise DatasetCorruptError(paths["LAll"], f"LAll has MATLAB shape {labels_raw.shape}; "
                                  "expected N x 21")
    n = labels_raw.shape[0]
    labels = _matrix(labels_raw, n, paths["LAll"], "LAll", binary=True)
    tags = _matrix(_read_mat(paths["YAll"], ["YAll"])["YAll"], n, paths["YAll"], "YAll",
                   binary=False)
    images = _images_nhwc(_read_mat(paths["IAll"], ["IAll"])["IAll"], n, paths["IAll"], "IAll")
    query, retrieval, train = split_pairs(n, n_query, n_train, seed)
    return TaggedPairs("nuswide", folder, images, tags, labels, query, retrieval, train,
                       _names(NUSWIDE_LABELS, labels.shape[1]))


# --------------------------------------------------------------------------- captioned images


@dataclass(frozen=True, eq=False)
class CaptionedImages:
    """Images with their captions (tokens) and an instance label per image: Karpathy sets use
    the image's own index (each image is its own instance), CUHK-PEDES the identity."""

    name: str
    root: Path
    image_paths: tuple[Path, ...]
    labels: np.ndarray  # (n_images,) int64
    splits: np.ndarray  # (n_images,) str: train | val | test
    captions: tuple[tuple[str, ...], ...]
    caption_image: np.ndarray  # (n_captions,) int64

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        if self.labels.shape != (n,) or self.splits.shape != (n,):
            raise ValueError(f"labels {self.labels.shape} and splits {self.splits.shape} must "
                             f"have shape ({n},)")
        if self.caption_image.shape != (len(self.captions),):
            raise ValueError(f"caption_image {self.caption_image.shape} must have shape "
                             f"({len(self.captions)},)")
        if self.caption_image.size and (self.caption_image.min() < 0
                                        or self.caption_image.max() >= n):
            raise ValueError(f"caption_image must index the {n} images")

    @property
    def n_images(self) -> int:
        return len(self.image_paths)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    @property
    def caption_labels(self) -> np.ndarray:
        """The instance label of every caption's image."""
        return self.labels[self.caption_image]

    def subset(self, split: str) -> CaptionedImages:
        """The images of ``split`` (train, val, test) in their order, with their captions;
        image indices restart at 0, labels are kept."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        keep = np.flatnonzero(self.splits == split)
        new_index = np.full(self.n_images, -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        caps = np.flatnonzero(new_index[self.caption_image] >= 0)
        return CaptionedImages(
            self.name, self.root, tuple(self.image_paths[i] for i in keep), self.labels[keep],
            self.splits[keep], tuple(self.captions[j] for j in caps),
            new_index[self.caption_image[caps]])


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetCorruptError(path, f"not readable JSON ({exc})") from exc


def _split(value: object, path: Path, where: str) -> str:
    split = {"restval": "train"}.get(str(value), str(value))
    if split not in SPLITS:
        raise DatasetCorruptError(path, f"{where} has split {value!r}; expected one of "
                                  "train, val, test, restval")
    return split


def _check_files(paths: Sequence[Path], source: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise DatasetCorruptError(source, f"refers to image '{p}', which is not there")


def _karpathy_tokens(sentence: dict) -> tuple[str, ...]:
    tokens = sentence.get("tokens")
    if tokens:
        return tuple(str(t).lower() for t in tokens)
    return tuple(tokenize(str(sentence["raw"])))


def load_karpathy(root: str | PathLike[str], name: str) -> CaptionedImages:
    """Flickr8K, Flickr30K or MS-COCO (``name``) with Karpathy's splits (module docstring):
    ``restval`` -> train; labels are image indices; captions in file order."""
    if name not in KARPATHY_DATASETS:
        raise ValueError(f"name must be one of {list(KARPATHY_DATASETS)}, got {name!r}")
    folder = Path(root) / FOLDERS[name]
    path = require(folder / KARPATHY_JSON[name], DISPLAY_NAMES[name], HOW_TO_GET[name])
    if name != "coco":
        require(folder / KARPATHY_IMAGES[name], DISPLAY_NAMES[name], HOW_TO_GET[name])
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetCorruptError(path, "expected an object with an 'images' list")
    paths, splits, captions, caption_image = [], [], [], []
    try:
        for i, entry in enumerate(data["images"]):
            sub = entry["filepath"] if name == "coco" else KARPATHY_IMAGES[name]
            paths.append(folder / sub / entry["filename"])
            splits.append(_split(entry["split"], path, f"images[{i}]"))
            for sentence in entry["sentences"]:
                captions.append(_karpathy_tokens(sentence))
                caption_image.append(i)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DatasetCorruptError(path, f"an image entry lacks a field or has the wrong type "
                                  f"({type(exc).__name__}: {exc})") from exc
    _check_files(paths, path)
    n = len(paths)
    return CaptionedImages(name, folder, tuple(paths), np.arange(n, dtype=np.int64),
                           np.asarray(splits, dtype="<U5"), tuple(captions),
                           np.asarray(caption_image, dtype=np.int64))


def load_pedes(root: str | PathLike[str]) -> CaptionedImages:
    """CUHK-PEDES from ``reid_raw.json`` and ``imgs/`` (module docstring): labels are the
    identities renumbered 0..n_ids-1 by increasing original id; ``processed_tokens`` are used
    when present, else the captions are tokenized."""
    folder = Path(root) / FOLDERS["pedes"]
    path = require(folder / PEDES_JSON, DISPLAY_NAMES["pedes"], HOW_TO_GET["pedes"])
    require(folder / PEDES_IMAGES, DISPLAY_NAMES["pedes"], HOW_TO_GET["pedes"])
    data = _read_json(path)
    if not isinstance(data, list):
        raise DatasetCorruptError(path, "expected a list of {split, file_path, id, captions}")
    paths, splits, ids, captions, caption_image = [], [], [], [], []
    try:
        for i, entry in enumerate(data):
            paths.append(folder / PEDES_IMAGES / entry["file_path"])
            splits.append(_split(entry["split"], path, f"entry {i}"))
            ids.append(int(entry["id"]))
            processed = entry.get("processed_tokens")
            raw = entry["captions"]
            if not isinstance(raw, list):
                raise TypeError(f"entry {i}: captions must be a list")
            use = None
            if isinstance(processed, list) and len(processed) == len(raw):
                use = processed
            for k, caption in enumerate(raw):
                tokens = use[k] if use is not None else tokenize(str(caption))
                captions.append(tuple(str(t).lower() for t in tokens))
                caption_image.append(i)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetCorruptError(path, f"an entry lacks a field or has the wrong type "
                                  f"({type(exc).__name__}: {exc})") from exc
    _check_files(paths, path)
    _, labels = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
    return CaptionedImages("pedes", folder, tuple(paths), labels.astype(np.int64),
                           np.asarray(splits, dtype="<U5"), tuple(captions),
                           np.asarray(caption_image, dtype=np.int64))


def load_image_array(paths: Sequence[str | PathLike[str]], size: int) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 RGB: every image resized to ``size x size`` (bilinear,
    aspect ratio not kept)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for k, p in enumerate(paths):
        p = Path(p)
        if not p.is_file():
            raise DatasetNotFoundError(p, "image", "check that the dataset folder is complete")
        try:
            with Image.open(p) as img:
                rgb = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetCorruptError(p, f"not a readable image ({exc})") from exc
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        out[k] = np.asarray(rgb, dtype=np.uint8)
    return out


def coco_1k_folds(n_test: int, n_folds: int = 5) -> list[np.ndarray]:
    """Image indices of the COCO 1K protocol (VSE++): the test images in order, cut into
    ``n_folds`` consecutive folds of ``n_test // n_folds`` images (a remainder is left out, as
    VSE++ uses the first 5 x 1,000 of the 5K test images)."""
    if not isinstance(n_folds, int) or n_folds < 1:
        raise ValueError(f"n_folds must be a positive integer, got {n_folds!r}")
    if not isinstance(n_test, int | np.integer) or n_test < n_folds:
        raise ValueError(f"n_test must be an integer >= n_folds ({n_folds}), got {n_test!r}")
    size = int(n_test) // n_folds
    return [np.arange(k * size, (k + 1) * size, dtype=np.int64) for k in range(n_folds)]
