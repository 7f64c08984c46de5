"""One GPU check of the book in under five minutes, printed as one markdown table.

Rows (each with its goal and whether it was met):

1. The training step of chapter 5 (``kd_mmd``, the runner's incremental stage as
   ``tools/bench_train.py`` builds it) and of chapter 7 (DKD, method ``ours``: student and frozen
   teacher on the 2N-image batch of real and generated images, the on-the-fly teacher on the N
   real ones, one Adam over student and on-the-fly teacher, as ``run_lifelong`` trains a task),
   both with the ``full`` profile's backbone, image size and P x K batch, on random tensors
   already on the device (compute only; ``tools/bench_train.py --data synthetic`` times the
   JPEG loader). Images/s over the timed steps, the GPU's busy fraction and the peak GPU memory
   (``torch.cuda.max_memory_allocated``), each in fp32 (the thesis' arithmetic) and with bf16
   autocast (the chapters' ``precision`` parameter). Goal: busy >= 85%.
2. Exact search (torch backend of :func:`irbook.search.index.build_index`) of Q = 10k queries
   over N = 10M vectors of d = 512 (float16 on the GPU), k = 100: QPS and the fraction of the
   bound achieved, bound = max(GEMM bound 2 N Q d FLOP / peak FLOP/s of the dtype, memory bound
   N d bytes-per-element / peak bandwidth). Peaks: ``--peak-tflops``/``--peak-gbs`` when given,
   else the NVIDIA datasheet numbers of :data:`PEAKS` matched by the device name, else measured
   (a large matmul and a large copy). N is scaled down, and the row says so, when the database
   would take more than half the free GPU memory. Goal: >= 60% of the bound.
3. A smoke run of every chapter with ``device=cuda`` through ``irbook.runner.run_chapter``, each
   in a child process, so the budget can stop one that runs long: pass/fail and seconds.

Busy fraction: the CUDA kernels (and memcpy/memset) that CUPTI records through
``torch.profiler`` during a few extra steps after the timed ones; busy = length of the union of
their intervals / wall time of those steps. CUDA events around each step would not do here: the
training loop synchronises inside every step (``torch.isfinite(loss)``, ``loss.item()``), so
the event span equals the step's wall time even when the GPU idles between kernel launches.
Where the profiler records no kernels, ``torch.cuda.utilization()`` (NVML, needs pynvml) is
sampled during those steps instead; the row names the method used.

    python tools/gpu_check.py                        # on a CUDA machine, < 5 min
    python tools/gpu_check.py --device cpu --quick --skip-smoke   # dry run anywhere
    python tools/gpu_check.py --json gpu_check.json --peak-tflops 989 --peak-gbs 3350

Exit code 0 when no goal is missed, 1 when one is, 2 for bad options or no CUDA GPU.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

TOOLS = Path(__file__).resolve().parent
LIB = TOOLS.parent / "lib"
if importlib.util.find_spec("irbook") is None:  # a checkout without the package installed
    sys.path.insert(0, str(LIB))
if str(TOOLS) not in sys.path:  # bench_train.py and bench_search.py beside this file
    sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BUSY_GOAL = 0.85
SEARCH_GOAL = 0.60
METHOD_CH05 = "kd_mmd"  # bench_train.py's default: chapter 5's distillation + MMD
METHOD_CH07 = "ours"  # DKD + BN statistics: every term of Eq. 7.9
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
DATABASE_SHARE = 0.5  # the search database may take this share of the free GPU memory
MIN_SMOKE_SECONDS = 20.0  # a chapter is not started with less of the budget left
SEARCH_SECONDS = 60.0  # at most this long (and a quarter of what is left) on search repeats
FULL_SIZES = {"n": 10_000_000, "dim": 512, "queries": 10_000, "k": 100, "steps": 20}
QUICK_SIZES = {"n": 20_000, "dim": 64, "queries": 200, "k": 10, "steps": 2}


@dataclass(frozen=True)
class Peak:
    """Datasheet peaks: dense FP16/BF16 tensor and FP32 TFLOP/s, memory GB/s."""

    label: str
    fp16_tflops: float
    fp32_tflops: float
    gbs: float


PEAKS: tuple[tuple[str, Peak], ...] = (
    (r"(?<!g)h200 nvl", Peak("H200 NVL", 835, 60, 4800)),
    (r"(?<!g)h200", Peak("H200 SXM", 989, 67, 4800)),
    (r"h100 nvl", Peak("H100 NVL", 835, 60, 3900)),
    (r"h100 pcie", Peak("H100 PCIe", 756, 51, 2000)),
    (r"(?<!g)h100", Peak("H100 SXM", 989, 67, 3350)),
    (r"a100.*80gb pcie", Peak("A100 80GB PCIe", 312, 19.5, 1935)),
    (r"a100.*80gb", Peak("A100 80GB SXM", 312, 19.5, 2039)),
    (r"a100", Peak("A100 40GB", 312, 19.5, 1555)),
    (r"l40s", Peak("L40S", 362, 91.6, 864)),
    (r"\bl40\b", Peak("L40", 181, 90.5, 864)),
    (r"\bl4\b", Peak("L4", 121, 30.3, 300)),
    (r"\ba10\b", Peak("A10", 125, 31.2, 600)),
    (r"\bt4\b", Peak("T4", 65, 8.1, 320)),
    (r"v100.*sxm", Peak("V100 SXM2", 125, 15.7, 900)),
    (r"v100", Peak("V100 PCIe", 112, 14, 900)),
)
"""NVIDIA datasheet peaks (dense, without sparsity), first matching pattern of the lower-case
``torch.cuda.get_device_name()`` wins; unknown devices (GH200, A10G, ...) are measured."""


def _say(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def _bench_train() -> ModuleType:
    import bench_train  # imported late: it loads the chapter registry

    return bench_train


def _bench_search() -> ModuleType:
    import bench_search

    return bench_search


# --------------------------------------------------------------------------- options


SIZE_HELP = {"n": "search database size N", "dim": "vector dimension d",
             "queries": "number of queries Q", "k": "neighbours per query",
             "steps": "timed training steps"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cuda (default), or cpu: a dry run of the same code (goals then "
                             "read 'n/a on cpu')")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: the smoke profile's backbone and images, few steps, "
                             "small N")
    parser.add_argument("--skip-smoke", action="store_true", help="no chapter smoke runs")
    parser.add_argument("--chapters", default=None,
                        help="comma-separated chapters to smoke-run (default: all)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the rows as JSON to PATH")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="budget of the whole check (default 300): search repeats and "
                             "smoke runs that would not fit are left out, and say so")
    parser.add_argument("--peak-tflops", type=float, default=None, metavar="TFLOPS",
                        help="peak TFLOP/s of the search dtype (default: the datasheet table, "
                             "else measured)")
    parser.add_argument("--peak-gbs", type=float, default=None, metavar="GBS",
                        help="peak memory bandwidth in GB/s (default: the datasheet table, "
                             "else measured)")
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                        help="search database dtype on CUDA (default float16; the CPU search "
                             "is float32)")
    for name, text in SIZE_HELP.items():
        parser.add_argument(f"--{name}", type=int, default=None,
                            help=f"{text} (default {FULL_SIZES[name]:,}; {QUICK_SIZES[name]:,} "
                                 "with --quick)")
    return parser


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill the sizes from the profile (full or --quick) and refuse bad values (exit 2)."""
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name} got {getattr(args, name)}; allowed: an integer >= 1")
    for name in ("timeout", "peak_tflops", "peak_gbs"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} got {value}; allowed: a number > 0")
    from irbook.chapters import CHAPTERS

    keys = list(CHAPTERS) if args.chapters is None else args.chapters.split(",")
    unknown = [key for key in keys if key not in CHAPTERS]
    if unknown:
        parser.error(f"--chapters got {', '.join(unknown)}; allowed: {', '.join(CHAPTERS)}")
    args.chapter_keys = keys


