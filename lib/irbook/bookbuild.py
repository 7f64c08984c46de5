"""Building the HTML book from the executed chapter notebooks and the pages in ``book/``.

The committed notebooks carry no outputs. The build therefore assembles a staging copy of the
book (``_build/src``) in which each chapter notebook carries the outputs of its executed version
from ``runs/<profile>/<chapter>/``, and runs Jupyter Book 1 on it without executing anything.

A chapter is executed again only when its execution key changed (:mod:`irbook.buildcache`: code
cells, parameters, library, data, packages); after a prose-only edit the staged page pairs the
new markdown with the stored outputs. The staging copy is updated in place, file by file, so
Sphinx re-reads only the pages that changed. A chapter that fails keeps its previous page, and
the front page names the failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .buildcache import changed_parts, execution_key, is_current, merge_prose
from .chapters import CHAPTERS, get_chapter
from .paths import REPO_ROOT, runs_dir
from .runner import ChapterRunError, chapter_run_dir, run_chapter
from .scoreboard import MARKER, scoreboard_markdown

STAGED = ("_config.yml", "_toc.yml", "book", "lib/irbook", "data/thesis_tables")
ROOT_PAGE = "book/preface.md"
SCOREBOARD_PAGE = "book/scoreboard.md"


@dataclass
class BuildReport:
    """What one build did per chapter: executed, reused (up to date) or failed (message)."""

    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def select_chapters(chapters: str | Sequence[str] | None) -> list[str]:
    """The chapter keys of ``--chapters`` (comma-separated or a list; None: every chapter)."""
    if chapters is None:
        return list(CHAPTERS)
    keys = [k.strip() for k in (chapters.split(",") if isinstance(chapters, str) else chapters)]
    keys = [k for k in keys if k]
    unknown = [k for k in keys if k not in CHAPTERS]
    if unknown or not keys:
        raise ValueError(f"chapters must be a comma-separated list of {', '.join(CHAPTERS)}; "
                         f"got {chapters!r}")
    return list(dict.fromkeys(keys))


def execute_chapters(keys: Iterable[str], profile: str, runs_root: Path | None = None,
                     force: bool = False) -> BuildReport:
    """Run every chapter of ``keys`` whose stored execution key differs from today's (all with
    ``force``); a failure is recorded and the next chapter runs."""
    report = BuildReport()
    for key in keys:
        chapter = get_chapter(key)
        run_dir = chapter_run_dir(key, profile, runs_root)
        wanted = execution_key(chapter.notebook_path, chapter.resolve(profile))
        if not force and is_current(run_dir, wanted, chapter.notebook_path.name):
            print(f"[irbook] {key}: up to date, not executed again", flush=True)
            report.reused.append(key)
            continue
        why = "forced" if force else "changed: " + ", ".join(
            changed_parts(run_dir, wanted) or ["no executed notebook"])
        print(f"[irbook] executing {key} with the {profile} profile ({why})", flush=True)
        try:
            run_chapter(key, profile, out_root=runs_root)
        except ChapterRunError as error:
            print(f"[irbook] {key} failed: {error}", file=sys.stderr, flush=True)
            report.failed[key] = str(error).splitlines()[0]
            continue
        report.executed.append(key)
    return report


def _write_if_changed(target: Path, content: bytes) -> None:
    """Write ``content`` unless ``target`` already holds it (its time then stays, so Sphinx
    does not read the page again)."""
    if target.exists() and target.read_bytes() == content:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def _staged_files(profile: str, runs_root: Path | None,
                  failed: dict[str, str]) -> dict[str, bytes]:
    """Relative path -> content of every file of the staging copy."""
    files: dict[str, bytes] = {}
    for name in STAGED:
        origin = REPO_ROOT / name
        paths = [origin] if origin.is_file() else sorted(
            p for p in origin.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in paths:
            files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    for key, chapter in CHAPTERS.items():
        current = json.loads(chapter.notebook_path.read_text())
        executed_path = chapter_run_dir(key, profile, runs_root) / chapter.notebook_path.name
        if executed_path.exists():
            page = merge_prose(current, json.loads(executed_path.read_text()))
            page = stamped(page, executed_path.parent / "results.json")
        else:
            page = not_executed_page(current, key, profile)
        files[chapter.notebook] = (json.dumps(page, indent=1, ensure_ascii=False) + "\n").encode()
    if failed:
        files[ROOT_PAGE] = files[ROOT_PAGE] + failure_notice(failed).encode()
    page = files[SCOREBOARD_PAGE].decode()
    files[SCOREBOARD_PAGE] = page.replace(MARKER, scoreboard_markdown(runs_root)).encode()
    return files


HIDDEN_TAGS = ("parameters", "injected-parameters")
"""Cells removed from the rendered page: the stamp shows the values that ran."""


def stamped(page: dict, results_path: Path) -> dict:
    """The page with the stamp of its run after its first cell, and the parameter cells
    removed from the rendering (tag ``remove-cell``)."""
    page = dict(page)
    cells = []
    for cell in page.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if any(tag in tags for tag in HIDDEN_TAGS) and "remove-cell" not in tags:
            cell = {**cell, "metadata": {**cell["metadata"], "tags": [*tags, "remove-cell"]}}
        cells.append(cell)
    if results_path.exists():
        stamp = {"cell_type": "markdown", "id": "irbook-stamp", "metadata": {},
                 "source": [run_stamp(json.loads(results_path.read_text()))]}
        cells.insert(1, stamp)
    page["cells"] = cells
    return page


def run_stamp(results: dict) -> str:
    """Where this page's numbers came from: profile, changed parameters, seeds, device,
    revision, data, wall time and the command that reproduces the run."""
    from .scoreboard import RunRecord, changed_parameters, seeds_text

    record = RunRecord(results.get("chapter", "?"), results.get("profile", "?"), Path("."),
                       results)
    changed = changed_parameters(record)
    options = "".join(f" -p {k} {_shell_value(v)}" for k, v in changed.items())
    rows = [("profile", results.get("profile", "?")),
            ("parameters changed from the profile",
             ", ".join(f"`{k} = {v}`" for k, v in changed.items()) or "none"),
            ("seed(s)", seeds_text(results) or "?"),
            ("device", results.get("device", "unknown")),
            ("git revision", f"`{results.get('git_revision', 'unknown')}`"),
            ("data", f"`{results.get('inputs', {}).get('data', 'unknown')}`"),
            ("wall time", f"{results.get('wall_time_s', '?')} s")]
    body = "\n".join(f"| {name} | {value} |" for name, value in rows)
    command = f"irbook run {record.chapter} --profile {record.profile}{options}"
    return (f"```{{admonition}} This page was executed with\n:class: note\n\n| | |\n| --- | --- |"
            f"\n{body}\n\nReproduce it with `{command}`.\n```\n")


def _shell_value(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if text and all(c.isalnum() or c in "._-,/" for c in text) else f"'{text}'"


def not_executed_page(notebook: dict, key: str, profile: str) -> dict:
    """The committed notebook (no outputs) with a note that it has not been executed."""
    note = {"cell_type": "markdown", "metadata": {}, "id": "irbook-not-executed",
            "source": [f"```{{warning}}\nThis chapter has not been executed with the {profile} "
                       f"profile yet: `irbook run {key} --profile {profile}` executes it.\n```\n"]}
    page = dict(notebook)
    page["cells"] = [note, *notebook.get("cells", [])]
    return page


def failure_notice(failed: dict[str, str]) -> str:
    """The front page's note naming every chapter that failed in this build."""
    lines = "\n".join(f"- **{key}**: {message}" for key, message in sorted(failed.items()))
    return (f"\n\n```{{admonition}} Chapters that failed in the last build\n:class: warning\n"
            f"Their pages show the previous successful run (or none).\n\n{lines}\n```\n")


