"""Executing a chapter notebook with papermill and writing its ``results.json``.

A run executes into a fresh folder next to the final one (``runs/<profile>/.<chapter>.running-
<pid>``) and replaces ``runs/<profile>/<chapter>/`` only once it has succeeded, so a failed or
interrupted rerun never destroys a good result. A failed run is kept in
``runs/<profile>/<chapter>.failed/`` for its traceback. Under ``torchrun`` every process executes
the notebook (their training loops join through :mod:`irbook.distributed`) and only rank 0
writes the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .buildcache import execution_key, write_execution_key
from .chapters import get_chapter
from .distributed import launched_world
from .params import refuse_profile_override
from .paths import REPO_ROOT, runs_dir
from .report import NOTEBOOK_RESULTS


class ChapterRunError(RuntimeError):
    """The chapter notebook failed. ``path`` is the folder that keeps the executed notebook
    (``<chapter>.failed``); ``cell``, ``ename`` and ``evalue`` say where and how it failed."""

    def __init__(self, chapter: str, path: Path, notebook: str, cell: int | None, ename: str,
                 evalue: str, previous: Path) -> None:
        self.chapter, self.path, self.cell = chapter, Path(path), cell
        self.ename, self.evalue = ename, evalue
        where = f" in cell {cell}" if cell is not None else ""
        executed = self.path / notebook
        kept = (f"the executed notebook, with the full traceback, is {executed}"
                if executed.exists() else f"what the run wrote is in {self.path}")
        previous_text = (f"the previous run in {previous} is unchanged" if previous.exists()
                         else f"no earlier run was in {previous}")
        super().__init__(f"{chapter} failed{where}: {ename}: {evalue}\n{kept}; {previous_text}")


class RunsFolderError(PermissionError):
    """The runs folder cannot be written; raised before the kernel starts."""

    def __init__(self, folder: Path, reason: str) -> None:
        self.folder = Path(folder)
        super().__init__(f"cannot write to {self.folder}: {reason}; make it writable or set "
                         "IRBOOK_RUNS to another folder")

    def __str__(self) -> str:  # PermissionError.__str__ would print an errno prefix
        return str(self.args[0])


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


def failed_run_dir(key: str, profile: str, root: Path | None = None) -> Path:
    """``runs/<profile>/<chapter>.failed/``: the executed notebook of the last failed run."""
    return (root or runs_dir()) / profile / f"{key}.failed"


def run_chapter(key: str, profile: str = "demo", overrides: Mapping[str, Any] | None = None,
                out_root: Path | None = None, progress: bool = True) -> Path:
    """Validate the parameters and inputs, execute the notebook, write ``results.json``; return
    ``runs/<profile>/<chapter>/``.

    Parameters, inputs, device and the runs folder are checked before the kernel starts, so a
    typo costs no work. The notebook runs in a fresh folder that replaces the final one only on
    success; on failure :class:`ChapterRunError` names ``<chapter>.failed/``, where the executed
    notebook is kept, and the previous run stays as it was.
    """
    chapter = get_chapter(key)
    refuse_profile_override(overrides)
    params = chapter.resolve(profile, overrides)
    if "device" in params:
        from .device import resolve_device

        resolve_device(params["device"])
    chapter.check_inputs(params)
    inputs = execution_key(chapter.notebook_path, params)
    out_dir = chapter_run_dir(key, profile, out_root)
    if launched_world().rank != 0:
        _execute_as_helper(chapter.notebook_path, params)
        return out_dir
    check_writable(out_dir)
    _clean_stale(out_dir)
    fresh = out_dir.with_name(f".{key}.running-{os.getpid()}")
    try:
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
    except OSError as error:
        raise RunsFolderError(fresh.parent, error.strerror or str(error)) from error
    try:
        started = time.time()
        # The kernel inherits these: results go to ``fresh``, and progress bars (which would be
        # stored in the executed notebook as text) are replaced by papermill's bar over cells.
        with _environment(IRBOOK_RUN_DIR=str(fresh), TQDM_DISABLE="1"):
            _execute(chapter.notebook_path, fresh, params, progress)
        write_results(fresh, key, params, wall_time=time.time() - started, inputs=inputs)
        write_execution_key(fresh, inputs)
    except BaseException as error:
        failed = _keep_failed(fresh, failed_run_dir(key, profile, out_root))
        if isinstance(error, Exception):
            raise _run_error(key, failed, chapter.notebook_path.name, error, out_dir) from error
        raise
    _promote(fresh, out_dir)
    shutil.rmtree(failed_run_dir(key, profile, out_root), ignore_errors=True)  # now obsolete
    return out_dir


def _execute_as_helper(notebook: Path, params: Mapping[str, Any]) -> None:
    """Under torchrun, a process other than rank 0: execute the notebook with the others (its
    training joins theirs) in a scratch folder, and keep nothing; rank 0 writes the run."""
    scratch = Path(tempfile.mkdtemp(prefix="irbook-rank-"))
    try:
        with _environment(IRBOOK_RUN_DIR=str(scratch), TQDM_DISABLE="1"):
            _execute(notebook, scratch, params, progress=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _execute(notebook: Path, folder: Path, params: Mapping[str, Any], progress: bool) -> None:
    """Execute ``notebook`` with papermill into ``folder``, from the notebook's own folder."""
    import papermill

    papermill.execute_notebook(
        str(notebook), str(folder / notebook.name), parameters=dict(params),
        cwd=str(notebook.parent), progress_bar=progress, kernel_name="python3",
    )