def refuse_without_cuda(parser: argparse.ArgumentParser) -> None:
    """Exit 2 with a message naming the CPU dry run when torch sees no CUDA GPU."""
    built = torch.version.cuda or "no CUDA"
    parser.exit(2, f"gpu_check.py: --device cuda, but torch {torch.__version__} ({built}) sees "
                   "no CUDA GPU. Run it on a CUDA machine, or for a dry run on the CPU:\n"
                   "    python tools/gpu_check.py --device cpu --quick --skip-smoke\n")


# --------------------------------------------------------------------------- arithmetic


def lookup_peak(device_name: str,
                table: Sequence[tuple[str, Peak]] = PEAKS) -> Peak | None:
    """The first entry of ``table`` whose pattern occurs in the lower-case device name."""
    name = device_name.lower()
    return next((peak for pattern, peak in table if re.search(pattern, name)), None)


def resolve_peaks(device_name: str, dtype: str, tflops: float | None, gbs: float | None,
                  measure: Callable[[], tuple[float, float]],
                  table: Sequence[tuple[str, Peak]] = PEAKS) -> tuple[float, float, str]:
    """(peak FLOP/s, peak bytes/s, where each came from): override, else ``table``, else
    ``measure()`` (called only when needed; it returns FLOP/s and bytes/s)."""
    peak = lookup_peak(device_name, table)
    measured: list[tuple[float, float]] = []

    def measured_value(i: int) -> float:
        if not measured:
            measured.append(measure())
        return measured[0][i]

    if tflops is not None:
        flops, flops_from = tflops * 1e12, "override"
    elif peak is not None:
        rate = peak.fp16_tflops if dtype == "float16" else peak.fp32_tflops
        flops, flops_from = rate * 1e12, f"datasheet {peak.label}"
    else:
        flops, flops_from = measured_value(0), "measured matmul"
    if gbs is not None:
        bandwidth, bandwidth_from = gbs * 1e9, "override"
    elif peak is not None:
        bandwidth, bandwidth_from = peak.gbs * 1e9, f"datasheet {peak.label}"
    else:
        bandwidth, bandwidth_from = measured_value(1), "measured copy"
    return flops, bandwidth, f"FLOP/s: {flops_from}; GB/s: {bandwidth_from}"


