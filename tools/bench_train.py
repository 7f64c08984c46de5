"""Training throughput (images/second) of the chapters 5-6 training loop, ``full`` profile.

One incremental stage is set up as the runner does it (task 0 = 100 old classes, task 1 = the
new classes; a frozen copy of the model as teacher for the methods that need one; the method's
``before_task`` hook), then :func:`irbook.train.loop.fit` runs warm-up batches and timed
batches: forward, the method's loss, backward and the Adam step of the runner.

    python tools/bench_train.py                                    # full profile, GPU if any
    python tools/bench_train.py --backbone smallcnn --image-size 32 --device cpu
    python tools/bench_train.py --data synthetic --num-workers 8 --json bench.json

``--data random`` feeds one batch of random tensors already on the device (pure compute);
``--data synthetic`` reads JPEG files through the runner's data pipeline and also times the
loader alone, so a reader sees whether decoding is the bottleneck.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if importlib.util.find_spec("irbook") is None:  # a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from irbook.chapters import get_chapter  # noqa: E402
from irbook.data.finegrained import LabelledSet  # noqa: E402
from irbook.data.samplers import ClassBalancedBatchSampler  # noqa: E402
from irbook.data.synth.store import save_jpeg  # noqa: E402
from irbook.device import DEVICES, describe_device, resolve_device  # noqa: E402
from irbook.incremental.evaluation import default_dataset_factory, metric_names  # noqa: E402
from irbook.incremental.methods import (  # noqa: E402
    METHODS,
    FirstStage,
    Method,
    TaskContext,
    make_method,
)
from irbook.incremental.runner import (  # noqa: E402
    IncrementalConfig,
    build_model,
    frozen_copy,
    make_optimizer,
)
from irbook.models import BACKBONES, require_pretrained_weights  # noqa: E402
from irbook.train.loop import PRECISIONS, fit, seed_everything  # noqa: E402

CH05 = get_chapter("ch05")
FULL = CH05.spec.profiles["full"]
OLD_CLASSES = 100  # CUB-200-2011 one-step protocol: 100 old classes, then 100 new ones
SOURCE_SIZE = "500x375"  # width x height of a typical CUB-200-2011 photo
DATA_CHOICES = ("random", "synthetic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_train.py",
        description="Images/second of the chapters 5-6 training loop (forward, method loss, "
                    "backward, optimizer step) with the full profile's settings.",
        epilog="--data synthetic: the synthetic fine-grained presets (ensure_finegrained) "
               "render 48-64 px images, too small for real-size crops, so this writes random-"
               "content JPEG files of the real CUB shape (--source-size) to a temporary folder "
               "and reads them through the runner's pipeline (LabelledImageDataset: decode, "
               "RandomResizedCrop, flip, normalise; ClassBalancedBatchSampler; DataLoader with "
               "--num-workers). The timed loop then includes data loading, and the loader is "
               "also timed alone. --data random feeds one batch of random tensors of the real "
               "shape, already on the device (compute only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--method", default="kd_mmd",
                        help=f"incremental method; one of {', '.join(METHODS)} (methods with a "
                             "teacher get a frozen copy of the model)")
    parser.add_argument("--backbone", default=FULL["backbone"],
                        help=f"one of {', '.join(BACKBONES)}")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                        help="ImageNet weights from the local torch cache (throughput does "
                             "not depend on the weights)")
    parser.add_argument("--image-size", type=int, default=FULL["image_size"],
                        help="training crop in pixels")
    parser.add_argument("--embedding-dim", type=int, default=FULL["embedding_dim"],
                        help="size of the embedding")
    parser.add_argument("--classes-per-batch", type=int, default=FULL["classes_per_batch"],
                        help="P of the P x K batch")
    parser.add_argument("--samples-per-class", type=int, default=FULL["samples_per_class"],
                        help="K of the P x K batch")
    parser.add_argument("--iterations", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)}")
    parser.add_argument("--data", default="random", help=f"one of {', '.join(DATA_CHOICES)}")
    parser.add_argument("--source-size", default=SOURCE_SIZE,
                        help="WIDTHxHEIGHT of the JPEG files of --data synthetic")
    parser.add_argument("--num-workers", type=int, default=IncrementalConfig.num_workers,
                        help="DataLoader workers of --data synthetic (the runner uses 0)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="arithmetic of the training step (bf16: bfloat16 autocast)")
    parser.add_argument("--seed", type=int, default=FULL["seed"],
                        help="seed of the weights and the data")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the result as JSON to PATH")
    return parser


def _check_choice(parser: argparse.ArgumentParser, option: str, value: str,
                  choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        parser.error(f"{option} got {value!r}; allowed: {', '.join(choices)}")


def _check_range(parser: argparse.ArgumentParser, option: str, value: int, low: int,
                 high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        parser.error(f"{option} got {value}; allowed: {allowed}")


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad options before any work (argparse exits with code 2 and the message)."""
    _check_choice(parser, "--method", args.method, list(METHODS))
    _check_choice(parser, "--backbone", args.backbone, BACKBONES)
    _check_choice(parser, "--device", args.device, DEVICES)
    _check_choice(parser, "--data", args.data, DATA_CHOICES)
    spec = {p.name: p for p in CH05.spec.params}  # the chapters' own bounds
    for name in ("image_size", "embedding_dim", "classes_per_batch", "samples_per_class"):
        param = spec[name]
        _check_range(parser, "--" + name.replace("_", "-"), getattr(args, name),
                     int(param.low), int(param.high))
    _check_range(parser, "--iterations", args.iterations, 1)
    _check_range(parser, "--warmup", args.warmup, 0)
    _check_range(parser, "--num-workers", args.num_workers, 0)
    _check_range(parser, "--seed", args.seed, 0, 2**31 - 1)
    try:
        width, height = (int(v) for v in args.source_size.lower().split("x"))
    except ValueError:
        width = height = 0
    if min(width, height) < 16:
        parser.error(f"--source-size got {args.source_size!r}; allowed: WIDTHxHEIGHT with both "
                     "at least 16, e.g. 500x375")
    args.source = (width, height)
    if args.pretrained:
        if args.backbone == "smallcnn":
            parser.error("--pretrained: smallcnn has no ImageNet weights; use --no-pretrained")
        try:
            require_pretrained_weights(args.backbone)
        except FileNotFoundError as error:
            parser.error(f"--pretrained: {error}")
    try:
        args.device = resolve_device(args.device)
    except (ValueError, RuntimeError) as error:
        parser.error(f"--device: {error}")


