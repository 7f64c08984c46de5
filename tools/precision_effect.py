"""The effect of bf16 autocast on the chapter-5 metrics: one stage trained in fp32 and in bf16.

For each seed, the chapter-5 stage of ``irbook.incremental.ddp_stage`` (first stage on the old
half of synthetic CUB-200, then the new half at once with the chapter's KD + MMD method) is
trained twice from the same seed, once per precision, and the old/new Recall@k and mAP are
printed side by side with their difference (bf16 - fp32) and the mean difference over seeds.

    python tools/precision_effect.py --profile demo --device cuda --seeds 3
    python tools/precision_effect.py --profile smoke --json effect.json    # a quick CPU run

On a CPU without native bfloat16 arithmetic the bf16 runs are several times slower than fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np  # noqa: E402

from irbook.incremental import ddp_stage  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=("smoke", "demo"),
                        help="the chapter-5 profile whose stage is trained")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. seeds-1")
    parser.add_argument("--method", default="ours", choices=sorted(ddp_stage.METHODS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    return parser


def measure(profile: str, seeds: int, method: str, device: str) -> dict[str, Any]:
    """Every seed's metrics and seconds per precision."""
    runs: dict[str, Any] = {p: [] for p in PRECISIONS}
    with tempfile.TemporaryDirectory(prefix="precision_effect-") as folder:
        for seed in range(seeds):
            for precision in PRECISIONS:
                started = time.perf_counter()
                result = ddp_stage.run_stage(Path(folder) / f"{seed}-{precision}", method,
                                             device=device, precision=precision,
                                             profile=profile, seed=seed)
                runs[precision].append({"seconds": time.perf_counter() - started,
                                        "metrics": result["metrics"]})
    return {"profile": profile, "method": method, "device": device, "seeds": seeds,
            "runs": runs}


def differences(report: dict[str, Any]) -> dict[str, list[float]]:
    """Per metric, bf16 - fp32 of every seed."""
    fp32, bf16 = report["runs"]["fp32"], report["runs"]["bf16"]
    return {name: [b["metrics"][name] - a["metrics"][name] for a, b in zip(fp32, bf16,
                                                                          strict=True)]
            for name in fp32[0]["metrics"]}


def format_table(report: dict[str, Any]) -> str:
    """Markdown: metric, fp32 mean, bf16 mean, mean difference (min .. max over seeds)."""
    lines = ["| metric | fp32 | bf16 | bf16 - fp32 (min .. max) |", "| --- | --- | --- | --- |"]
    for name, diffs in differences(report).items():
        means = [np.mean([r["metrics"][name] for r in report["runs"][p]]) for p in PRECISIONS]
        lines.append(f"| {name} | {means[0]:.2f} | {means[1]:.2f} | {np.mean(diffs):+.2f} "
                     f"({min(diffs):+.2f} .. {max(diffs):+.2f}) |")
    seconds = [sum(r["seconds"] for r in report["runs"][p]) for p in PRECISIONS]
    lines.append(f"\n{report['profile']} profile, {report['seeds']} seed(s), method "
                 f"{report['method']}, {report['device']}: fp32 {seconds[0]:.0f} s, "
                 f"bf16 {seconds[1]:.0f} s (a seed's fp32 run also pre-trains the stand-in "
                 "backbone when it is not cached)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.seeds <= 20:
        parser.error(f"--seeds must be an integer in [1, 20]; got {args.seeds}")
    report = measure(args.profile, args.seeds, args.method, args.device)
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps({**report, "differences": differences(report)},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