def search_bounds(n: int, queries: int, dim: int, element_size: int, peak_flops: float,
                  peak_bytes_per_s: float) -> dict[str, Any]:
    """The two lower bounds on the time of an exact search and the larger one."""
    flops = 2 * n * queries * dim
    database_bytes = n * dim * element_size  # the database read once
    gemm_s, memory_s = flops / peak_flops, database_bytes / peak_bytes_per_s
    return {"flops": flops, "bytes": database_bytes, "gemm_bound_s": gemm_s,
            "memory_bound_s": memory_s, "bound_s": max(gemm_s, memory_s),
            "bound": "GEMM" if gemm_s >= memory_s else "memory"}


def fit_database(n: int, dim: int, element_size: int, free_bytes: int,
                 share: float = DATABASE_SHARE) -> int:
    """``n``, or the largest size (a multiple of a million when above one) whose database
    takes at most ``share`` of ``free_bytes``."""
    fits = int(share * free_bytes) // (dim * element_size)
    if fits >= n:
        return n
    return max(1, fits // 1_000_000 * 1_000_000 if fits >= 1_000_000 else fits)


def device_busy_seconds(events: Sequence[dict[str, Any]]) -> float:
    """Seconds covered by the union of the device activity intervals of a chrome trace
    (``ts``/``dur`` in microseconds; categories of :data:`DEVICE_CATEGORIES`)."""
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in events
                   if str(e.get("cat", "")).lower() in DEVICE_CATEGORIES and "ts" in e)
    total, reached = 0.0, -math.inf
    for start, end in spans:
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total / 1e6


def goal_met(value: float | None, goal: float, device: torch.device) -> str:
    """"yes"/"no" against ``goal`` on a GPU, "n/a on cpu" on the CPU."""
    if device.type != "cuda":
        return "n/a on cpu"
    return "yes" if value is not None and value >= goal else "no"


# --------------------------------------------------------------------------- table


