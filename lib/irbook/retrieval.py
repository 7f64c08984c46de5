"""Chapter 2's pipeline: off-the-shelf convolutional features for instance retrieval.

A frozen backbone turns every image into conv maps once; each pooling (MAC, SPoC, GeM, R-MAC,
CroW) turns the maps into one L2-normalised descriptor, and only the descriptors are kept;
optional PCA-whitening is learned on a *companion* collection (Paris for Oxford and the other
way round, as in the R-MAC and CroW papers); the ranking by inner product is scored with
each benchmark's own protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import synth
from .data.errors import require
from .data.images import ImageFolderDataset, ImageListDataset, load_image
from .data.instance import HOW_TO_GET, InstanceBenchmark, load_instance_benchmark
from .metrics import mean_average_precision, ns_score, revisited_map
from .models import (
    extract_pooled,
    fit_pca_whitening,
    make_backbone,
    require_pretrained_weights,
)
from .paths import cache_dir, data_root, synthetic_dir
from .search import rank_all
from .train import pretrain_classifier
from .viz import GalleryRow

BENCHMARKS = ("roxford5k", "rparis6k", "holidays", "ukbench")
POOLINGS = ("mac", "spoc", "gem", "rmac", "crow")
WHITENING_COMPANION = {"roxford5k": "rparis6k", "rparis6k": "roxford5k",
                       "holidays": "rparis6k", "ukbench": "rparis6k"}
SYNTH_IMAGE_SIZE = {"smoke": 96, "demo": 160}
PRETRAIN_IMAGE_SIZE = 64


@dataclass
class BenchmarkDescriptors:
    """A benchmark with, per pooling, the descriptors of its queries and database images."""

    benchmark: InstanceBenchmark
    query: dict[str, np.ndarray]
    db: dict[str, np.ndarray]


def benchmarks_needed(dataset: str, whitening: str) -> list[str]:
    """Benchmarks to evaluate, plus the companions that whitening is learned on."""
    evaluated = list(BENCHMARKS) if dataset == "all" else [dataset]
    if whitening != "none":
        evaluated += [WHITENING_COMPANION[name] for name in evaluated]
    return list(dict.fromkeys(evaluated))


def preflight(params: dict) -> None:
    """Fail before any work: real datasets or pretrained weights that a run would need."""
    if params["backbone"] != "smallcnn" and params["pretrained"]:
        require_pretrained_weights(params["backbone"])
    if not params["synthetic"]:
        root = data_root(False, params["data_root"])
        for name in benchmarks_needed(params["dataset"], params["whitening"]):
            require(root / name, name, HOW_TO_GET[name])


def open_benchmarks(names: Iterable[str], *, synthetic: bool, root: str | Path | None,
                    seed: int, scale: str) -> dict[str, InstanceBenchmark]:
    """Load benchmarks from their official layouts, writing the synthetic ones first if asked."""
    folder = data_root(synthetic, root)
    if synthetic:
        folder = folder if root else folder / scale
        synth.ensure_instance_suite(folder, seed=seed, scale=scale,
                                    image_size=SYNTH_IMAGE_SIZE[scale])
    return {name: load_instance_benchmark(folder, name) for name in names}


def benchmark_summary(benchmarks: dict[str, InstanceBenchmark]) -> pd.DataFrame:
    """One row per benchmark: protocol, database size, number of queries."""
    rows = [{"benchmark": name, "protocol": b.protocol, "database images": len(b.db_paths),
             "queries": len(b.query_paths)} for name, b in benchmarks.items()]
    return pd.DataFrame(rows).set_index("benchmark")


def standin_pretrained_smallcnn(*, seed: int, scale: str, epochs: int, device: str,
                                progress: bool = True) -> torch.nn.Module:
    """The book's stand-in for ImageNet pre-training: a small CNN trained on synthetic classes.

    Trained once per (seed, scale, epochs) and cached under ``data/cache``.
    """
    root = synth.ensure_classification(synthetic_dir() / scale / "pretraining", seed=seed,
                                       scale=scale, image_size=PRETRAIN_IMAGE_SIZE)
    train_set = ImageFolderDataset(Path(root) / "train", image_size=PRETRAIN_IMAGE_SIZE,
                                   train=True)
    backbone = make_backbone("smallcnn")
    cache = cache_dir() / f"smallcnn-synthetic-{scale}-seed{seed}-ep{epochs}.pt"
    return pretrain_classifier(backbone, train_set, len(train_set.classes), epochs=epochs,
                               lr=3e-3, batch_size=64, seed=seed, device=device,
                               cache_path=cache, progress=progress)


def prepare_backbone(name: str, pretrained: bool, *, seed: int, scale: str, epochs: int,
                     device: str, progress: bool = True) -> torch.nn.Module:
    """A frozen backbone in eval mode: torchvision (cached ImageNet weights) or the stand-in."""
    if name == "smallcnn" and pretrained:
        backbone = standin_pretrained_smallcnn(seed=seed, scale=scale, epochs=epochs,
                                               device=device, progress=progress)
    else:
        torch.manual_seed(seed)
        backbone = make_backbone(name, pretrained=pretrained)
    return backbone.to(device).eval()


def describe(backbone: torch.nn.Module, bench: InstanceBenchmark, poolings: Sequence[str],
             image_size: int, device: str, progress: bool = True) -> BenchmarkDescriptors:
    """Pooled descriptors of every database image and query (queries cropped to their box)."""
    db = ImageListDataset(bench.db_paths, max_size=image_size)
    db_desc = extract_pooled(backbone, db, poolings, device=device, progress=progress,
                             desc=f"{bench.name} database")
    if bench.query_db_index is not None:
        query_desc = {name: d[bench.query_db_index] for name, d in db_desc.items()}
    else:
        queries = ImageListDataset(bench.query_paths, boxes=bench.query_boxes, max_size=image_size)
        query_desc = extract_pooled(backbone, queries, poolings, device=device,
                                    progress=progress, desc=f"{bench.name} queries")
    return BenchmarkDescriptors(bench, query_desc, db_desc)


def evaluate(bench: InstanceBenchmark, query_desc: np.ndarray, db_desc: np.ndarray,
             device: str | None = None) -> dict[str, float]:
    """Score an inner-product ranking with the benchmark's protocol (values in percent)."""
    rankings = rank_all(query_desc, db_desc, metric="ip", device=device)
    if bench.protocol == "revisited":
        scores = revisited_map(rankings, bench.gnd)
        return {f"mAP {s[0].upper()}": 100 * scores[s]["mAP"] for s in ("easy", "medium", "hard")}
    if bench.protocol == "ukbench":
        return {"N-S": ns_score(rankings, bench.db_groups, bench.query_db_index)}
    mean_ap, _ = mean_average_precision(rankings, bench.gnd)
    return {"mAP": 100 * mean_ap}