def stage_book(profile: str, build_dir: Path, runs_root: Path | None = None,
               failed: dict[str, str] | None = None) -> Path:
    """Bring ``build_dir/src`` up to date: the book's sources and the chapter pages (markdown
    of today's notebook, outputs of the executed one); files no longer staged are removed."""
    src = build_dir / "src"
    files = _staged_files(profile, runs_root, failed or {})
    for relative, content in files.items():
        _write_if_changed(src / relative, content)
    if src.exists():
        for path in sorted(src.rglob("*"), reverse=True):
            relative = path.relative_to(src).as_posix()
            if path.is_file() and relative not in files:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return src


def build_book(profile: str = "demo", run: bool = True, build_dir: Path | None = None,
               runs_root: Path | None = None, chapters: str | Sequence[str] | None = None,
               force: bool = False) -> Path:
    """Execute the chapters whose inputs changed (unless ``run`` is false; ``chapters`` limits
    them, ``force`` executes them all), then build ``<build_dir>/html``.

    ``build_dir`` must be called ``_build`` (Jupyter Book writes there under its parent). Every
    chapter page is built; one that was never executed says so. Returns the index page; a
    :class:`BookBuildError` after the build names the chapters that failed.
    """
    build_dir = build_dir or REPO_ROOT / "_build"
    if build_dir.name != "_build":
        raise ValueError(f"build_dir must be a folder named _build; got {build_dir}")
    keys = select_chapters(chapters)
    report = execute_chapters(keys, profile, runs_root, force) if run else BuildReport()
    src = stage_book(profile, build_dir, runs_root, report.failed)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(src), "--path-output", str(build_dir.parent),
               "--builder", "html"]
    subprocess.run(command, check=True)
    index = build_dir / "html" / "index.html"
    print(f"[irbook] book written to {index} (runs in {(runs_root or runs_dir()) / profile}; "
          f"executed {len(report.executed)}, up to date {len(report.reused)}, failed "
          f"{len(report.failed)})")
    if report.failed:
        raise BookBuildError(report.failed, index)
    return index


class BookBuildError(RuntimeError):
    """Chapters failed; the book was built with their previous pages."""

    def __init__(self, failed: dict[str, str], index: Path) -> None:
        self.failed, self.index = dict(failed), index
        super().__init__(f"the book was built ({index}), but {', '.join(sorted(failed))} "
                         "failed; their pages show the previous run and the front page names "
                         "the failures")