def make_row(check: str, result: str, goal: str, met: str, notes: str = "",
             **values: Any) -> dict[str, Any]:
    return {"check": check, "result": result, "goal": goal, "met": met, "notes": notes,
            "values": values}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one markdown table: check, result, goal, met, notes."""
    columns = ("check", "result", "goal", "met", "notes")
    lines = ["| " + " | ".join(c.capitalize() for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_json(report: dict[str, Any]) -> str:
    """The report (rows and context) as JSON (NaN and inf as null)."""
    return json.dumps(_plain(report), indent=2) + "\n"


# --------------------------------------------------------------------------- training


@dataclass
class StepSetup:
    """One training step ready to run: what fit trains, its loss, optimizer and batch."""

    model: torch.nn.Module
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor]
    optimizer: torch.optim.Optimizer
    batch: Any
    images_per_step: int
    describe: str


def _sizes(key: str, quick: bool) -> tuple[str, int, int]:
    """Backbone, image size, embedding size of the full profile (the smoke one if quick)."""
    from irbook.chapters import get_chapter

    profile = get_chapter(key).spec.profiles["smoke" if quick else "full"]
    return profile["backbone"], profile["image_size"], profile["embedding_dim"]


def ch05_setup(device: torch.device, quick: bool) -> StepSetup:
    """Task 1 of chapter 5's one-step protocol, built by bench_train's ``_stage``."""
    from irbook.incremental.methods import make_method
    from irbook.incremental.runner import IncrementalConfig, make_optimizer

    bt = _bench_train()
    full, (backbone, size, dim) = bt.FULL, _sizes("ch05", quick)
    P, K = full["classes_per_batch"], full["samples_per_class"]
    config = IncrementalConfig(
        image_size=size, embedding_dim=dim, lr=full["lr"],
        backbone_lr_scale=full["backbone_lr_scale"], margin=full["margin"],
        classes_per_batch=P, samples_per_class=K, seed=full["seed"], device=device.type,
        backbone=backbone, pretrained=False, progress=False)
    old = bt.OLD_CLASSES
    tasks = [np.arange(old), np.arange(old, old + max(old, P))]
    method = make_method(METHOD_CH05)
    model, ctx = bt._stage(config, method, tasks, device)

    def loss_fn(module: torch.nn.Module, batch: Any) -> torch.Tensor:
        return method.loss(model, batch, ctx)[0]

    batch = bt._random_batch(tasks[1][:P], K, size, device)
    return StepSetup(model, loss_fn, make_optimizer(model, config), batch, P * K,
                     f"{backbone} {size} px, batch {P * K} = {P}x{K}, {METHOD_CH05}")


def _ch07_batch(P: int, K: int, generated_classes: int, size: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """P x K real images (labels 0..P-1), then as many generated ones (labels from P on)."""
    fake = min(P, generated_classes)
    labels = np.concatenate([np.repeat(np.arange(P), K), P + np.repeat(np.arange(fake), K)])
    images = torch.randn(len(labels), 3, size, size, device=device)
    return images, torch.from_numpy(labels).to(device)


def ch07_setup(device: torch.device, quick: bool) -> StepSetup:
    """A later task of chapter 7 with DKD, set up as ``run_lifelong`` trains it."""
    from irbook.chapters import get_chapter
    from irbook.incremental.lifelong import LifelongConfig, TrainedPair, lifelong_optimizer
    from irbook.incremental.lifelong_methods import METHODS, lifelong_loss, on_the_fly_teacher
    from irbook.incremental.runner import build_model, frozen_copy
    from irbook.train.loop import seed_everything

    full, (backbone, size, dim) = get_chapter("ch07").spec.profiles["full"], _sizes("ch07",
                                                                                   quick)
    P, K = full["classes_per_batch"], full["samples_per_class"]
    names = ("lr", "backbone_lr_scale", "metric_loss", "margin", "lambda_kd1", "lambda_kd2",
             "generated_images", "generated_classes", "seed")
    config = LifelongConfig(image_size=size, embedding_dim=dim, classes_per_batch=P,
                            samples_per_class=K, device=device.type, backbone=backbone,
                            pretrained=False, progress=False, **{n: full[n] for n in names})
    method = METHODS[METHOD_CH07]
    seed_everything(config.seed)
    model = build_model(config.incremental()).to(device)
    teacher, student = frozen_copy(model), copy.deepcopy(model)
    otf = on_the_fly_teacher(config, 1).to(device)

    def loss_fn(module: torch.nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        return lifelong_loss(student, images, labels, method, config, P, teacher, otf)[0]

    batch = _ch07_batch(P, K, config.generated_classes, size, device)
    optimizer = lifelong_optimizer([student, otf], config.incremental())
    return StepSetup(TrainedPair(student, otf), loss_fn, optimizer, batch, len(batch[1]),
                     f"{backbone} {size} px, batch {len(batch[1])} = {P}x{K} real + "
                     f"{len(batch[1]) - P * K} generated, {METHOD_CH07} (DKD)")


def profiler_busy(run: Callable[[], float], activities: Sequence[Any] | None = None
                  ) -> float | None:
    """Busy fraction of ``run`` (returns its wall seconds) from the device activity that
    ``torch.profiler`` records (``activities``, default CUDA); None when it records none."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check-trace-") as folder:
            with profile(activities=list(activities or [ProfilerActivity.CUDA])) as prof:
                wall = run()
            path = Path(folder) / "trace.json"
            prof.export_chrome_trace(str(path))
            events = json.loads(path.read_text()).get("traceEvents", [])
    except Exception as error:  # noqa: BLE001 - no profiler here: fall back
        _say(f"torch.profiler failed ({type(error).__name__}: {error})")
        return None
    busy = device_busy_seconds(events)
    return min(1.0, busy / wall) if busy > 0 and wall > 0 else None


