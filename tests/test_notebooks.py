"""Every chapter notebook: committed clean, parameters in sync, and a smoke run end to end."""

import importlib
import json
import re
import subprocess
import sys

import nbformat
import pytest

from irbook.chapters import CHAPTERS
from irbook.paths import REPO_ROOT
from irbook.protocol import PROTOCOLS_DIR
from irbook.runner import chapter_run_dir, run_chapter
from irbook.thesis_tables import available_tables

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


CLAIM_FIELDS = {"id", "claim", "source", "verdict", "holds", "compared", "interval", "seeds",
                "detail"}
GLUE = re.compile(r"\{glue:text\}`([^`]+)`")


@pytest.mark.parametrize("chapter", list(CHAPTERS.values()), ids=list(CHAPTERS))
def test_every_registered_chapter_has_its_parts(chapter):
    """Notebook, golden notebook, a _toc.yml line, its thesis tables and protocol file."""
    assert chapter.notebook_path in NOTEBOOKS
    assert chapter.golden_path.is_file(), "run `make golden`"
    toc = (REPO_ROOT / "_toc.yml").read_text()
    assert chapter.notebook.removesuffix(".ipynb") in toc
    assert chapter.thesis_tables and set(chapter.thesis_tables) <= set(available_tables())
    assert (PROTOCOLS_DIR / f"{chapter.key}.csv").is_file()
    assert callable(importlib.import_module(f"irbook.chapters.{chapter.key}").setup)


@pytest.mark.parametrize("key", list(CHAPTERS))
def test_every_glued_name_in_the_prose_is_glued_by_the_run(key, smoke_runs):
    """The prose quotes the run by name; a name the run never glued would render empty."""
    chapter = CHAPTERS[key]
    source = nbformat.read(chapter.notebook_path, as_version=4)
    quoted = {name for cell in source.cells if cell.cell_type == "markdown"
              for name in GLUE.findall(cell.source)}
    executed = nbformat.read(chapter_run_dir(key, "smoke", smoke_runs)
                             / chapter.notebook_path.name, as_version=4)
    glued = {output.metadata["scrapbook"]["name"] for cell in executed.cells
             if cell.cell_type == "code" for output in cell.outputs
             if "scrapbook" in output.get("metadata", {})}
    assert quoted and quoted <= glued, f"never glued: {sorted(quoted - glued)}"


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
        assert CLAIM_FIELDS <= set(claim)
        assert claim["id"].startswith(f"{key}.")
        assert claim["verdict"] in ("supported", "not supported", "inconclusive")
        assert claim["holds"] == {"supported": True, "not supported": False,
                                  "inconclusive": None}[claim["verdict"]]
        assert claim["interval"] is None or claim["interval"][0] <= claim["interval"][1]
        assert [s["seed"] for s in claim["seeds"]] == [results["parameters"]["seed"]]
    assert len({c["id"] for c in results["claims"]}) == len(results["claims"])
    assert isinstance(results["deviations"], list) and results["deviations"]
    assert all(d["reason"] for d in results["deviations"])
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


def test_two_seeds_keep_every_seed_and_compare_their_means(tmp_path):
    """``-p seeds 2``: each claim keeps both seeds' values and compares their mean."""
    out = run_chapter("ch02", "smoke", {"seeds": 2}, out_root=tmp_path, progress=False)
    results = json.loads((out / "results.json").read_text())
    assert results["claims"]
    for claim in results["claims"]:
        assert [s["seed"] for s in claim["seeds"]] == [0, 1]
        for name, value in claim["compared"].items():
            per_seed = [s["compared"][name] for s in claim["seeds"]]
            assert value == pytest.approx(sum(per_seed) / 2)
