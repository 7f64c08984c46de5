"""The regression net: every chapter's smoke run printed what its golden notebook recorded.

The smoke runs of ``conftest.smoke_runs`` are executed once per test session; their text
outputs are compared here with ``tests/golden/`` (``make golden`` regenerates them after an
intended change of results), after the replacements of ``tests/golden/sanitize.cfg``. Cells
tagged ``nbval-ignore-output`` (wall-clock times) are not compared. A golden notebook whose code
differs from the chapter notebook is stale and fails.
"""

from __future__ import annotations

import configparser
import re

import nbformat
import pytest

from irbook.chapters import CHAPTERS
from irbook.paths import REPO_ROOT
from irbook.runner import chapter_run_dir

SANITIZE = REPO_ROOT / "tests" / "golden" / "sanitize.cfg"
IGNORE = "nbval-ignore-output"


def sanitizers() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser()
    parser.read(SANITIZE)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def text_outputs(cell, rules) -> list[str]:
    """The text a code cell showed (streams and text/plain), sanitized."""
    texts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            texts += [data[k] for k in sorted(data) if k.endswith("text/plain")]
        elif output.output_type == "error":
            texts.append(f"ERROR {output.ename}: {output.evalue}")
    joined = "\n".join(texts)
    for pattern, replacement in rules:
        joined = pattern.sub(replacement, joined)
    return joined.splitlines()


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("chapter", list(CHAPTERS.values()), ids=list(CHAPTERS))
def test_golden_code_equals_the_notebook(chapter):
    golden = code_cells(nbformat.read(chapter.golden_path, as_version=4))
    current = code_cells(nbformat.read(chapter.notebook_path, as_version=4))
    assert [c.source for c in golden] == [c.source for c in current], (
        f"{chapter.golden_path.name} is stale: run `make golden`")


@pytest.mark.parametrize("chapter", list(CHAPTERS.values()), ids=list(CHAPTERS))
def test_smoke_run_prints_what_the_golden_notebook_recorded(chapter, smoke_runs):
    rules = sanitizers()
    executed = nbformat.read(chapter_run_dir(chapter.key, "smoke", smoke_runs)
                             / chapter.notebook_path.name, as_version=4)
    golden = nbformat.read(chapter.golden_path, as_version=4)
    pairs = zip(code_cells(golden), code_cells(executed), strict=True)
    for index, (want, got) in enumerate(pairs):
        if IGNORE in want.metadata.get("tags", []):
            continue
        assert text_outputs(got, rules) == text_outputs(want, rules), (
            f"{chapter.key}: code cell {index} printed something else than its golden "
            f"notebook:\n{got.source[:200]}")
