"""Executing a chapter notebook with papermill and writing its ``results.json``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .chapters import get_chapter
from .paths import REPO_ROOT, runs_dir
from .report import NOTEBOOK_RESULTS


def git_revision() -> str:
    """The commit the run was made from (with ``+dirty`` for uncommitted changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def chapter_run_dir(key: str, profile: str, root: Path | None = None) -> Path:
    """``runs/<profile>/<chapter>/``."""
    return (root or runs_dir()) / profile / key


def run_chapter(key: str, profile: str = "demo", overrides: Mapping[str, Any] | None = None,
                out_root: Path | None = None, progress: bool = True) -> Path:
    """Validate the parameters, execute the notebook, write ``results.json``; return the folder.

    Parameters are checked before the kernel starts, so a typo costs no work.
    """
    import papermill

    chapter = get_chapter(key)
    params = chapter.resolve(profile, overrides)
    chapter.check_inputs(params)
    out_dir = chapter_run_dir(key, profile, out_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / NOTEBOOK_RESULTS).unlink(missing_ok=True)
    executed = out_dir / chapter.notebook_path.name
    started = time.time()
    # The kernel inherits these: results go to out_dir, and progress bars (which would be
    # stored in the executed notebook as text) are replaced by papermill's bar over cells.
    with _environment(IRBOOK_RUN_DIR=str(out_dir), TQDM_DISABLE="1"):
        papermill.execute_notebook(
            str(chapter.notebook_path), str(executed), parameters=params,
            cwd=str(chapter.notebook_path.parent), progress_bar=progress, kernel_name="python3",
        )
    write_results(out_dir, key, params, wall_time=time.time() - started)
    return out_dir


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_results(out_dir: Path, key: str, params: Mapping[str, Any], wall_time: float) -> Path:
    """Merge what the notebook reported with the run's parameters, environment and timing."""
    from .device import environment

    reported_path = out_dir / NOTEBOOK_RESULTS
    reported = json.loads(reported_path.read_text()) if reported_path.exists() else {}
    results = {
        "chapter": key,
        "profile": params["profile"],
        "parameters": dict(params),
        "seed": params.get("seed"),
        "metrics": reported.get("metrics", {}),
        "claims": reported.get("claims", []),
        "device": reported.get("device", "unknown"),
        "environment": environment(),
        "git_revision": git_revision(),
        "wall_time_s": round(wall_time, 2),
    }
    target = out_dir / "results.json"
    target.write_text(json.dumps(results, indent=2))
    return target