def nvml_busy(run: Callable[[], float], device: torch.device) -> float | None:
    """Mean of ``torch.cuda.utilization`` (NVML) sampled every 20 ms during ``run``."""
    try:
        torch.cuda.utilization(device)
    except Exception:  # noqa: BLE001 - pynvml missing or NVML unusable
        return None
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(torch.cuda.utilization(device))
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        run()
    finally:
        stop.set()
        thread.join()
    return statistics.fmean(samples) / 100 if samples else None


def measure_busy(run: Callable[[], float], device: torch.device) -> tuple[float | None, str]:
    """(busy fraction, method): CUPTI kernel time / wall, else NVML utilization."""
    fraction = profiler_busy(run)
    if fraction is not None:
        return fraction, "CUPTI kernel time / wall"
    fraction = nvml_busy(run, device)
    if fraction is not None:
        return fraction, "NVML utilization"
    return None, "not measured (no profiler kernels, no NVML)"


def time_training(setup: StepSetup, device: torch.device, steps: int, warmup: int,
                  profiled: int, precision: str = "fp32") -> dict[str, Any]:
    """Warm-up steps, timed steps (images/s), then profiled steps (busy fraction), with the
    training step at ``precision`` (fp32, or bf16 autocast)."""
    bt = _bench_train()

    def run(count: int, seed: int) -> float:
        return bt._timed_fit(setup.model, [setup.batch] * count, setup.loss_fn,
                             setup.optimizer, device, seed, precision)

    run(warmup, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = run(steps, 2)
    values: dict[str, Any] = {"images_per_second": setup.images_per_step * steps / seconds,
                              "seconds_per_step": seconds / steps, "steps": steps,
                              "images_per_step": setup.images_per_step}
    if device.type == "cuda":
        busy, how = measure_busy(lambda: run(profiled, 3), device)
        values.update(busy_fraction=busy, busy_method=how, profiled_steps=profiled,
                      peak_gpu_memory_mib=torch.cuda.max_memory_allocated(device) / 2**20)
    return values


def training_row(key: str, device: torch.device, args: argparse.Namespace,
                 precision: str = "fp32") -> dict[str, Any]:
    """The row of one chapter's training step at ``precision``."""
    _say(f"{key} training step, {precision}")
    setup = (ch05_setup if key == "ch05" else ch07_setup)(device, args.quick)
    warmup, profiled = (1, 1) if args.quick else (3, 5)
    values = time_training(setup, device, args.steps, warmup, profiled, precision)
    result = f"{values['images_per_second']:,.1f} img/s"
    busy = values.get("busy_fraction")
    if device.type == "cuda":
        result += (f", busy {100 * busy:.0f}%" if busy is not None else ", busy n/a")
        result += f", peak {values['peak_gpu_memory_mib'] / 1024:.2f} GiB"
    steps = f"{args.steps} timed step{'s' if args.steps != 1 else ''}"
    notes = f"{setup.describe}; {steps} after {warmup} warm-up"
    if "busy_method" in values:
        notes += f"; busy: {values['busy_method']} over {profiled} more steps"
    profile = "quick (smoke sizes)" if args.quick else "full profile"
    return make_row(f"{key} training step, {profile}, {precision}", result,
                    f"busy >= {BUSY_GOAL:.0%}", goal_met(busy, BUSY_GOAL, device), notes,
                    precision=precision, **values)


# --------------------------------------------------------------------------- search


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_search(search: Callable[[], Any], warm_up: Callable[[], Any], device: torch.device,
                budget_s: float) -> tuple[float, int]:
    """Median seconds of ``search`` after ``warm_up``: one run, and up to two more while the
    runs so far fit in ``budget_s``; (seconds, runs)."""
    warm_up()
    times: list[float] = []
    while len(times) < 3 and (not times or sum(times) + times[-1] <= budget_s):
        _sync(device)
        started = time.perf_counter()
        search()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times)


