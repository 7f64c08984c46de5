"""tools/gpu_check.py: bound arithmetic, peak lookup, table, a CPU dry run, the CUDA refusal."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def test_search_bounds_by_hand(gpu):
    # N=1000, Q=10, d=4: 2*1000*10*4 = 80,000 FLOP; float16 database 1000*4*2 = 8,000 bytes
    bounds = gpu.search_bounds(1000, 10, 4, 2, peak_flops=1e6, peak_bytes_per_s=1e3)
    assert bounds["flops"] == 80_000 and bounds["bytes"] == 8_000
    assert bounds["gemm_bound_s"] == pytest.approx(0.08)
    assert bounds["memory_bound_s"] == pytest.approx(8.0)
    assert bounds["bound"] == "memory" and bounds["bound_s"] == pytest.approx(8.0)
    fast_memory = gpu.search_bounds(1000, 10, 4, 4, peak_flops=1e6, peak_bytes_per_s=1e9)
    assert fast_memory["bytes"] == 16_000 and fast_memory["bound"] == "GEMM"
    assert fast_memory["bound_s"] == pytest.approx(0.08)


def test_database_is_scaled_down_to_half_the_free_memory(gpu):
    assert gpu.fit_database(10_000_000, 512, 2, free_bytes=80 * 2**30) == 10_000_000
    # 8e9 free bytes: half of it holds 3,906,250 rows of 1024 bytes -> whole millions: 3M
    assert gpu.fit_database(10_000_000, 512, 2, free_bytes=8_000_000_000) == 3_000_000
    assert gpu.fit_database(10_000, 512, 2, free_bytes=1_000_000) == 488
    assert gpu.fit_database(10_000, 512, 2, free_bytes=0) == 1


def test_peak_lookup_by_device_name(gpu):
    fake = [(r"h100 pcie", gpu.Peak("fake pcie", 1, 2, 3)), (r"h100", gpu.Peak("fake", 10, 20, 30))]
    assert gpu.lookup_peak("NVIDIA H100 PCIe", fake).label == "fake pcie"
    assert gpu.lookup_peak("NVIDIA H100 80GB HBM3", fake).label == "fake"
    assert gpu.lookup_peak("Tesla T4", fake) is None
    expected = {"NVIDIA H100 80GB HBM3": "H100 SXM", "NVIDIA H100 PCIe": "H100 PCIe",
                "NVIDIA H200": "H200 SXM", "NVIDIA A100-SXM4-80GB": "A100 80GB SXM",
                "NVIDIA A100 80GB PCIe": "A100 80GB PCIe", "NVIDIA A100-PCIE-40GB": "A100 40GB",
                "NVIDIA L4": "L4", "NVIDIA L40S": "L40S", "Tesla T4": "T4",
                "NVIDIA A10": "A10"}
    for name, label in expected.items():
        assert gpu.lookup_peak(name).label == label, name
    for unknown in ("NVIDIA GH200 480GB", "NVIDIA A10G", "cpu"):
        assert gpu.lookup_peak(unknown) is None, unknown


def test_override_wins_then_table_then_measurement(gpu):
    fake = [(r"h100", gpu.Peak("fake", 10, 20, 30))]

    def never() -> tuple[float, float]:
        raise AssertionError("measured although the table or an override had the number")

    flops, bandwidth, source = gpu.resolve_peaks("NVIDIA H100", "float16", 5.0, None, never, fake)
    assert flops == 5e12 and bandwidth == 30e9
    assert source == "FLOP/s: override; GB/s: datasheet fake"
    flops, bandwidth, _ = gpu.resolve_peaks("NVIDIA H100", "float32", None, 7.0, never, fake)
    assert flops == 20e12 and bandwidth == 7e9
    calls = []

    def measure() -> tuple[float, float]:
        calls.append(1)
        return 3e12, 4e11

    flops, bandwidth, source = gpu.resolve_peaks("Tesla T4", "float16", None, None, measure,
                                                 fake)
    assert (flops, bandwidth, len(calls)) == (3e12, 4e11, 1)
    assert "measured matmul" in source and "measured copy" in source


def test_busy_seconds_is_the_union_of_device_intervals(gpu):
    events = [{"ph": "X", "cat": "kernel", "ts": 0.0, "dur": 10.0},
              {"ph": "X", "cat": "kernel", "ts": 5.0, "dur": 10.0},  # overlaps: 0-15
              {"ph": "X", "cat": "kernel", "ts": 6.0, "dur": 2.0},  # inside
              {"ph": "X", "cat": "gpu_memcpy", "ts": 20.0, "dur": 5.0},
              {"ph": "X", "cat": "cpu_op", "ts": 0.0, "dur": 100.0},  # host side: ignored
              {"ph": "M", "name": "process_name"}]
    assert gpu.device_busy_seconds(events) == pytest.approx(20e-6)
    assert gpu.device_busy_seconds([]) == 0.0


def test_profiler_trace_is_read_back(gpu, monkeypatch):
    """The export-and-parse path of the busy fraction, on the CPU's activity."""
    from torch.profiler import ProfilerActivity

    monkeypatch.setattr(gpu, "DEVICE_CATEGORIES", ("cpu_op",))
    a = torch.randn(128, 128)

    def run() -> float:
        started = gpu.time.perf_counter()
        for _ in range(20):
            a @ a
        return gpu.time.perf_counter() - started

    assert 0 < gpu.profiler_busy(run, [ProfilerActivity.CPU]) <= 1
    monkeypatch.setattr(gpu, "DEVICE_CATEGORIES", ("kernel",))  # none recorded on the CPU
    assert gpu.profiler_busy(run, [ProfilerActivity.CPU]) is None


