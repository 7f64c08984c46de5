"""The runner never loses a good run: it executes into a fresh folder and replaces the final one
only on success; a failed run is kept in ``<chapter>.failed/`` and named in the error."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

import irbook.runner as runner
from irbook.params import ParameterError
from irbook.runner import ChapterRunError, RunsFolderError, run_chapter, write_results

CLAIM = {"id": "c1", "claim": "x beats y", "source": "Table 1", "verdict": "supported",
         "holds": True, "compared": ["x", "y"], "interval": [0.5, 1.5], "threshold": 0.0,
         "seeds": [0, 1], "detail": "+1.0", "comparisons": [{"a": 1}]}

REPORT_CELL = f"""\
import json, os, pathlib
if fail:
    raise ValueError("asked to fail")
folder = pathlib.Path(os.environ["IRBOOK_RUN_DIR"])
payload = {{"metrics": {{"value": value}}, "claims": [{CLAIM!r}], "deviations": ["smaller"],
           "seeds": [0, 1], "device": "cpu (test)"}}
(folder / "notebook_results.json").write_text(json.dumps(payload))
"""


def _write_notebook(path: Path) -> Path:
    parameters = nbformat.v4.new_code_cell("profile = None\nseed = 0\nfail = False\nvalue = 0")
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(REPORT_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@dataclass
class FakeChapter:
    notebook_path: Path
    key: str = "chfake"

    def resolve(self, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"profile": profile, "seed": 0, "fail": False, "value": 1, **(overrides or {})}

    def check_inputs(self, params: dict[str, Any]) -> None:
        pass


@pytest.fixture
def fake(tmp_path, monkeypatch):
    chapter = FakeChapter(_write_notebook(tmp_path / "chfake.ipynb"))
    monkeypatch.setattr(runner, "get_chapter", lambda key: chapter)
    monkeypatch.setenv("IRBOOK_RUNS", str(tmp_path / "runs"))
    return chapter


def _previous_run(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "chfake.ipynb").write_text("good notebook")
    (folder / "results.json").write_text('{"good": true}')
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_success_writes_the_folder_and_a_failing_rerun_keeps_it(fake, tmp_path):
    profile_dir = tmp_path / "runs" / "smoke"
    stale = profile_dir / ".chfake.running-999999999"  # left by a killed run (no such pid)
    stale.mkdir(parents=True)
    out = run_chapter("chfake", "smoke", {"value": 3}, progress=False)
    assert out == profile_dir / "chfake"
    assert sorted(p.name for p in profile_dir.iterdir()) == ["chfake"]
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"] == {"value": 3} and results["parameters"]["value"] == 3
    assert results["claims"] == [CLAIM]  # passed through as reported
    assert results["deviations"] == ["smaller"] and results["seeds"] == [0, 1]
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(good) == {"chfake.ipynb", "notebook_results.json", "results.json",
                         "execution.json"}
    key = json.loads(good["execution.json"])  # what the book build compares (irbook.buildcache)
    assert key["parameters"]["value"] == 3 and key["data"] == "synthetic"
    assert results["inputs"] == {k: v for k, v in key.items() if k != "parameters"}

    with pytest.raises(ChapterRunError) as error:
        run_chapter("chfake", "smoke", {"fail": True}, progress=False)
    failed = profile_dir / "chfake.failed"
    assert error.value.path == failed
    assert (error.value.ename, error.value.evalue) == ("ValueError", "asked to fail")
    assert error.value.cell is not None
    assert f"is {failed / 'chfake.ipynb'}" in str(error.value)
    assert f"the previous run in {out} is unchanged" in str(error.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good
    executed = nbformat.read(failed / "chfake.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells
               if c.cell_type == "code" for o in c.outputs)
    assert sorted(p.name for p in profile_dir.iterdir()) == ["chfake", "chfake.failed"]

    run_chapter("chfake", "smoke", {"value": 4}, progress=False)  # success: failure obsolete
    assert sorted(p.name for p in profile_dir.iterdir()) == ["chfake"]
    assert json.loads((out / "results.json").read_text())["metrics"] == {"value": 4}


@pytest.mark.parametrize(("raised", "expected"), [
    (KeyboardInterrupt(), KeyboardInterrupt),
    (RuntimeError("kernel died"), ChapterRunError),
])
def test_an_interrupted_or_crashed_run_leaves_the_previous_one(fake, tmp_path, monkeypatch,
                                                               raised, expected):
    out_root = tmp_path / "elsewhere"
    good = _previous_run(out_root / "demo" / "chfake")

    def execute(notebook, folder, params, progress):
        assert folder.parent == out_root / "demo" and folder.name.startswith(".chfake.running-")
        assert os.environ["IRBOOK_RUN_DIR"] == str(folder)
        (folder / "chfake.ipynb").write_text("partial")
        raise raised

    monkeypatch.setattr(runner, "_execute", execute)
    with pytest.raises(expected) as error:
        run_chapter("chfake", "demo", out_root=out_root, progress=False)
    previous = out_root / "demo" / "chfake"
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == good
    assert (out_root / "demo" / "chfake.failed" / "chfake.ipynb").read_text() == "partial"
    assert sorted(p.name for p in (out_root / "demo").iterdir()) == ["chfake", "chfake.failed"]
    if expected is ChapterRunError:
        assert error.value.cell is None and error.value.ename == "RuntimeError"
        assert str(out_root / "demo" / "chfake.failed") in str(error.value)


def test_profile_override_is_refused_before_any_work(fake, tmp_path):
    with pytest.raises(ParameterError, match="use --profile"):
        run_chapter("chfake", "smoke", {"profile": "full"}, progress=False)
    assert not (tmp_path / "runs").exists()


def test_read_only_runs_folder_is_refused_before_the_kernel(fake, tmp_path, monkeypatch):
    profile_dir = tmp_path / "runs" / "smoke"
    profile_dir.mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(runner.os, "access",
                        lambda path, mode: Path(path) != profile_dir and real_access(path, mode))
    monkeypatch.setattr(runner, "_execute", lambda *args: pytest.fail("the kernel started"))
    with pytest.raises(RunsFolderError) as error:
        run_chapter("chfake", "smoke", progress=False)
    assert str(error.value).startswith(f"cannot write to {profile_dir}: ")
    assert str(error.value).endswith("make it writable or set IRBOOK_RUNS to another folder")
    assert not any(profile_dir.iterdir())


def test_runs_path_below_a_file_is_refused_without_creating_anything(fake, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunsFolderError, match=f"cannot write to {blocker}: it is not a folder"):
        run_chapter("chfake", "smoke", out_root=blocker / "runs", progress=False)
    assert blocker.read_text() == ""


def test_a_previous_run_moved_aside_by_a_killed_run_is_put_back(fake, tmp_path, monkeypatch):
    aside = tmp_path / "runs" / "smoke" / ".chfake.old-999999999"
    good = _previous_run(aside)
    monkeypatch.setattr(runner, "_execute", lambda *args: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(ChapterRunError):
        run_chapter("chfake", "smoke", progress=False)
    restored = tmp_path / "runs" / "smoke" / "chfake"
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == good
    assert not aside.exists()


def test_write_results_defaults_and_pass_through(tmp_path):
    (tmp_path / "notebook_results.json").write_text(json.dumps(
        {"metrics": {"m": 1.5}, "claims": [CLAIM], "device": "cpu (1 threads)"}))
    results = json.loads(write_results(tmp_path, "ch02", {"profile": "smoke", "seed": 3},
                                       wall_time=2.0).read_text())
    assert results["deviations"] == [] and "seeds" not in results
    assert results["claims"] == [CLAIM] and results["metrics"] == {"m": 1.5}
    assert results["device"] == "cpu (1 threads)" and results["seed"] == 3