def _time_index(index: Any, queries: torch.Tensor, k: int, device: torch.device,
                budget_s: float) -> tuple[float, int]:
    """:func:`time_search` of ``index.search(queries, k)``, warmed up on 256 queries."""
    return time_search(lambda: index.search(queries, k),
                       lambda: index.search(queries[:256], k), device, budget_s)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of the GPU, or the available memory of the machine on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_search(args: argparse.Namespace, device: torch.device,
               budget_s: float) -> dict[str, Any]:
    """Exact torch search of the sizes of ``args``: QPS and sizes (the database is freed)."""
    from irbook.search.index import build_index

    bs = _bench_search()
    dtype = torch.float16 if device.type == "cuda" and args.dtype == "float16" else torch.float32
    n = fit_database(args.n, args.dim, dtype.itemsize, free_memory_bytes(device))
    database = bs.random_unit_rows(n, args.dim, dtype, device, seed=0)
    queries = bs.random_unit_rows(args.queries, args.dim, dtype, device, seed=1)
    index = build_index(database, "exact", backend="torch", device=device)
    k = min(args.k, n)
    seconds, runs = _time_index(index, queries, k, device, budget_s)
    element_size = index.engine.element_size()
    values = {"n": n, "n_asked": args.n, "dim": args.dim, "queries": args.queries, "k": k,
              "dtype": str(index.engine.dtype).removeprefix("torch."), "seconds": seconds,
              "runs": runs, "qps": args.queries / seconds, "element_size": element_size,
              "engine": index.describe()}
    del database, queries, index
    _free_memory(device)
    return values


def search_row(args: argparse.Namespace, device: torch.device, device_name: str,
               budget_s: float) -> dict[str, Any]:
    """The row of the exact search: QPS and the fraction of the GEMM/memory bound."""
    _say(f"exact search N={args.n:,} d={args.dim} Q={args.queries:,}")
    values = run_search(args, device, budget_s)
    dtype = torch.float16 if values["dtype"] == "float16" else torch.float32
    gemm, copy_elements = (8192, 1 << 28) if device.type == "cuda" else (1024, 1 << 24)
    flops, bandwidth, source = resolve_peaks(
        device_name, values["dtype"], args.peak_tflops, args.peak_gbs,
        lambda: _bench_search().device_peaks(device, dtype, gemm, copy_elements))
    bounds = search_bounds(values["n"], values["queries"], values["dim"],
                           values["element_size"], flops, bandwidth)
    fraction = bounds["bound_s"] / values["seconds"]
    values.update(bounds, fraction_of_bound=fraction, peak_tflops=flops / 1e12,
                  peak_gbs=bandwidth / 1e9, peaks_from=source)
    result = (f"{values['qps']:,.0f} QPS, {100 * fraction:.0f}% of the {bounds['bound']} "
              f"bound")
    notes = (f"N={values['n']:,} d={values['dim']} {values['dtype']} Q={values['queries']:,} "
             f"k={values['k']}, median of {values['runs']}; GEMM bound "
             f"{1000 * bounds['gemm_bound_s']:.1f} ms at {flops / 1e12:.1f} TFLOP/s, memory "
             f"bound {1000 * bounds['memory_bound_s']:.2f} ms at {bandwidth / 1e9:,.0f} GB/s "
             f"({source})")
    if values["n"] < values["n_asked"]:
        memory = "GPU memory" if device.type == "cuda" else "memory"
        notes += (f"; N scaled down from {values['n_asked']:,}: the database would take more "
                  f"than {DATABASE_SHARE:.0%} of the free {memory}")
    check = f"exact search (torch), N={values['n']:,}, d={values['dim']}"
    return make_row(check, result, f">= {SEARCH_GOAL:.0%} of the bound",
                    goal_met(fraction, SEARCH_GOAL, device), notes, **values)


# --------------------------------------------------------------------------- smoke runs

SMOKE_CHILD = """
import sys
from pathlib import Path
from irbook.runner import run_chapter
try:
    run_chapter(sys.argv[1], "smoke", {"device": sys.argv[2]}, out_root=Path(sys.argv[3]),
                progress=False)
except Exception as error:
    print("GPU_CHECK_ERROR " + (str(error).splitlines() or [type(error).__name__])[0])
    sys.exit(1)
"""


