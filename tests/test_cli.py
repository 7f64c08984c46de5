"""The command line fails fast, before a kernel starts, on missing data or weights."""

import os
import subprocess
import sys


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
