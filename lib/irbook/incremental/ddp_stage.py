"""One chapter-5 smoke run (first stage + one incremental stage), as one process or under torchrun.

    python -m irbook.incremental.ddp_stage --out /tmp/one
    torchrun --nproc_per_node 2 -m irbook.incremental.ddp_stage --out /tmp/two

The run is the chapter's smoke profile on synthetic CUB-200 (old half, then the new half at
once) with one method of Table 5.2. Rank 0 writes ``results.json`` (the old/new Recall@k and
mAP, every epoch's loss, the world size and the rank that wrote it) and the checkpoints under
``<out>/checkpoints``; the other processes write nothing. ``--exact`` trains a loss that is a
mean over the samples (cross-entropy alone, frozen BatchNorm statistics, no first-stage
training), for which two processes with half of every batch each take the same steps as one
process: the two runs then agree to rounding.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import distributed as dist

METHODS = {"ours": ("kd_mmd", {"alpha": 1.0, "beta": 1.0}),
           "finetune": ("finetune", {"ce_weight": 1.0})}
EXACT = ("finetune", {"ce_weight": 1.0, "metric_weight": 0.0})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json and checkpoints")
    parser.add_argument("--method", default="ours", choices=sorted(METHODS))
    parser.add_argument("--exact", action="store_true",
                        help="a per-sample loss, for which the processes agree to rounding")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="bf16: the loss under bfloat16 autocast")
    return parser


def stage_config(params: dict[str, Any], out: Path, exact: bool, device: str,
                 precision: str = "fp32"):
    """The chapter's smoke configuration, its checkpoints under ``out``."""
    from ..chapters import ch05
    from . import experiments as ex

    overrides: dict[str, Any] = {"checkpoint_dir": str(out / "checkpoints"), "progress": False,
                                 "device": device, "precision": precision}
    if exact:
        overrides.update(epochs_first=0, train_bn=False, epochs_incremental=2)
    weights = ex.standin_weights(params, device)
    return ex.make_config(params, ch05.CHAPTER.key, backbone_weights=weights,
                          first_stage_ce_weight=1.0, **overrides)


def run_stage(out: Path, method: str = "ours", exact: bool = False, device: str = "cpu",
              precision: str = "fp32", profile: str = "smoke", seed: int = 0) -> dict[str, Any]:
    """Run the stage of ``profile`` (smoke by default) with ``seed`` and return what rank 0
    writes to ``out/results.json``."""
    from ..chapters import get_chapter
    from . import experiments as ex
    from .methods import make_method
    from .runner import run_incremental

    here = dist.setup(device)
    params = get_chapter("ch05").resolve(profile, {"seed": seed})
    split = ex.open_split("cub200", synthetic=True, root=None, seed=params["seed"],
                          profile=profile)
    name, hparams = EXACT if exact else METHODS[method]
    config = stage_config(params, out, exact, device, precision)
    result = run_incremental(split, ex.one_step_tasks(split), make_method(name, **hparams),
                             config)
    metrics = {f"{row.subset} {row.metric}": float(row.value)
               for row in result.old_new.itertuples()}
    # parameters only: BatchNorm's running statistics are each process's own until DDP
    # broadcasts rank 0's at the next forward
    weights = sum(float(p.detach().double().abs().sum()) for p in result.model.parameters())
    return {"rank": here.rank, "world_size": here.world_size, "method": name,
            "precision": precision, "profile": profile, "seed": seed,
            "hparams": hparams, "exact": exact, "metrics": metrics,
            "weight_sums": dist.gather(weights),
            "losses": [[float(r["loss"]) for r in history] for history in result.histories]}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    results = run_stage(out, args.method, args.exact, args.device, args.precision)
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    dist.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
