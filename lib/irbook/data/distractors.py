"""Distractor images added to a database: the revisitop 1M set (R1M) and its "+100k" prefix.

Layout read (``root`` is the folder that holds ``revisitop1m/``, revisitop's
``<data_root>/datasets``, the same root as the Oxford/Paris loaders of
:mod:`irbook.data.instance`)::

    <root>/revisitop1m/revisitop1m.txt   one image path per line, relative to jpg/
    <root>/revisitop1m/jpg/<path>        the images

An entry without an extension gets ``.jpg`` appended (revisitop's ``config_imname`` does the
same); blank lines are ignored; the order of the list is kept.

The thesis's "+100k" setting adds Flickr100k (Philbin et al.) to Oxford5k/Paris6k. The book adds
the first ``n`` = 100,000 images of R1M instead (:data:`PLUS_100K`), a different set of web photos
without the landmarks, and records this as a protocol deviation. On synthetic data the distractor
set is scaled down with the benchmarks (:func:`irbook.data.synth.sfm.write_distractors` writes
the same layout), so "+100k" there means "+ every synthetic distractor".
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path, PurePosixPath

import numpy as np

from irbook.data.errors import DatasetCorruptError, require

DISTRACTOR_NAME = "revisitop1m"
LIST_NAME = f"{DISTRACTOR_NAME}.txt"
PLUS_100K = 100_000
"""Distractors of the thesis's "+100k" columns (Flickr100k there; the first 100k of R1M here)."""
HOW_TO_GET = (
    "download revisitop1m.1.tar.gz ... revisitop1m.100.tar.gz from "
    "http://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg/ and extract them to "
    "<root>/revisitop1m/jpg/, and revisitop1m.txt from "
    "http://ptak.felk.cvut.cz/revisitop/revisitop1m/ into <root>/revisitop1m/ (revisitop's "
    "python/download.py download_distractors does both; the first 10 archives suffice for "
    "+100k). Without real data the book writes a synthetic stand-in with "
    "irbook.data.synth.sfm.write_distractors"
)


def _entry_path(entry: str, jpg_dir: Path, where: Path, line: int) -> Path:
    rel = PurePosixPath(entry.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise DatasetCorruptError(where, f"line {line}: '{entry}' is not a path inside jpg/")
    if not rel.suffix:
        rel = rel.with_name(rel.name + ".jpg")
    return jpg_dir.joinpath(*rel.parts)


def read_distractor_list(list_path: str | PathLike[str], jpg_dir: str | PathLike[str],
                         n: int | None = None) -> list[Path]:
    """Paths of the first ``n`` entries (all when None) of ``list_path``, below ``jpg_dir``,
    without checking that the files exist."""
    list_path, jpg_dir = Path(list_path), Path(jpg_dir)
    paths: list[Path] = []
    with open(list_path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            entry = raw.strip()
            if entry:
                paths.append(_entry_path(entry, jpg_dir, list_path, line_no))
                if n is not None and len(paths) == n:
                    break
    return paths


def _check_n(n: object) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer or None (all distractors), got {n!r}")
    return int(n)


def load_distractors(root: str | PathLike[str], n: int | None = None) -> list[Path]:
    """The first ``n`` distractor image paths of ``<root>/revisitop1m`` (all when None).

    Missing folder or list raises DatasetNotFoundError with :data:`HOW_TO_GET`; a list with
    fewer than ``n`` entries raises ValueError; an entry outside ``jpg/``, a repeated entry or a
    listed image that is absent raises DatasetCorruptError naming the list.
    """
    n = _check_n(n)
    folder = require(Path(root) / DISTRACTOR_NAME, DISTRACTOR_NAME, HOW_TO_GET)
    list_path = require(folder / LIST_NAME, DISTRACTOR_NAME, HOW_TO_GET)
    jpg_dir = require(folder / "jpg", DISTRACTOR_NAME, HOW_TO_GET)
    try:
        paths = read_distractor_list(list_path, jpg_dir, n)
    except UnicodeDecodeError as exc:
        raise DatasetCorruptError(list_path, f"is not a UTF-8 text list ({exc})") from exc
    if not paths:
        raise DatasetCorruptError(list_path, "lists no images")
    if n is not None and len(paths) < n:
        raise ValueError(f"n={n} distractors asked for, but {list_path} lists {len(paths)}")
    seen: set[Path] = set()
    for path in paths:
        if path in seen:
            raise DatasetCorruptError(list_path, f"lists {path.relative_to(jpg_dir)} twice")
        seen.add(path)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p.relative_to(jpg_dir)) for p in missing[:3])
        raise DatasetCorruptError(
            list_path, f"{len(missing)} listed images are missing from {jpg_dir}: {shown}"
            + (" ..." if len(missing) > 3 else "")
        )
    return paths