def run_smoke_child(key: str, device: str, out_root: Path,
                    timeout_s: float) -> tuple[bool, float, str]:
    """``run_chapter(key, "smoke", {"device": device})`` in a child process (its own process
    group, killed after ``timeout_s``); (passed, seconds, message)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(LIB), *filter(None, [os.environ.get("PYTHONPATH")])]))
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", SMOKE_CHILD, key, device, str(out_root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the child and what it started
        except ProcessLookupError:  # it ended in between
            pass
        child.communicate()
        return False, time.perf_counter() - started, f"stopped after {timeout_s:.0f} s (budget)"
    seconds = time.perf_counter() - started
    if child.returncode == 0:
        return True, seconds, ""
    lines = [line for line in out.splitlines() if line.startswith("GPU_CHECK_ERROR ")]
    message = (lines[-1].removeprefix("GPU_CHECK_ERROR ") if lines
               else (err.strip().splitlines() or [f"exit code {child.returncode}"])[-1])
    return False, seconds, message[:300]


SmokeRunner = Callable[[str, str, Path, float], tuple[bool, float, str]]


def smoke_rows(keys: Sequence[str], device: torch.device, deadline: float,
               runner: SmokeRunner = run_smoke_child) -> list[dict[str, Any]]:
    """One row per chapter: its smoke run, or "not run" when the budget is spent
    (``deadline`` on the ``time.perf_counter`` clock)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-runs-") as root:
        for key in keys:
            check = f"{key} smoke run, device={device.type}"
            left = deadline - time.perf_counter()
            if left < MIN_SMOKE_SECONDS:
                rows.append(make_row(check, "not run", "passes", "n/a (budget)",
                                     f"{max(left, 0):.0f} s of the budget left", seconds=None,
                                     passed=None))
                continue
            _say(f"{key} smoke run")
            passed, seconds, message = runner(key, device.type, Path(root), left)
            rows.append(make_row(check, f"{'pass' if passed else 'FAIL'} in {seconds:.1f} s",
                                 "passes", "yes" if passed else "no", message,
                                 seconds=seconds, passed=passed))
    return rows


# --------------------------------------------------------------------------- main


def _guarded(check: str, goal: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``, or a failed row naming the error (the other checks still run)."""
    try:
        return make()
    except Exception as error:  # noqa: BLE001 - one broken check must not hide the others
        _say(f"{check} failed: {type(error).__name__}: {error}")
        return make_row(check, f"error: {type(error).__name__}", goal, "no",
                        str(error).splitlines()[0][:300] if str(error) else "")


TRAINING_ROWS = (("ch05", "fp32"), ("ch05", "bf16"), ("ch07", "fp32"), ("ch07", "bf16"))
"""The training steps timed: each chapter in the thesis' fp32 and with bf16 autocast."""


def run_checks(args: argparse.Namespace, device: torch.device, device_name: str,
               started: float) -> list[dict[str, Any]]:
    """Every row: training steps, search, smoke runs (the budget counted from ``started``)."""
    deadline = started + args.timeout
    rows = []
    for key, precision in TRAINING_ROWS:
        rows.append(_guarded(f"{key} training step, {precision}", f"busy >= {BUSY_GOAL:.0%}",
                             lambda key=key, p=precision: training_row(key, device, args, p)))
        _free_memory(device)
    search_budget = min(SEARCH_SECONDS, max(0.0, deadline - time.perf_counter()) / 4)
    rows.append(_guarded("exact search", f">= {SEARCH_GOAL:.0%} of the bound",
                         lambda: search_row(args, device, device_name, search_budget)))
    if not args.skip_smoke:
        rows += smoke_rows(args.chapter_keys, device, deadline)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        refuse_without_cuda(parser)
    validate(parser, args)
    from irbook.device import describe_device

    started = time.perf_counter()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = run_checks(args, device, name, started)
    elapsed = time.perf_counter() - started
    print(f"gpu_check on {describe_device(device.type)}, torch {torch.__version__}"
          f"{', quick sizes' if args.quick else ''}\n")
    print(format_table(rows))
    print(f"\nelapsed {elapsed:.1f} s (budget {args.timeout:.0f} s)")
    if args.json is not None:
        report = {"device": device.type, "device_name": name, "torch": torch.__version__,
                  "quick": args.quick, "elapsed_s": elapsed, "budget_s": args.timeout,
                  "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(format_json(report))
    return 1 if any(row["met"] == "no" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