def offtheshelf_table(descriptors: dict[str, BenchmarkDescriptors], evaluated: Sequence[str],
                      poolings: Sequence[str], whitenings: Sequence[str],
                      whitening_dim: int = 0, device: str | None = None) -> pd.DataFrame:
    """Every (benchmark, pooling, whitening) combination scored: a long table.

    ``whitening_dim`` = 0 keeps every dimension the whitening set supports (at most one
    fewer than its number of images).
    """
    rows = []
    for pooling in poolings:
        for name in evaluated:
            found = descriptors[name]
            for whitening in whitenings:
                q, d = found.query[pooling], found.db[pooling]
                if whitening == "pca":
                    white = learn_whitening(descriptors[WHITENING_COMPANION[name]].db[pooling],
                                            whitening_dim)
                    q, d = white.apply(q), white.apply(d)
                for metric, value in evaluate(found.benchmark, q, d, device).items():
                    rows.append(dict(benchmark=name, pooling=pooling, whitening=whitening,
                                     metric=metric, value=float(value)))
    return pd.DataFrame(rows)


def learn_whitening(learned_on: np.ndarray, whitening_dim: int = 0):
    """PCA-whitening of a companion collection; ``whitening_dim`` 0 keeps all it supports."""
    supported = min(learned_on.shape[1], learned_on.shape[0] - 1)
    dim = min(whitening_dim, supported) if whitening_dim else supported
    return fit_pca_whitening(learned_on, dim=dim)


