"""Writing synthetic files deterministically, and regenerating a cached set only when needed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

JPEG_QUALITY = 90
MARKER = ".irbook_synth_{kind}.json"  # one per kind, so several sets can share a root


def save_jpeg(img: Image.Image, path: Path) -> None:
    """JPEG, quality 90, no metadata: the same pixels give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=JPEG_QUALITY)


def save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG", compress_level=6)


def write_json(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive lock on ``root/.irbook_synth.lock`` (POSIX; a no-op where fcntl is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / ".irbook_synth.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def ensure_generated(
    root: Path, kind: str, config: dict, parts: tuple[str, ...], write: Callable[[Path], object]
) -> Path:
    """Make the folders ``root/<part>`` by calling ``write(folder)``, unless the marker of
    ``kind`` records the same ``config`` and the file counts found there.

    ``write`` fills a staging folder whose ``parts`` are then moved into ``root``.

    A folder that exists without our marker is never deleted: that may be real data.
    """
    root = Path(root)
    config = json.loads(json.dumps(config))  # tuples -> lists, as read back from the marker
    marker = root / MARKER.format(kind=kind)
    with _locked(root):
        recorded = json.loads(marker.read_text()) if marker.exists() else None
        if recorded is not None and recorded.get("config") == config:
            counts = recorded.get("files", {})
            if all(
                (root / part).is_dir() and _count_files(root / part) == counts.get(part)
                for part in parts
            ):
                return root
        owned = set(recorded.get("files", {})) if recorded is not None else set()
        for part in parts:
            if (root / part).exists() and part not in owned:
                raise FileExistsError(
                    f"'{root / part}' exists and was not written by irbook.data.synth; refusing "
                    "to overwrite it (choose another root for the synthetic data)"
                )
        # claim the parts first, so that an interrupted run is regenerated next time
        write_json({"config": None, "files": {part: None for part in parts}}, marker)
        for part in parts:
            if (root / part).exists():
                shutil.rmtree(root / part)
        for stale in root.glob(".staging-*"):
            shutil.rmtree(stale)
        staging = root / f".staging-{os.getpid()}"
        try:
            write(staging)
            for part in parts:
                os.replace(staging / part, root / part)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        files = {part: _count_files(root / part) for part in parts}
        write_json({"config": config, "files": files}, marker)
    return root
