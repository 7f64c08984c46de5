"""What decides a chapter's executed notebook, so that the book re-executes only what changed.

A chapter run is determined by its *execution key*: the source of the notebook's code cells (not
its markdown), the resolved parameters, the library's source (with the thesis tables and
protocols it reads), a fingerprint of the data and the versions of the packages that compute.
:func:`irbook.runner.run_chapter` writes the key of every successful run next to it
(``execution.json``); :func:`is_current` compares it with the key of today's tree. A prose-only
edit leaves the key unchanged: the book then pairs the edited markdown with the stored outputs
(:func:`merge_prose`) instead of executing the chapter again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .paths import REPO_ROOT

__all__ = ["EXECUTION_FILE", "PACKAGES", "changed_parts", "code_digest", "data_fingerprint",
           "execution_key", "is_current", "library_digest", "merge_prose", "package_versions",
           "read_execution_key", "write_execution_key"]

EXECUTION_FILE = "execution.json"
PACKAGES = ("torch", "torchvision", "faiss-cpu", "faiss-gpu", "numpy", "scipy", "scikit-learn",
            "pandas", "pillow", "matplotlib", "papermill", "ipykernel", "nbformat")
"""Distributions whose version changes a chapter's numbers or its executed notebook."""
LIBRARY_PARTS = (("lib/irbook", "*.py"), ("data/thesis_tables", "*.csv"),
                 ("data/thesis_protocols", "*.csv"))
"""Folders (and file patterns) of the repository whose content the chapters compute from."""
INJECTED_TAG = "injected-parameters"


def _sha1(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def code_cells(notebook: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The code cells of a notebook, without the cell papermill injects."""
    return [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"
            and INJECTED_TAG not in _tags(cell)]


def code_digest(notebook_path: str | os.PathLike[str]) -> str:
    """SHA-1 of the notebook's code-cell sources, in order (markdown and outputs ignored)."""
    notebook = json.loads(Path(notebook_path).read_text())
    return _sha1(_source(cell).encode() for cell in code_cells(notebook))


def library_digest(root: Path = REPO_ROOT) -> str:
    """SHA-1 over the path and bytes of every file of :data:`LIBRARY_PARTS` under ``root``."""
    files = sorted(path for folder, pattern in LIBRARY_PARTS
                   for path in (root / folder).rglob(pattern) if "__pycache__" not in path.parts)
    return _sha1(part for path in files
                 for part in (path.relative_to(root).as_posix().encode(), path.read_bytes()))


def data_fingerprint(params: Mapping[str, Any]) -> str:
    """``synthetic`` (the generators are library source) or a SHA-1 of the real data's file
    list: relative path, size and modification time of every file under ``data_root``."""
    if params.get("synthetic", True):
        return "synthetic"
    from .paths import data_root

    root = data_root(False, params.get("data_root"))
    if not root.exists():
        return f"missing: {root}"
    entries = []
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            info = (Path(folder) / name).stat()
            relative = (Path(folder) / name).relative_to(root).as_posix()
            entries.append(f"{relative}\t{info.st_size}\t{info.st_mtime_ns}".encode())
    return _sha1(entries)


def package_versions() -> dict[str, str]:
    """Python's version and that of every distribution of :data:`PACKAGES` (absent: none)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "none"
    return versions


def execution_key(notebook_path: str | os.PathLike[str], params: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """Everything a run of the notebook with ``params`` depends on (module docstring)."""
    return {"code": code_digest(notebook_path),
            "parameters": json.loads(json.dumps(dict(params), sort_keys=True, default=str)),
            "library": library_digest(), "data": data_fingerprint(params),
            "packages": package_versions()}


def write_execution_key(run_dir: Path, key: Mapping[str, Any]) -> Path:
    target = Path(run_dir) / EXECUTION_FILE
    target.write_text(json.dumps(key, indent=2, sort_keys=True))
    return target


def read_execution_key(run_dir: Path) -> dict[str, Any] | None:
    """The key stored with a run, or None when there is none or it does not parse."""
    try:
        return json.loads((Path(run_dir) / EXECUTION_FILE).read_text())
    except (OSError, ValueError):
        return None


def changed_parts(run_dir: Path, key: Mapping[str, Any]) -> list[str]:
    """The parts of ``key`` that differ from the stored one (all of them when none is)."""
    stored = read_execution_key(run_dir)
    if stored is None:
        return ["no earlier run"]
    return [part for part in key if stored.get(part) != key[part]]


def is_current(run_dir: Path, key: Mapping[str, Any], notebook_name: str) -> bool:
    """True when ``run_dir`` holds an executed notebook whose stored key equals ``key``."""
    return (Path(run_dir) / notebook_name).exists() and not changed_parts(run_dir, key)


def merge_prose(current: Mapping[str, Any], executed: Mapping[str, Any]) -> dict[str, Any]:
    """The executed notebook with the markdown of ``current``: ``current``'s cells in order,
    each code cell carrying the outputs of the executed cell with the same source, papermill's
    injected-parameters cell after the ``parameters`` cell. When the code cells differ the
    executed notebook is returned as it is (its outputs belong to its own code)."""
    ran = code_cells(executed)
    if [_source(c) for c in code_cells(current)] != [_source(c) for c in ran]:
        return copy.deepcopy(dict(executed))
    injected = [c for c in executed.get("cells", []) if INJECTED_TAG in _tags(c)]
    outputs = iter(ran)
    cells = []
    for cell in current.get("cells", []):
        if cell.get("cell_type") == "code":
            cell = copy.deepcopy(next(outputs))
        else:
            cell = copy.deepcopy(dict(cell))
        cells.append(cell)
        if "parameters" in _tags(cell):
            cells.extend(copy.deepcopy(injected))
    merged = copy.deepcopy(dict(executed))
    merged["cells"] = cells
    return merged