# --- claim checks (Chapter 2) ---------------------------------------------------------------

def _mean_value(table: pd.DataFrame, **where: object) -> float:
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= table[column].isin(value if isinstance(value, list) else [value]).to_numpy()
    return float(table.loc[mask, "value"].mean())


def _map_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that are mAP values (N-S is on another scale)."""
    return table[table["metric"].str.startswith("mAP")]


def check_whitening_helps(table: pd.DataFrame) -> tuple[bool, str] | None:
    """PCA-whitening raises mAP (Table 2.2: most strong entries use PCA_w)."""
    scores = _map_rows(table)
    if set(scores["whitening"]) != {"none", "pca"}:
        return None
    wide = scores.pivot_table(index=["benchmark", "pooling", "metric"], columns="whitening",
                              values="value")
    gains = wide["pca"] - wide["none"]
    detail = (f"whitening changes mAP by {gains.mean():+.1f} points on average and raises it in "
              f"{(gains > 0).sum()} of {len(gains)} (benchmark, pooling, setup) cases")
    return bool(gains.mean() > 0), detail


def check_weighted_beats_spoc(table: pd.DataFrame) -> tuple[bool, str] | None:
    """R-MAC, CroW and GeM each beat plain SPoC on instance retrieval (Table 2.2, Fig. 2.12b)."""
    scores = _map_rows(table)
    needed = {"spoc", "rmac", "crow", "gem"}
    if not needed <= set(scores["pooling"]):
        return None
    means = {p: _mean_value(scores, pooling=p) for p in sorted(needed)}
    beaten = [p for p in ("rmac", "crow", "gem") if means[p] > means["spoc"]]
    detail = ", ".join(f"{p} {v:.1f}" for p, v in means.items()) + " (mean mAP)"
    return len(beaten) == 3, detail


def check_hard_is_harder(table: pd.DataFrame) -> tuple[bool, str] | None:
    """Hard queries score below Medium and Medium below Easy (revisited protocol)."""
    scores = table[table["metric"].isin(["mAP E", "mAP M", "mAP H"])]
    if scores.empty:
        return None
    wide = scores.pivot_table(index=["benchmark", "pooling", "whitening"], columns="metric",
                              values="value")
    ordered = (wide["mAP E"] >= wide["mAP M"]) & (wide["mAP M"] >= wide["mAP H"])
    detail = (f"E ≥ M ≥ H in {ordered.sum()} of {len(ordered)} configurations; means "
              f"E {wide['mAP E'].mean():.1f}, M {wide['mAP M'].mean():.1f}, "
              f"H {wide['mAP H'].mean():.1f}")
    return bool(ordered.all()), detail


# --- gallery --------------------------------------------------------------------------------

def result_labels(bench: InstanceBenchmark, query: int, ranked: Sequence[int]) -> list[str]:
    """positive / junk / negative for each ranked database image (Medium setup if revisited)."""
    gnd = bench.gnd[query]
    if bench.protocol == "revisited":
        positives = set(np.concatenate([gnd["easy"], gnd["hard"]]).tolist())
    else:
        positives = set(np.asarray(gnd["ok"]).tolist())
    junk = set(np.asarray(gnd.get("junk", [])).tolist())
    return ["positive" if i in positives else "junk" if i in junk else "negative"
            for i in ranked]


def gallery_rows(found: BenchmarkDescriptors, pooling: str, queries: Sequence[int],
                 k: int = 10) -> list[GalleryRow]:
    """Inputs of :func:`irbook.viz.plot_galleries` for the given queries."""
    bench = found.benchmark
    rankings = rank_all(found.query[pooling][list(queries)], found.db[pooling], metric="ip")
    rows = []
    for q, ranking in zip(queries, rankings, strict=True):
        ranked = [int(i) for i in ranking if bench.query_db_index is None
                  or i != bench.query_db_index[q]][:k]
        rows.append(GalleryRow(
            query_image=load_image(bench.query_paths[q]),
            query_box=bench.query_boxes[q],
            result_images=[load_image(bench.db_paths[i]) for i in ranked],
            labels=result_labels(bench, q, ranked),
        ))
    return rows
