"""Every chapter notebook: committed clean, parameters in sync, and a smoke run end to end."""

import json
import subprocess
import sys

import nbformat
import pytest

from irbook.chapters import CHAPTERS
from irbook.paths import REPO_ROOT
from irbook.runner import chapter_run_dir

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_every_chapter_has_its_notebook():
    assert {c.notebook_path for c in CHAPTERS.values()} <= set(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run tools/nbtool.py strip"


@pytest.mark.parametrize("chapter", list(CHAPTERS.values()), ids=list(CHAPTERS))
def test_parameters_cell_declares_exactly_the_chapter_parameters(chapter):
    nb = nbformat.read(chapter.notebook_path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines()
             if "=" in line and not line.lstrip().startswith("#")}
    assert names == set(chapter.spec.names)


@pytest.mark.parametrize("key", list(CHAPTERS))
def test_smoke_run_writes_executed_notebook_and_results(key, smoke_runs):
    out = chapter_run_dir(key, "smoke", smoke_runs)
    results = json.loads((out / "results.json").read_text())
    assert results["chapter"] == key and results["profile"] == "smoke"
    assert results["parameters"]["profile"] == "smoke"
    assert results["seed"] == results["parameters"]["seed"]
    assert results["git_revision"] and results["wall_time_s"] > 0
    assert results["device"].startswith("cpu")
    assert {"python", "torch", "faiss"} <= set(results["environment"])
    assert len(results["claims"]) >= 3
    for claim in results["claims"]:
        assert set(claim) == {"claim", "source", "holds", "detail"}
        assert isinstance(claim["holds"], bool)
    assert results["metrics"]
    executed = nbformat.read(out / CHAPTERS[key].notebook_path.name, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors


def test_cli_refuses_bad_parameter_before_running(tmp_path):
    command = [sys.executable, "-m", "irbook.cli", "run", "ch02", "--profile", "smoke",
               "-p", "pooling", "avg"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"IRBOOK_RUNS": str(tmp_path), "PATH": ""})
    assert done.returncode == 2
    assert "parameter 'pooling' got 'avg'; allowed: one of 'all'" in done.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused run"


def test_cli_lists_parameters():
    done = subprocess.run([sys.executable, "-m", "irbook.cli", "params", "ch02"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "pooling (str)" in done.stdout and "smoke='all'" in done.stdout