def _run_error(key: str, failed: Path, notebook: str, error: Exception,
               previous: Path) -> ChapterRunError:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        return ChapterRunError(key, failed, notebook, error.exec_count, error.ename,
                               error.evalue, previous)
    return ChapterRunError(key, failed, notebook, None, type(error).__name__, str(error),
                           previous)


def check_writable(out_dir: Path) -> None:
    """Raise :class:`RunsFolderError` unless the runs folder of ``out_dir`` accepts new entries
    and an existing ``out_dir`` can be replaced. Creates nothing."""
    probe = out_dir.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise RunsFolderError(probe, "it is not a folder")
    targets = [probe] + ([out_dir] if out_dir.is_dir() else [])
    for folder in targets:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise RunsFolderError(folder, "permission denied (read-only or immutable)")


def _clean_stale(out_dir: Path) -> None:
    """Remove fresh folders left by runs that were killed, and put back a previous run that a
    killed run had moved aside but not replaced."""
    for pattern in (f".{out_dir.name}.running-*", f".{out_dir.name}.old-*"):
        for stale in sorted(out_dir.parent.glob(pattern)):
            if _alive(stale.name.rsplit("-", 1)[-1]):
                continue
            if pattern.endswith("old-*") and not out_dir.exists():
                os.replace(stale, out_dir)
            else:
                shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _promote(fresh: Path, final: Path) -> None:
    """Replace ``final`` by ``fresh``: old aside, new in, old deleted."""
    aside = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.replace(final, aside)
    try:
        os.replace(fresh, final)
    except BaseException:
        if aside.exists() and not final.exists():
            os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _keep_failed(fresh: Path, failed: Path) -> Path:
    """Move the fresh folder of a failed run to ``failed`` (replacing an older one); where that
    is impossible the run stays in ``fresh``. Returns the folder that holds it."""
    shutil.rmtree(failed, ignore_errors=True)
    try:
        os.replace(fresh, failed)
    except OSError:
        return fresh
    return failed


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


def write_results(out_dir: Path, key: str, params: Mapping[str, Any], wall_time: float,
                  inputs: Mapping[str, Any] | None = None) -> Path:
    """Merge what the notebook reported with the run's parameters, environment and timing.

    ``claims`` and ``deviations`` are passed through as reported; ``seeds`` too when present;
    ``inputs`` (the execution key of :mod:`irbook.buildcache`) as the digests of the code,
    library and data and the package versions the run used.
    """
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
        "deviations": reported.get("deviations", []),
        "device": reported.get("device", "unknown"),
        "environment": environment(),
        "git_revision": git_revision(),
        "wall_time_s": round(wall_time, 2),
    }
    if inputs is not None:
        results["inputs"] = {part: value for part, value in inputs.items()
                             if part != "parameters"}
    if "seeds" in reported:
        results["seeds"] = reported["seeds"]
    if reported.get("claims_skipped"):
        results["claims_skipped"] = reported["claims_skipped"]
    target = out_dir / "results.json"
    target.write_text(json.dumps(results, indent=2))
    return target
