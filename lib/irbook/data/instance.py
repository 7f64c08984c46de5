"""Loaders for instance-retrieval benchmarks in their official on-disk layouts.

Each loader returns an :class:`InstanceBenchmark`: database image paths, query image paths with
their boxes, and per-query ground truth as 0-based database indices (REFERENCE_PROTOCOLS,
"Instance retrieval (chapter 2)" and "On-disk layouts").

Layouts read (``root`` is the folder that holds one sub-folder per dataset):

- Revisited Oxford/Paris: ``<root>/<name>/gnd_<name>.pkl`` and ``<root>/<name>/jpg/<im>.jpg``.
  In the released files the query images are listed in ``qimlist`` only: they are not part of
  ``imlist`` (rOxford5k has 4,993 database images = Oxford5k's 5,063 minus its 70 queries).
- Original Oxford5k/Paris6k: the cnnimageretrieval-pytorch pickle ``gnd_<name>.pkl`` (``ok``,
  ``junk``, ``bbx``) or the Oxford VGG ``gt_files/<query>_{query,good,ok,junk}.txt`` files;
  images in ``jpg/`` (Paris's archive nests them in one folder per landmark).
- INRIA Holidays: ``<root>/holidays/jpg/NNNNNN.jpg``; ``NNNNNN // 100`` is the group and the
  image with ``NNNNNN % 100 == 0`` is its query.
- UKBench: ``<root>/ukbench/full/ukbenchNNNNN.jpg``; ``NNNNN // 4`` is the group.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError, require

Box = tuple[float, float, float, float]
Protocol = Literal["revisited", "oxford", "holidays", "ukbench"]

REVISITED_NAMES = ("roxford5k", "rparis6k")
OXFORD_NAMES = ("oxford5k", "paris6k")
INSTANCE_BENCHMARKS = (*REVISITED_NAMES, *OXFORD_NAMES, "holidays", "ukbench")

HOW_TO_GET = {
    "roxford5k": (
        "download the Oxford5k images (https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/) "
        "and gnd_roxford5k.pkl from the revisitop page (http://cmp.felk.cvut.cz/revisitop/); "
        "put the images in <root>/roxford5k/jpg/. Without real data the book writes a "
        "synthetic stand-in with irbook.data.synth.ensure_instance_suite"
    ),
    "rparis6k": (
        "download the Paris6k images (https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/) "
        "and gnd_rparis6k.pkl from the revisitop page (http://cmp.felk.cvut.cz/revisitop/); "
        "put the images in <root>/rparis6k/jpg/. Without real data the book writes a "
        "synthetic stand-in with irbook.data.synth.ensure_instance_suite"
    ),
    "oxford5k": (
        "download oxbuild_images and the ground truth files from "
        "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/ into <root>/oxford5k/jpg/ and "
        "<root>/oxford5k/gt_files/ (or use the cnnimageretrieval-pytorch gnd_oxford5k.pkl)"
    ),
    "paris6k": (
        "download paris_1/paris_2 and the ground truth files from "
        "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/ into <root>/paris6k/jpg/ and "
        "<root>/paris6k/gt_files/ (or use the cnnimageretrieval-pytorch gnd_paris6k.pkl)"
    ),
    "holidays": (
        "download jpg1.tar.gz and jpg2.tar.gz of INRIA Holidays "
        "(https://lear.inrialpes.fr/people/jegou/data.php) and extract them to "
        "<root>/holidays/jpg/"
    ),
    "ukbench": (
        "download the UKBench (Nister & Stewenius) recognition benchmark images "
        "(https://archive.org/details/ukbench) and put them in <root>/ukbench/full/"
    ),
}


@dataclass
class InstanceBenchmark:
    """One instance-retrieval benchmark, ready for evaluation.

    ``gnd[i]`` holds 0-based database indices for query ``i``: keys ``easy``/``hard``/``junk``
    (revisited), ``ok``/``junk`` (oxford, holidays) or ``ok`` (ukbench). For holidays and
    ukbench the queries are database images: ``query_db_index`` gives their database index and
    ``db_groups`` the group of every database image.
    """

    name: str
    protocol: Protocol
    db_paths: list[Path]
    query_paths: list[Path]
    query_boxes: list[Box | None]
    gnd: list[dict[str, np.ndarray]]
    query_db_index: np.ndarray | None = None
    db_groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_queries = len(self.query_paths)
        if len(self.query_boxes) != n_queries or len(self.gnd) != n_queries:
            raise ValueError(
                f"{self.name}: query_paths ({n_queries}), query_boxes ({len(self.query_boxes)}) "
                f"and gnd ({len(self.gnd)}) must have the same length"
            )

    @property
    def n_db(self) -> int:
        return len(self.db_paths)

    @property
    def n_queries(self) -> int:
        return len(self.query_paths)


# --------------------------------------------------------------------------- helpers


def _index_array(values: object, where: Path, what: str, n_db: int) -> np.ndarray:
    """Convert a list/array of database indices to a sorted-as-given int64 array, checking range."""
    try:
        arr = np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DatasetCorruptError(where, f"{what} is not a list of integer indices") from exc
    if arr.size and (arr.min() < 0 or arr.max() >= n_db):
        raise DatasetCorruptError(
            where, f"{what} has indices outside [0, {n_db}) (min {arr.min()}, max {arr.max()})"
        )
    return arr


def _box(values: object, where: Path, what: str) -> Box:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DatasetCorruptError(where, f"{what} is not 4 numbers") from exc
    if arr.size != 4 or not np.all(np.isfinite(arr)) or arr[2] <= arr[0] or arr[3] <= arr[1]:
        raise DatasetCorruptError(where, f"{what} must be [x1, y1, x2, y2] with x2>x1, y2>y1")
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


def _load_gnd_pickle(path: Path, gnd_keys: tuple[str, ...]) -> dict:
    """Read a ``gnd_<name>.pkl`` and check it has imlist, qimlist and gnd with ``gnd_keys``."""
    try:
        with open(path, "rb") as f:
            cfg = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError, OSError) as exc:
        raise DatasetCorruptError(path, f"cannot be unpickled ({exc!r})") from exc
    if not isinstance(cfg, dict):
        raise DatasetCorruptError(path, f"expected a dict, found {type(cfg).__name__}")
    missing = [k for k in ("imlist", "qimlist", "gnd") if k not in cfg]
    if missing:
        raise DatasetCorruptError(path, f"missing keys {missing}; found {sorted(cfg)}")
    if len(cfg["gnd"]) != len(cfg["qimlist"]):
        raise DatasetCorruptError(
            path, f"{len(cfg['gnd'])} gnd entries for {len(cfg['qimlist'])} queries"
        )
    for i, entry in enumerate(cfg["gnd"]):
        if not isinstance(entry, dict):
            raise DatasetCorruptError(path, f"gnd[{i}] is not a dict")
        absent = [k for k in (*gnd_keys, "bbx") if k not in entry]
        if absent:
            raise DatasetCorruptError(path, f"gnd[{i}] lacks keys {absent}")
    return cfg


def _image_index(jpg_dir: Path) -> dict[str, Path]:
    """Map image stem -> path for every ``*.jpg`` below ``jpg_dir`` (nested folders allowed)."""
    index: dict[str, Path] = {}
    for p in sorted(jpg_dir.rglob("*.jpg")):
        index.setdefault(p.stem, p)
    return index


def _resolve(names: list[str], index: dict[str, Path], where: Path, what: str) -> list[Path]:
    missing = [n for n in names if n not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetCorruptError(
            where, f"{len(missing)} {what} listed but missing from the image folder: {shown}"
        )
    return [index[n] for n in names]


def _from_gnd_pickle(
    folder: Path, name: str, protocol: Protocol, gnd_keys: tuple[str, ...]
) -> InstanceBenchmark:
    gnd_path = folder / f"gnd_{name}.pkl"
    jpg_dir = require(folder / "jpg", name, HOW_TO_GET[name])
    cfg = _load_gnd_pickle(gnd_path, gnd_keys)
    imlist = [str(n) for n in cfg["imlist"]]
    qimlist = [str(n) for n in cfg["qimlist"]]
    index = _image_index(jpg_dir)
    db_paths = _resolve(imlist, index, gnd_path, "database images")
    query_paths = _resolve(qimlist, index, gnd_path, "query images")
    gnd, boxes = [], []
    for i, entry in enumerate(cfg["gnd"]):
        where = f"gnd[{i}]"
        gnd.append(
            {k: _index_array(entry[k], gnd_path, f"{where}['{k}']", len(imlist)) for k in gnd_keys}
        )
        bbx = entry["bbx"]
        boxes.append(None if bbx is None else _box(bbx, gnd_path, f"{where}['bbx']"))
    return InstanceBenchmark(name, protocol, db_paths, query_paths, boxes, gnd)


# --------------------------------------------------------------------------- loaders


def load_revisited(root: str | PathLike[str], name: str) -> InstanceBenchmark:
    """Revisited Oxford/Paris (``roxford5k``, ``rparis6k``) from ``gnd_<name>.pkl`` + ``jpg/``.

    Ground truth per query: ``easy``, ``hard``, ``junk`` (0-based indices into ``imlist``) and the
    query box ``bbx``; queries are cropped to it (revisited protocol).
    """
    if name not in REVISITED_NAMES:
        raise ValueError(f"name must be one of {REVISITED_NAMES}, got {name!r}")
    folder = require(Path(root) / name, name, HOW_TO_GET[name])
    require(folder / f"gnd_{name}.pkl", name, HOW_TO_GET[name])
    return _from_gnd_pickle(folder, name, "revisited", ("easy", "hard", "junk"))


_GT_QUERY = re.compile(r"^(?P<landmark>.+)_(?P<number>\d+)_query\.txt$")


def _read_list(path: Path) -> list[str]:
    if not path.exists():
        raise DatasetCorruptError(path, "ground-truth file is missing")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _parse_query_line(path: Path) -> tuple[str, Box]:
    lines = _read_list(path)
    parts = lines[0].split() if lines else []
    if len(parts) != 5:
        raise DatasetCorruptError(path, "expected one line '<image> x1 y1 x2 y2'")
    image = parts[0].removeprefix("oxc1_")  # the Oxford files prefix query names with oxc1_
    return image, _box(parts[1:], path, "query box")


def _from_gt_files(folder: Path, name: str) -> InstanceBenchmark:
    gt_dir = folder / "gt_files"
    jpg_dir = require(folder / "jpg", name, HOW_TO_GET[name])
    stems = []
    for p in gt_dir.glob("*_query.txt"):
        match = _GT_QUERY.match(p.name)
        if match:
            stems.append((match["landmark"], int(match["number"]), p.name[: -len("_query.txt")]))
    if not stems:
        raise DatasetCorruptError(gt_dir, "no <landmark>_<n>_query.txt files")
    index = _image_index(jpg_dir)
    imlist = sorted(index)
    position = {n: i for i, n in enumerate(imlist)}
    db_paths = [index[n] for n in imlist]
    query_paths, boxes, gnd = [], [], []
    for _, _, stem in sorted(stems):
        qfile = gt_dir / f"{stem}_query.txt"
        image, box = _parse_query_line(qfile)
        query_paths.extend(_resolve([image], index, qfile, "query image"))
        boxes.append(box)
        lists = {}
        for kind in ("good", "ok", "junk"):
            path = gt_dir / f"{stem}_{kind}.txt"
            paths = _resolve(_read_list(path), index, path, "images")
            lists[kind] = [position[p.stem] for p in paths]
        ok = np.array(sorted(set(lists["good"]) | set(lists["ok"])), dtype=np.int64)
        gnd.append({"ok": ok, "junk": np.array(sorted(set(lists["junk"])), dtype=np.int64)})
    return InstanceBenchmark(name, "oxford", db_paths, query_paths, boxes, gnd)


def load_oxford_original(root: str | PathLike[str], name: str) -> InstanceBenchmark:
    """Original Oxford5k/Paris6k: ``ok`` (= good + ok) and ``junk`` per query, with boxes.

    Reads ``gnd_<name>.pkl`` (cnnimageretrieval-pytorch) when present, otherwise the VGG
    ``gt_files`` text layout, where the database is every ``jpg/**/*.jpg`` sorted by name.
    """
    if name not in OXFORD_NAMES:
        raise ValueError(f"name must be one of {OXFORD_NAMES}, got {name!r}")
    folder = require(Path(root) / name, name, HOW_TO_GET[name])
    if (folder / f"gnd_{name}.pkl").exists():
        return _from_gnd_pickle(folder, name, "oxford", ("ok", "junk"))
    if (folder / "gt_files").is_dir():
        return _from_gt_files(folder, name)
    raise DatasetNotFoundError(
        f"{folder / f'gnd_{name}.pkl'} or {folder / 'gt_files'}", name, HOW_TO_GET[name]
    )


def _numbered_images(folder: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    found = []
    for p in folder.iterdir():
        match = pattern.match(p.name)
        if match:
            found.append((int(match["number"]), p))
    return sorted(found)


_HOLIDAYS_NAME = re.compile(r"^(?P<number>\d{6})\.jpg$", re.IGNORECASE)
_UKBENCH_NAME = re.compile(r"^ukbench(?P<number>\d{5})\.jpg$", re.IGNORECASE)


def load_holidays(root: str | PathLike[str]) -> InstanceBenchmark:
    """INRIA Holidays: every image is in the database; each group's ``NNNN00.jpg`` is a query.

    ``ok`` = the other images of the query's group; ``junk`` = the query itself, so that it is
    removed from its own ranking (REFERENCE_PROTOCOLS, Holidays).
    """
    jpg_dir = require(Path(root) / "holidays" / "jpg", "holidays", HOW_TO_GET["holidays"])
    images = _numbered_images(jpg_dir, _HOLIDAYS_NAME)
    if not images:
        raise DatasetCorruptError(jpg_dir, "no NNNNNN.jpg images")
    numbers = np.array([n for n, _ in images], dtype=np.int64)
    groups = numbers // 100
    query_idx = np.flatnonzero(numbers % 100 == 0)
    without_query = sorted(set(groups.tolist()) - set(groups[query_idx].tolist()))
    if without_query:
        raise DatasetCorruptError(
            jpg_dir, f"groups without a query image (NNNN00.jpg): {without_query[:5]}"
        )
    gnd = []
    for q in query_idx:
        members = np.flatnonzero(groups == groups[q])
        gnd.append({"ok": members[members != q], "junk": np.array([q], dtype=np.int64)})
    db_paths = [p for _, p in images]
    return InstanceBenchmark(
        "holidays", "holidays", db_paths, [db_paths[q] for q in query_idx],
        [None] * len(query_idx), gnd, query_db_index=query_idx, db_groups=groups,
    )


def load_ukbench(root: str | PathLike[str]) -> InstanceBenchmark:
    """UKBench: groups of 4 images (``index // 4``); every image is a query and ``ok`` is its
    group of 4, itself included (N-S score protocol)."""
    folder = require(Path(root) / "ukbench" / "full", "ukbench", HOW_TO_GET["ukbench"])
    images = _numbered_images(folder, _UKBENCH_NAME)
    if not images:
        raise DatasetCorruptError(folder, "no ukbenchNNNNN.jpg images")
    numbers = np.array([n for n, _ in images], dtype=np.int64)
    groups = numbers // 4
    _, counts = np.unique(groups, return_counts=True)
    if np.any(counts != 4):
        bad = np.unique(groups)[counts != 4][:5].tolist()
        raise DatasetCorruptError(folder, f"groups without exactly 4 images: {bad}")
    db_paths = [p for _, p in images]
    gnd = [{"ok": np.flatnonzero(groups == g)} for g in groups]
    return InstanceBenchmark(
        "ukbench", "ukbench", db_paths, list(db_paths), [None] * len(db_paths), gnd,
        query_db_index=np.arange(len(db_paths), dtype=np.int64), db_groups=groups,
    )


def load_instance_benchmark(root: str | PathLike[str], name: str) -> InstanceBenchmark:
    """Load any of :data:`INSTANCE_BENCHMARKS` from ``root``."""
    if name in REVISITED_NAMES:
        return load_revisited(root, name)
    if name in OXFORD_NAMES:
        return load_oxford_original(root, name)
    if name == "holidays":
        return load_holidays(root)
    if name == "ukbench":
        return load_ukbench(root)
    raise ValueError(f"name must be one of {INSTANCE_BENCHMARKS}, got {name!r}")