# --------------------------------------------------------------------------- data


def _labels(classes: np.ndarray, per_class: int) -> np.ndarray:
    return np.repeat(np.asarray(classes, dtype=np.int64), per_class)


def _random_batch(classes: np.ndarray, per_class: int, image_size: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A P x K batch of random normalised images of ``classes`` (classifier indices)."""
    labels = torch.from_numpy(_labels(classes, per_class)).to(device)
    return torch.randn(len(labels), 3, image_size, image_size, device=device), labels


def _write_jpegs(folder: Path, classes: np.ndarray, per_class: int,
                 size: tuple[int, int], seed: int) -> LabelledSet:
    """``per_class`` JPEG files (quality of the synthetic data) of ``size`` for each class:
    smooth random colour fields with a little noise, so they compress like photos."""
    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for label in classes.tolist():
        for k in range(per_class):
            coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
            smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC),
                                dtype=np.float32)
            noisy = smooth + rng.normal(0.0, 8.0, smooth.shape)
            image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
            path = folder / f"{label:03d}" / f"{k:04d}.jpg"
            save_jpeg(image, path)
            paths.append(path)
    return LabelledSet(paths, _labels(classes, per_class))


def _synthetic_loader(images: LabelledSet, config: IncrementalConfig, batches: int,
                      seed: int) -> DataLoader:
    """The runner's training loader (``_Run.loader``) over ``images``, ``batches`` long."""
    sampler = ClassBalancedBatchSampler(images.labels, config.classes_per_batch,
                                        config.samples_per_class, batches, seed=seed)
    dataset = default_dataset_factory(images, config.image_size, True)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers)


# --------------------------------------------------------------------------- benchmark


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage(config: IncrementalConfig, method: Method, tasks: list[np.ndarray],
           device: torch.device) -> tuple[torch.nn.Module, TaskContext]:
    """Model, teacher(s) and context of task 1, built as ``run_incremental`` builds them."""
    model = build_model(config, num_classes=len(tasks[0])).to(device)
    first = FirstStage()  # its state (ALASSO's path integral) seeds the ALASSO method
    first_ctx = TaskContext(task=0, tasks=tasks, margin=config.margin, device=device,
                            model=model)
    first.before_task(first_ctx)
    first.after_task(first_ctx)
    teacher = frozen_copy(model) if method.needs_teacher or method.needs_all_teachers else None
    model.grow_classes(len(tasks[1]),
                       generator=torch.Generator().manual_seed(config.seed * 7919 + 1))
    model.to(device)
    metrics = metric_names((1, 2, 4))
    P, K, size = config.classes_per_batch, config.samples_per_class, config.image_size

    def make_loader(j: int) -> list:  # EWC's Fisher of task 0: one random batch suffices here
        return [_random_batch(tasks[j][:P], K, size, device)]

    ctx = TaskContext(task=1, tasks=tasks, margin=config.margin, device=device, model=model,
                      teacher=teacher, teachers=[teacher] if method.needs_all_teachers else [],
                      accuracy={m: np.full((2, 2), np.nan) for m in metrics},
                      before={m: np.full(2, np.nan) for m in metrics},
                      make_loader=make_loader, first_stage_state=first.state_dict())
    seed_everything(config.seed + 1)
    method.before_task(ctx)
    return model, ctx


