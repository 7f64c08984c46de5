"""tools/bench_search.py: runs at tiny sizes, prints every ratio line, fails on its thresholds.

No speed is asserted here (the ratios are only printed); the full-size run is a manual step."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from irbook.search.index import INDEX_KINDS

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_search.py"
TINY = ["--n", "2000", "--queries", "50", "--dim", "32", "--k", "10", "--repeats", "2",
        "--gpu-n", "2000"]


def run_bench(*extra: str) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # steady on a busy machine
    return subprocess.run([sys.executable, str(SCRIPT), *extra], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_every_line_and_succeeds():
    result = run_bench(*TINY, "--min-ratio", "0", "--min-map-speedup", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for kind in INDEX_KINDS:
        assert any(re.fullmatch(rf"{kind} ratio \d+\.\d\d", line) for line in lines), kind
        assert any(line.strip().startswith(f"{kind}: irbook") and "recall@10" in line
                   for line in lines), kind
    assert any(re.fullmatch(r"map ratio \d+\.\d\d", line) for line in lines)
    assert any("agree to 0.0001" in line for line in lines)
    assert "gpu: none (skipped)" in lines or any(line.startswith("gpu exact:") for line in lines)
    assert "FAIL" not in result.stdout


def test_impossible_min_ratio_fails_the_process():
    small = ["--n", "600", "--queries", "10", "--dim", "16", "--k", "5", "--repeats", "1",
             "--gpu-n", "600"]
    result = run_bench(*small, "--parts", "search", "--min-ratio", "1000")
    assert result.returncode != 0 and "map ratio" not in result.stdout
    assert result.stdout.count("ratio below 1000") == len(INDEX_KINDS)


def test_impossible_map_speedup_fails(bench, capsys):
    small = ["--n", "600", "--queries", "10", "--dim", "16", "--k", "5", "--repeats", "1",
             "--gpu-n", "600"]
    assert bench.main([*small, "--parts", "map,gpu", "--min-map-speedup", "1e9"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: map speed-up below" in out and "exact ratio" not in out
    with pytest.raises(SystemExit):
        bench.main(["--parts", "search,sideways"])


def test_backend_parameters_scale_with_the_database(bench):
    assert bench.index_params("ivf_flat", 100_000, 512) == {"nlist": 1024, "nprobe": 16}
    assert bench.index_params("ivf_pq", 100_000, 512)["m"] == 64
    small = bench.index_params("ivf_pq", 2000, 32)
    assert small["nlist"] <= 2000 // 39 and 32 % small["m"] == 0
    assert bench.index_params("hnsw", 10, 8)["ef_search"] == 64


def test_gpu_exact_benchmark_code_runs_on_cpu(bench, capsys):
    qps = bench.bench_gpu_exact(500, 16, 20, 5, device="cpu", dtype=torch.float32,
                                gemm_size=64)
    assert qps > 0
    line = capsys.readouterr().out
    assert line.startswith("gpu exact:") and "of the GEMM bound" in line
    assert "of the memory-bandwidth bound" in line