def test_goal_met(gpu):
    assert gpu.goal_met(0.9, 0.85, CUDA) == "yes"
    assert gpu.goal_met(0.5, 0.85, CUDA) == "no"
    assert gpu.goal_met(None, 0.85, CUDA) == "no"
    assert gpu.goal_met(0.9, 0.85, CPU) == "n/a on cpu"


def test_table_and_json_of_hand_made_rows(gpu):
    rows = [gpu.make_row("ch05 training step", "1,000.0 img/s, busy 90%", "busy >= 85%", "yes",
                         "googlenet | 224 px", images_per_second=1000.0),
            gpu.make_row("exact search", "50 QPS", ">= 60% of the bound", "no", qps=50.0,
                         fraction_of_bound=math.nan)]
    lines = gpu.format_table(rows).splitlines()
    assert lines[0] == "| Check | Result | Goal | Met | Notes |"
    assert lines[1] == "| --- | --- | --- | --- | --- |"
    assert lines[2] == ("| ch05 training step | 1,000.0 img/s, busy 90% | busy >= 85% | yes | "
                        "googlenet \\| 224 px |")
    assert lines[3] == "| exact search | 50 QPS | >= 60% of the bound | no |  |"
    report = json.loads(gpu.format_json({"rows": rows}))
    assert report["rows"][0]["values"] == {"images_per_second": 1000.0}
    assert report["rows"][1]["values"]["fraction_of_bound"] is None  # NaN is not JSON


def test_smoke_rows_stop_when_the_budget_is_spent(gpu, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(gpu.time, "perf_counter", lambda: clock[0])
    calls = []

    def runner(key, device, out_root, timeout_s):
        calls.append((key, device, timeout_s))
        clock[0] += 50.0
        return key != "ch03", 50.0, "" if key != "ch03" else "ch03 failed in cell 4: boom"

    rows = gpu.smoke_rows(["ch02", "ch03", "ch04"], CPU, deadline=115.0, runner=runner)
    assert calls == [("ch02", "cpu", 115.0), ("ch03", "cpu", 65.0)]
    assert [row["met"] for row in rows] == ["yes", "no", "n/a (budget)"]
    assert rows[0]["result"] == "pass in 50.0 s" and rows[1]["result"] == "FAIL in 50.0 s"
    assert rows[1]["notes"] == "ch03 failed in cell 4: boom"
    assert rows[2]["result"] == "not run" and "15 s of the budget left" in rows[2]["notes"]


def test_smoke_child_is_stopped_at_its_timeout(gpu, tmp_path):
    passed, seconds, message = gpu.run_smoke_child("ch02", "cpu", tmp_path, timeout_s=0.5)
    assert not passed and seconds < 30 and message == "stopped after 0 s (budget)"


def test_cpu_quick_run_prints_every_row(gpu, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu.main(["--device", "cpu", "--quick", "--skip-smoke", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {row["check"].replace(", quick (smoke sizes)", "").split(" (")[0]: row
            for row in report["rows"]}
    steps = [f"{key} training step, {p}" for key in ("ch05", "ch07") for p in ("fp32", "bf16")]
    assert list(rows) == [*steps, "exact search"]
    for step in steps:
        values = rows[step]["values"]
        assert values["images_per_second"] > 0 and values["steps"] == 2
        assert values["precision"] == step.rsplit(" ", 1)[1]
    assert rows["ch07 training step, bf16"]["values"]["images_per_step"] == 64  # 32 real + 32
    rows["exact search (torch)"] = rows.pop("exact search")
    search = rows["exact search (torch)"]["values"]
    assert search["qps"] > 0 and search["n"] == 20_000 and search["fraction_of_bound"] > 0
    assert search["flops"] == 2 * 20_000 * 200 * 64
    assert all(row["met"] == "n/a on cpu" for row in report["rows"])
    table = capsys.readouterr().out
    assert "| Check | Result | Goal | Met | Notes |" in table and "elapsed" in table
    assert table.count("n/a on cpu") == 5 and "img/s" in table and "QPS" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_exits_2_naming_the_cpu_dry_run(gpu, capsys):
    with pytest.raises(SystemExit) as exited:
        gpu.main(["--device", "cuda"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "sees no CUDA GPU" in message and "--device cpu --quick" in message
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "--device cpu --quick" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("argv", [["--n", "0"], ["--timeout", "-1"], ["--chapters", "ch99"],
                                  ["--dtype", "int8"]])
def test_bad_values_exit_2(gpu, capsys, argv):
    with pytest.raises(SystemExit) as exited:
        gpu.main(["--device", "cpu", *argv])
    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err