def _timed_fit(model, batches, loss_fn, optimizer, device: torch.device, seed: int,
               precision: str = "fp32") -> float:
    _sync(device)
    started = time.perf_counter()
    fit(model, batches, loss_fn, optimizer, epochs=1, device=device, seed=seed, progress=False,
        precision=precision)
    _sync(device)
    return time.perf_counter() - started


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark of validated ``args``; the result as a JSON-ready dict."""
    device = torch.device(args.device)
    config = IncrementalConfig(
        image_size=args.image_size, embedding_dim=args.embedding_dim, lr=FULL["lr"],
        backbone_lr_scale=FULL["backbone_lr_scale"], margin=FULL["margin"],
        classes_per_batch=args.classes_per_batch, samples_per_class=args.samples_per_class,
        seed=args.seed, device=args.device, backbone=args.backbone, pretrained=args.pretrained,
        num_workers=args.num_workers, progress=False)
    P, K = config.classes_per_batch, config.samples_per_class
    tasks = [np.arange(OLD_CLASSES), np.arange(OLD_CLASSES, OLD_CLASSES + max(OLD_CLASSES, P))]
    method = make_method(args.method)
    model, ctx = _stage(config, method, tasks, device)
    optimizer = make_optimizer(model, config)

    def loss_fn(module: torch.nn.Module, batch: Any) -> torch.Tensor:
        return method.loss(model, batch, ctx)[0]

    result: dict[str, Any] = {
        "device": device.type, "device_name": describe_device(device.type),
        "backbone": args.backbone, "pretrained": args.pretrained, "method": args.method,
        "data": args.data, "batch_size": P * K, "classes_per_batch": P,
        "samples_per_class": K, "image_size": args.image_size,
        "embedding_dim": args.embedding_dim, "iterations": args.iterations,
        "warmup": args.warmup, "precision": args.precision, "torch": torch.__version__,
    }
    new_classes = tasks[1][:P]
    with tempfile.TemporaryDirectory(prefix="bench_train-") as folder:
        if args.data == "random":
            batch = _random_batch(new_classes, K, config.image_size, device)
            warmup, timed = [batch] * args.warmup, [batch] * args.iterations
        else:
            images = _write_jpegs(Path(folder), new_classes, K, args.source, args.seed)
            warmup = _synthetic_loader(images, config, max(args.warmup, 1), args.seed)
            timed = _synthetic_loader(images, config, args.iterations, args.seed + 1)
            for _ in warmup:  # fills the page cache (and checks the files)
                pass
            started = time.perf_counter()
            loaded = sum(len(labels) for _, labels in timed)
            loader_seconds = time.perf_counter() - started
            result.update(source_size=list(args.source), num_workers=args.num_workers,
                          loader_seconds=loader_seconds,
                          loader_images_per_second=loaded / loader_seconds)
        if args.warmup:
            _timed_fit(model, warmup, loss_fn, optimizer, device, args.seed, args.precision)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = _timed_fit(model, timed, loss_fn, optimizer, device, args.seed + 1,
                             args.precision)
    result.update(seconds=seconds, seconds_per_iteration=seconds / args.iterations,
                  images_per_second=P * K * args.iterations / seconds,
                  timed_includes_loading=args.data == "synthetic")
    if device.type == "cuda":
        result["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def format_table(result: dict[str, Any]) -> str:
    """The result as a two-column text table."""
    data = ("random tensors on the device (compute only)" if result["data"] == "random" else
            "JPEG {}x{} through the training loader, {} workers (timed loop includes "
            "loading)".format(*result["source_size"], result["num_workers"]))
    rows = [
        ("device", result["device_name"]),
        ("backbone", f"{result['backbone']} "
                     f"({'ImageNet' if result['pretrained'] else 'random'} weights)"),
        ("method", result["method"]),
        ("data", data),
        ("batch size", f"{result['batch_size']} ({result['classes_per_batch']} classes x "
                       f"{result['samples_per_class']} images)"),
        ("image size", f"{result['image_size']} px"),
        ("precision", result.get("precision", "fp32")),
        ("iterations", f"{result['iterations']} timed after {result['warmup']} warm-up"),
        ("seconds", f"{result['seconds']:.3f} ({1000 * result['seconds_per_iteration']:.1f} "
                    "ms per iteration)"),
        ("images/second", f"{result['images_per_second']:.1f}"),
    ]
    if "loader_images_per_second" in result:
        rows.append(("loader alone, images/second",
                     f"{result['loader_images_per_second']:.1f}"))
    if "peak_gpu_memory_mib" in result:
        rows.append(("peak GPU memory", f"{result['peak_gpu_memory_mib']:.0f} MiB"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    result = benchmark(args)
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
