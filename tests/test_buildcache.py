"""The execution key of a chapter run, and a book build that re-executes only what changed."""

import json
import os

import pytest

from irbook import bookbuild, buildcache
from irbook.chapters import CHAPTERS
from irbook.runner import ChapterRunError


def _cell(kind, source, tags=(), outputs=None, cell_id=None):
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {},
            "source": source, "id": cell_id or f"c{abs(hash((kind, source))) % 10**8}"}
    if kind == "code":
        cell.update(outputs=outputs or [], execution_count=None)
    return cell


def _notebook(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _output(text):
    return [{"output_type": "stream", "name": "stdout", "text": text}]


SOURCE = _notebook(_cell("markdown", "# Title"), _cell("code", "x = None", tags=["parameters"]),
                   _cell("markdown", "Some prose."), _cell("code", "print(x)"))


def _write(path, notebook):
    path.write_text(json.dumps(notebook))
    return path


def test_the_code_digest_follows_the_code_cells_only(tmp_path):
    path = _write(tmp_path / "a.ipynb", SOURCE)
    first = buildcache.code_digest(path)
    prose = json.loads(json.dumps(SOURCE))
    prose["cells"][2]["source"] = "Other prose, a new heading."
    prose["cells"][3]["outputs"] = _output("1\n")
    assert buildcache.code_digest(_write(tmp_path / "b.ipynb", prose)) == first
    code = json.loads(json.dumps(SOURCE))
    code["cells"][3]["source"] = "print(x + 1)"
    assert buildcache.code_digest(_write(tmp_path / "c.ipynb", code)) != first
    moved = json.loads(json.dumps(SOURCE))
    moved["cells"][1], moved["cells"][3] = moved["cells"][3], moved["cells"][1]
    assert buildcache.code_digest(_write(tmp_path / "d.ipynb", moved)) != first
    injected = json.loads(json.dumps(SOURCE))
    injected["cells"].insert(2, _cell("code", "x = 3", tags=["injected-parameters"]))
    assert buildcache.code_digest(_write(tmp_path / "e.ipynb", injected)) == first


def test_the_library_digest_reads_every_library_file(tmp_path):
    (tmp_path / "lib" / "irbook" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "thesis_tables").mkdir(parents=True)
    module = tmp_path / "lib" / "irbook" / "sub" / "m.py"
    module.write_text("A = 1\n")
    table = tmp_path / "data" / "thesis_tables" / "t.csv"
    table.write_text("a,b\n1,2\n")
    first = buildcache.library_digest(tmp_path)
    (tmp_path / "lib" / "irbook" / "notes.txt").write_text("not source")
    assert buildcache.library_digest(tmp_path) == first
    module.write_text("A = 2\n")
    second = buildcache.library_digest(tmp_path)
    assert second != first
    table.write_text("a,b\n1,3\n")
    assert buildcache.library_digest(tmp_path) not in (first, second)


def test_real_data_is_fingerprinted_by_its_files(tmp_path):
    assert buildcache.data_fingerprint({"synthetic": True}) == "synthetic"
    (tmp_path / "oxford").mkdir()
    image = tmp_path / "oxford" / "a.jpg"
    image.write_bytes(b"12345")
    params = {"synthetic": False, "data_root": str(tmp_path)}
    first = buildcache.data_fingerprint(params)
    assert first == buildcache.data_fingerprint(params)
    image.write_bytes(b"123456")
    assert buildcache.data_fingerprint(params) != first
    assert buildcache.data_fingerprint({"synthetic": False,
                                        "data_root": str(tmp_path / "none")}).startswith("missing")


def test_a_stored_key_makes_the_run_current_until_a_part_changes(tmp_path):
    notebook = _write(tmp_path / "n.ipynb", SOURCE)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    key = buildcache.execution_key(notebook, {"profile": "smoke", "seed": 0})
    assert set(key) == {"code", "parameters", "library", "data", "packages"}
    assert key["packages"]["torch"] != "none" and key["data"] == "synthetic"
    assert buildcache.changed_parts(run_dir, key) == ["no earlier run"]
    buildcache.write_execution_key(run_dir, key)
    assert not buildcache.is_current(run_dir, key, "n.ipynb")  # no executed notebook there
    _write(run_dir / "n.ipynb", SOURCE)
    assert buildcache.is_current(run_dir, key, "n.ipynb")
    other = buildcache.execution_key(notebook, {"profile": "smoke", "seed": 1})
    assert buildcache.changed_parts(run_dir, other) == ["parameters"]
    (run_dir / buildcache.EXECUTION_FILE).write_text("{damaged")
    assert buildcache.changed_parts(run_dir, key) == ["no earlier run"]


def test_merged_pages_carry_new_prose_and_the_stored_outputs():
    executed = json.loads(json.dumps(SOURCE))
    executed["cells"].insert(2, _cell("code", "x = 3", tags=["injected-parameters"],
                                      cell_id="injected"))
    executed["cells"][4]["outputs"] = _output("3\n")
    executed["metadata"] = {"papermill": {"parameters": {"x": 3}}}
    current = json.loads(json.dumps(SOURCE))
    current["cells"][2]["source"] = "Rewritten prose."
    current["cells"].append(_cell("markdown", "A closing paragraph."))
    merged = buildcache.merge_prose(current, executed)
    assert [c["source"] for c in merged["cells"]] == [
        "# Title", "x = None", "x = 3", "Rewritten prose.", "print(x)", "A closing paragraph."]
    assert merged["cells"][4]["outputs"] == _output("3\n")
    assert merged["metadata"] == executed["metadata"]
    changed = json.loads(json.dumps(current))
    changed["cells"][3]["source"] = "print(x * 2)"
    assert buildcache.merge_prose(changed, executed) == executed  # outputs of other code


# --- the book build ----------------------------------------------------------------------------

@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """Executed notebooks of two chapters with today's keys, and run_chapter recorded."""
    calls = []
    monkeypatch.setattr(bookbuild, "run_chapter",
                        lambda key, profile, out_root=None: calls.append(key))
    for key in ("ch05", "ch06"):
        chapter = CHAPTERS[key]
        run_dir = tmp_path / "smoke" / key
        run_dir.mkdir(parents=True)
        (run_dir / chapter.notebook_path.name).write_text(chapter.notebook_path.read_text())
        buildcache.write_execution_key(run_dir, buildcache.execution_key(
            chapter.notebook_path, chapter.resolve("smoke")))
    return tmp_path, calls


def test_only_chapters_whose_inputs_changed_are_executed(fake_runs):
    root, calls = fake_runs
    report = bookbuild.execute_chapters(["ch05", "ch06", "ch07"], "smoke", root)
    assert calls == ["ch07"] and report.reused == ["ch05", "ch06"]
    key_file = root / "smoke" / "ch06" / buildcache.EXECUTION_FILE
    key = json.loads(key_file.read_text())
    key["library"] = "an older library"
    key_file.write_text(json.dumps(key))
    calls.clear()
    assert bookbuild.execute_chapters(["ch05", "ch06"], "smoke", root).executed == ["ch06"]
    calls.clear()
    bookbuild.execute_chapters(["ch05"], "smoke", root, force=True)
    assert calls == ["ch05"]


def test_a_failing_chapter_is_named_and_the_others_still_run(fake_runs, monkeypatch, tmp_path):
    root, calls = fake_runs

    def fail_on_ch03(key, profile, out_root=None):
        if key == "ch03":
            raise ChapterRunError(key, tmp_path, "n.ipynb", 4, "ValueError", "bad", tmp_path)
        calls.append(key)

    monkeypatch.setattr(bookbuild, "run_chapter", fail_on_ch03)
    report = bookbuild.execute_chapters(["ch03", "ch04"], "smoke", root)
    assert calls == ["ch04"] and list(report.failed) == ["ch03"]
    assert "ch03 failed in cell 4: ValueError: bad" in report.failed["ch03"]
    notice = bookbuild.failure_notice(report.failed)
    assert "ch03" in notice and "previous successful run" in notice


def test_chapters_are_chosen_by_name():
    assert bookbuild.select_chapters(None) == list(CHAPTERS)
    assert bookbuild.select_chapters("ch05, ch06,ch05") == ["ch05", "ch06"]
    for bad in ("ch99", "", "ch05,,x"):
        with pytest.raises(ValueError, match="comma-separated list of ch02"):
            bookbuild.select_chapters(bad)


def test_staging_rewrites_only_what_changed(fake_runs):
    root, _ = fake_runs
    build_dir = root / "_build"
    src = bookbuild.stage_book("smoke", build_dir, root)
    page = src / CHAPTERS["ch05"].notebook
    missing = json.loads((src / CHAPTERS["ch02"].notebook).read_text())
    assert missing["cells"][0]["id"] == "irbook-not-executed"  # never executed here
    os.utime(page, ns=(1, 1))
    stale = src / "book" / "removed_page.md"
    stale.write_text("gone")
    bookbuild.stage_book("smoke", build_dir, root, failed={"ch03": "ch03 failed in cell 2"})
    assert page.stat().st_mtime_ns == 1  # the same content: not written again
    assert not stale.exists()
    assert "ch03 failed in cell 2" in (src / bookbuild.ROOT_PAGE).read_text()
    bookbuild.stage_book("smoke", build_dir, root)  # a build without failures: the page as is
    assert (src / bookbuild.ROOT_PAGE).read_bytes() == (
        bookbuild.REPO_ROOT / bookbuild.ROOT_PAGE).read_bytes()


def test_pages_open_with_the_stamp_of_their_run_and_hide_the_parameter_cells(tmp_path):
    executed = json.loads(json.dumps(SOURCE))
    executed["cells"].insert(2, _cell("code", "x = 3", tags=["injected-parameters"]))
    params = {**CHAPTERS["ch05"].resolve("demo"), "seed": 3, "beta": 0.5}
    results = {"chapter": "ch05", "profile": "demo", "parameters": params, "seed": 3,
               "device": "cpu (2 threads)", "git_revision": "abc1234+dirty",
               "wall_time_s": 81.2, "inputs": {"data": "synthetic"}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = bookbuild.stamped(executed, tmp_path / "results.json")
    stamp = "".join(page["cells"][1]["source"])
    assert page["cells"][0]["source"] == "# Title" and page["cells"][1]["id"] == "irbook-stamp"
    for text in ("demo", "`seed = 3`", "`beta = 0.5`", "cpu (2 threads)", "`abc1234+dirty`",
                 "`synthetic`", "81.2 s",
                 "`irbook run ch05 --profile demo -p seed 3 -p beta 0.5`"):
        assert text in stamp, text
    hidden = [c["source"] for c in page["cells"] if "remove-cell" in c["metadata"].get("tags", [])]
    assert hidden == ["x = None", "x = 3"]
    assert "remove-cell" not in json.dumps(executed)  # the executed notebook is not changed
