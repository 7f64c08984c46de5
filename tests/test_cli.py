"""The command line fails fast, before a kernel starts, on missing data or weights."""

import os
import subprocess
import sys

import pytest


def _irbook(*args, **env):
    return subprocess.run([sys.executable, "-m", "irbook.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_missing_pretrained_weights_are_named(tmp_path):
    done = _irbook("run", "ch02", "--profile", "full", IRBOOK_DATA=str(tmp_path / "data"),
                   TORCH_HOME=str(tmp_path / "torch"), IRBOOK_RUNS=str(tmp_path / "runs"))
    assert done.returncode == 2
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet101-63fe2227.pth"
    assert f"expected {expected}" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_real_dataset_names_path_and_source(tmp_path):
    done = _irbook("run", "ch02", "--profile", "full", "-p", "backbone", "smallcnn",
                   "-p", "dataset", "holidays", IRBOOK_DATA=str(tmp_path / "data"),
                   IRBOOK_RUNS=str(tmp_path / "runs"))
    assert done.returncode == 2
    assert str(tmp_path / "data" / "holidays") in done.stderr
    assert "How to get it" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_profile_is_refused(tmp_path):
    done = _irbook("run", "ch02", "--profile", "fast", IRBOOK_RUNS=str(tmp_path))
    assert done.returncode == 2
    assert "'--profile' got 'fast'; allowed: smoke, demo, full" in done.stderr


def test_profile_given_with_p_is_refused(tmp_path):
    done = _irbook("run", "ch02", "--profile", "smoke", "-p", "profile", "full",
                   IRBOOK_RUNS=str(tmp_path / "runs"))
    assert done.returncode == 2
    assert "'profile' cannot be given with -p (got 'full'); use --profile" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_cuda_without_a_gpu_is_refused(tmp_path):
    done = _irbook("run", "ch02", "--profile", "smoke", "-p", "device", "cuda",
                   IRBOOK_RUNS=str(tmp_path / "runs"), CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2
    assert done.stderr.strip() == ("irbook: error: parameter 'device' is 'cuda' but torch sees "
                                   "no GPU; allowed here: auto, cpu")
    assert not (tmp_path / "runs").exists()


def test_unwritable_runs_folder_is_refused_before_the_kernel(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = _irbook("run", "ch02", "--profile", "smoke", IRBOOK_RUNS=str(blocker / "runs"))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"irbook: error: cannot write to {blocker}: it is not a "
                                   "folder; make it writable or set IRBOOK_RUNS to another "
                                   "folder")


def _main_with_failing_run(monkeypatch, capsys, error):
    import irbook.runner
    from irbook.cli import main

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(irbook.runner, "run_chapter", fail)
    code = main(["run", "ch02", "--profile", "smoke", "--quiet"])
    return code, capsys.readouterr().err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    code, err = _main_with_failing_run(monkeypatch, capsys, KeyboardInterrupt())
    assert code == 130
    assert err == "irbook: interrupted; the same command resumes from the last finished epoch\n"


def test_failed_notebook_and_full_disk_are_messages_with_exit_1(monkeypatch, capsys, tmp_path):
    from irbook.runner import ChapterRunError
    from irbook.train.loop import CheckpointWriteError

    failed = ChapterRunError("ch02", tmp_path / "ch02.failed", "nb.ipynb", 7, "ValueError",
                             "boom", tmp_path / "ch02")
    code, err = _main_with_failing_run(monkeypatch, capsys, failed)
    assert code == 1
    assert err == (f"irbook: error: ch02 failed in cell 7: ValueError: boom\nwhat the run wrote "
                   f"is in {tmp_path / 'ch02.failed'}; no earlier run was in "
                   f"{tmp_path / 'ch02'}\n")
    code, err = _main_with_failing_run(monkeypatch, capsys,
                                       CheckpointWriteError(tmp_path / "c.pt"))
    assert code == 1
    assert err.startswith(f"irbook: error: no space left on the device while writing "
                          f"{tmp_path / 'c.pt'}; free some space")
    assert err.count("\n") == 1


def test_an_unexpected_error_keeps_its_traceback(monkeypatch, capsys):
    with pytest.raises(ZeroDivisionError):
        _main_with_failing_run(monkeypatch, capsys, ZeroDivisionError("bug"))
