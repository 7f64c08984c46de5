"""Building the HTML book from the executed chapter notebooks and the pages in ``book/``.

The committed notebooks carry no outputs. The build therefore assembles a staging copy of the
book (``_build/src``) in which each chapter notebook is replaced by its executed version from
``runs/<profile>/<chapter>/``, and runs Jupyter Book 1 on it without executing anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .chapters import CHAPTERS
from .paths import REPO_ROOT, runs_dir
from .runner import chapter_run_dir, run_chapter

STAGED = ("_config.yml", "_toc.yml", "book", "lib/irbook", "data/thesis_tables")


def stage_book(profile: str, build_dir: Path, runs_root: Path | None = None) -> Path:
    """Copy the book's sources and the executed notebooks into ``build_dir/src``."""
    src = build_dir / "src"
    if src.exists():
        shutil.rmtree(src)
    for name in STAGED:
        origin = REPO_ROOT / name
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target)
    for key, chapter in CHAPTERS.items():
        executed = chapter_run_dir(key, profile, runs_root) / chapter.notebook_path.name
        if not executed.exists():
            raise FileNotFoundError(
                f"{executed} is missing: run `irbook run {key} --profile {profile}` first"
            )
        target = src / chapter.notebook
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, target)
    return src


def build_book(profile: str = "demo", run: bool = True, build_dir: Path | None = None,
               runs_root: Path | None = None) -> Path:
    """Execute every chapter (unless ``run`` is false), then build ``<build_dir>/html``.

    ``build_dir`` must be called ``_build`` (Jupyter Book writes there under its parent).
    """
    build_dir = build_dir or REPO_ROOT / "_build"
    if build_dir.name != "_build":
        raise ValueError(f"build_dir must be a folder named _build; got {build_dir}")
    if run:
        for key in CHAPTERS:
            print(f"[irbook] executing {key} with the {profile} profile", flush=True)
            run_chapter(key, profile, out_root=runs_root)
    src = stage_book(profile, build_dir, runs_root)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(src), "--path-output", str(build_dir.parent),
               "--builder", "html"]
    subprocess.run(command, check=True)
    index = build_dir / "html" / "index.html"
    print(f"[irbook] book written to {index} (runs in {(runs_root or runs_dir()) / profile})")
    return index
