"""Chapter 2: off-the-shelf convolutional features for instance retrieval.

A frozen backbone turns every image into conv maps once; each pooling (MAC, SPoC, GeM, R-MAC,
CroW) turns the maps into one L2-normalised descriptor; optional PCA-whitening is learned on a
*companion* collection (Paris for Oxford and the other way round, as in the R-MAC and CroW
papers); the inner-product ranking is scored with each benchmark's own protocol. Every score is
kept per query, so the claims can be bootstrapped over the queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import protocol
from ..claims import Comparison, Evidence, evaluate_claim
from ..constants import BACKBONE_NAMES, INSTANCE_BENCHMARKS, POOLINGS
from ..data import synth
from ..data.errors import require
from ..data.images import ImageListDataset, check_images, load_image
from ..data.instance import HOW_TO_GET, InstanceBenchmark, load_instance_benchmark
from ..distributed import main_first
from ..metrics import mean_average_precision, setup_ground_truth
from ..models import extract_pooled, fit_pca_whitening, make_backbone, require_pretrained_weights
from ..params import Param, ParameterError, ParamSpec
from ..paths import data_root
from ..search import knn, rank_all
from ..train.standin import standin_backbone
from ..viz import GalleryRow
from . import COMMON_DEFAULTS, COMMON_PARAMS, Chapter, Session, start

BENCHMARKS = INSTANCE_BENCHMARKS
WHITENING_COMPANION = {"roxford5k": "rparis6k", "rparis6k": "roxford5k",
                       "oxford5k": "paris6k", "paris6k": "oxford5k",
                       "holidays": "rparis6k", "ukbench": "rparis6k"}
ORIGINAL = {"roxford5k": "oxford5k", "rparis6k": "paris6k"}
"""The original (2007) benchmark behind each revisited one (``oxford_version`` original)."""
SYNTH_IMAGE_SIZE = {"smoke": 96, "demo": 160}
FINETUNE_LOSS_NAMES = ("contrastive", "siamese", "double_margin", "triplet", "joint")
"""The losses of :mod:`irbook.instance.finetuning` (``LOSSES``; a test keeps them equal)."""
REVISITED_SETUPS = {"easy": "mAP E", "medium": "mAP M", "hard": "mAP H"}


def preflight(params: dict) -> None:
    """Fail before any work: real datasets, their images, or pretrained weights a run needs."""
    if params["backbone"] != "smallcnn" and params["pretrained"]:
        require_pretrained_weights(params["backbone"])
    if params["backbone"] != "smallcnn" and params["depths"] != "none":
        for name in DEPTH_TORCHVISION:
            require_pretrained_weights(name)
    if not params["synthetic"]:
        root = data_root(False, params["data_root"])
        for name in benchmarks_needed(params["dataset"], params["whitening"],
                                      params["oxford_version"]):
            require(root / name, name, HOW_TO_GET[name])
            bench = load_instance_benchmark(root, name)
            check_images([*bench.db_paths, *bench.query_paths], name, sample=200)
        if params["distractors"]:
            from ..data.distractors import DISTRACTOR_NAME
            from ..data.distractors import HOW_TO_GET as DISTRACTORS_HOW_TO_GET

            require(root / DISTRACTOR_NAME, DISTRACTOR_NAME, DISTRACTORS_HOW_TO_GET)
        if params["finetune_loss"] != "none":
            from ..data.sfm import HOW_TO_GET as SFM_HOW_TO_GET
            from ..data.sfm import SFM_NAME, load_sfm120k

            require(root / SFM_NAME, SFM_NAME, SFM_HOW_TO_GET)
            check_images(load_sfm120k(root).train.image_paths, SFM_NAME, sample=200)


CHAPTER = Chapter(
    key="ch02",
    title="Deep image retrieval: off-the-shelf and fine-tuned",
    notebook="notebooks/ch02_deep_image_retrieval.ipynb",
    preflight=preflight,
    thesis_tables=("2.1", "2.2", "2.3"),
    spec=ParamSpec(
        params=(
            *COMMON_PARAMS,
            Param("backbone", str, "network whose last conv maps are pooled",
                  choices=BACKBONE_NAMES),
            Param("pretrained", bool, "smallcnn: pre-train on synthetic classes; torchvision: "
                  "ImageNet weights from the local torch cache"),
            Param("pretrain_epochs", int, "epochs of the smallcnn stand-in pre-training",
                  low=0, high=500),
            Param("pooling", str, "pooling of the conv maps; all compares the five",
                  choices=("all", *POOLINGS)),
            Param("whitening", str, "PCA-whitening: both compares with and without",
                  choices=("both", "none", "pca")),
            Param("whitening_dim", int, "dimensions kept by PCA-whitening; 0 keeps all that "
                  "the whitening set supports", low=0, high=8192),
            Param("image_size", int, "longer image side in pixels", low=32, high=2048),
            Param("dataset", str, "benchmark(s) to evaluate", choices=("all", *BENCHMARKS)),
            Param("gallery_queries", int, "queries shown in the retrieval gallery", low=0,
                  high=20),
            Param("aggregation", str, "embeddings of the local conv features (BoW, VLAD, "
                  "Fisher vectors; Fig. 2.12b): all, or none to skip them",
                  choices=("all", "none")),
            Param("aggregation_dim", int, "length of every local-feature embedding: BoW has "
                  "this many words, VLAD dim / C and Fisher vectors dim / 2C (C: the "
                  "backbone's channels)", low=8, high=1_000_000),
            Param("netvlad_epochs", int, "NetVLAD beside VLAD (Fig. 2.12b, Table 2.3): as many "
                  "clusters as VLAD, started from k-means on the SfM training images' local "
                  "features, then trained this many epochs with the triplet loss on their "
                  "frozen conv maps; 0 skips it (and so does aggregation none)", low=0,
                  high=1000),
            Param("diffusion_k", int, "neighbours of every database image in the diffusion "
                  "graph (Iscen et al.: 50)", low=1, high=10_000),
            Param("oxford_version", str, "Oxford5k / Paris6k ground truth: revisited (2018, "
                  "Easy/Medium/Hard) or original (2007, the thesis' tables); the dataset "
                  "names roxford5k / rparis6k then stand for oxford5k / paris6k",
                  choices=("revisited", "original")),
            Param("distractors", int, "distractor images added to the Oxford and Paris "
                  "databases (the thesis' +100k setting; the revisitop1m list, synthetic on "
                  "the CPU profiles)", low=0, high=1_000_000),
            Param("schemes", str, "feature-extraction schemes (multi-scale, patches, FC, "
                  "fusion, CAM-weighted CroW): all, or none to skip them",
                  choices=("all", "none")),
            Param("search_n", int, "vectors of the clustered database of the search "
                  "trade-off (Table 2.1); 0 skips it", low=0, high=1_000_000_000),
            Param("search_dim", int, "their dimension", low=8, high=4096),
            Param("finetune_loss", str, "loss of the supervised fine-tuning on SfM tuples "
                  "(Table 2.3): one, all, or none to skip it",
                  choices=("none", "all", *FINETUNE_LOSS_NAMES)),
            Param("finetune_epochs", int, "fine-tuning epochs (cirtorch: 100)", low=1,
                  high=1000),
            Param("finetune_queries", int, "training tuples mined per epoch (cirtorch: 2000; "
                  "the pool holds 10 images per query)", low=1, high=1_000_000),
            Param("depths", str, "Fig. 2.13a: networks of increasing depth with MAC, "
                  "off-the-shelf and fine-tuned (stand-ins of 3, 4 and 5 blocks, or VGG16, "
                  "GoogLeNet, ResNet-50 and ResNet-101): all, or none to skip it",
                  choices=("none", "all")),
            Param("hash_bits", int, "deep hashing: codes of hash_bits/4, /2 and hash_bits "
                  "bits against LSH and PCA + sign; 0 skips it",
                  choices=(0, 32, 64, 128, 256, 512)),
            Param("dims_max", int, "Fig. 2.13b: descriptor lengths 32, 64, ... up to this "
                  "(a trained linear layer on GeM); 0 skips it",
                  choices=(0, *(32 * 2**i for i in range(9)))),
            Param("finetune_lr", float, "Adam learning rate of the fine-tuning (cirtorch: "
                  "1e-6; GeM's p learns at 10x)", low=1e-9, high=1.0),
        ),
        profiles={
            "smoke": dict(COMMON_DEFAULTS["smoke"], backbone="smallcnn", pretrained=True,
                          pretrain_epochs=2, pooling="all", whitening="both", whitening_dim=0,
                          image_size=64, dataset="all", gallery_queries=2,
                          aggregation="all", aggregation_dim=512, netvlad_epochs=1, diffusion_k=50,
                          search_n=10000, search_dim=32, schemes="all",
                          oxford_version="revisited", distractors=0, finetune_loss="all",
                          finetune_epochs=1, finetune_queries=40, finetune_lr=1e-4,
                          depths="all", hash_bits=32, dims_max=128),
            "demo": dict(COMMON_DEFAULTS["demo"], backbone="smallcnn", pretrained=True,
                         pretrain_epochs=12, pooling="all", whitening="both",
                         whitening_dim=128, image_size=128, dataset="all", gallery_queries=3,
                         aggregation="all", aggregation_dim=1024, netvlad_epochs=10,
                         diffusion_k=50,
                          search_n=50000, search_dim=128, schemes="all",
                          oxford_version="revisited", distractors=0,
                          finetune_loss="contrastive", finetune_epochs=8,
                          finetune_queries=200, finetune_lr=1e-4, depths="none",
                          hash_bits=64, dims_max=2048),
            "full": dict(COMMON_DEFAULTS["full"], backbone="resnet101", pretrained=True,
                         pretrain_epochs=0, pooling="all", whitening="both", whitening_dim=0,
                         image_size=1024, dataset="all", gallery_queries=3,
                         aggregation="all", aggregation_dim=16384, netvlad_epochs=30,
                         diffusion_k=50,
                          search_n=1000000, search_dim=512, schemes="all",
                          oxford_version="original", distractors=100_000,
                          finetune_loss="all", finetune_epochs=100, finetune_queries=2000,
                          finetune_lr=1e-6, depths="all", hash_bits=256, dims_max=8192),
        },
    ),
)


def setup(namespace: Mapping[str, Any]) -> Session:
    """The first code cell of chapter 2: ``run = ch02.setup(globals())``."""
    run = start(CHAPTER.key, namespace)
    run.report.extra["deviations"] = protocol.deviations(protocol_table(run.params))
    return run


def synth_scale(profile: str) -> str:
    """Size of the synthetic suite: the smoke profile gets the tiny preset."""
    return "smoke" if profile == "smoke" else "demo"


def versioned(names: Iterable[str], version: str) -> list[str]:
    """``names`` with Oxford/Paris in ``version`` (the holidays/Paris companion too)."""
    return [ORIGINAL.get(n, n) if version == "original" else n for n in names]


def companion(name: str, version: str = "revisited") -> str:
    """The collection whitening and codebooks of ``name`` are learned on (Oxford ↔ Paris,
    Paris for Holidays and UKBench), in ``version``."""
    return versioned([WHITENING_COMPANION[name]], version)[0]


def evaluated_benchmarks(params: Mapping[str, Any]) -> list[str]:
    names = list(BENCHMARKS) if params["dataset"] == "all" else [params["dataset"]]
    return versioned(names, params["oxford_version"])


def poolings_of(params: Mapping[str, Any]) -> list[str]:
    return list(POOLINGS) if params["pooling"] == "all" else [params["pooling"]]


def whitenings_of(params: Mapping[str, Any]) -> list[str]:
    return ["none", "pca"] if params["whitening"] == "both" else [params["whitening"]]


def benchmarks_needed(dataset: str, whitening: str, version: str = "revisited") -> list[str]:
    """Benchmarks to evaluate, plus the companions that whitening is learned on."""
    evaluated = versioned(list(BENCHMARKS) if dataset == "all" else [dataset], version)
    if whitening != "none":
        evaluated += [companion(name, version) for name in evaluated]
    return list(dict.fromkeys(evaluated))


# --- protocol: thesis vs this run ------------------------------------------------------------

def protocol_values(params: Mapping[str, Any]) -> dict[str, str]:
    """This run's value of every item of ``data/thesis_protocols/ch02.csv``."""
    synthetic = "synthetic, in the official layouts" if params["synthetic"] else "real"
    backbone = ("small CNN pre-trained on disjoint synthetic classes (ImageNet stand-in)"
                if params["backbone"] == "smallcnn" and params["pretrained"] else
                f"{params['backbone']}, ImageNet" if params["pretrained"] else
                f"{params['backbone']}, random weights")
    return {
        "data": f"Oxford/Paris, Holidays, UKBench ({synthetic})",
        "backbone": backbone,
        "image size": f"{params['image_size']} px longer side",
        "whitening": ("PCA, learned on the companion collection" if params["whitening"] != "none"
                      else "none"),
        "Oxford/Paris version": ("revisited (2018), Easy/Medium/Hard"
                                 if params["oxford_version"] == "revisited" else
                                 "original (2007)"),
        "distractors": (f"+{params['distractors']:,} of the revisitop1m list in the Oxford and "
                        "Paris databases" if params["distractors"] else "none"),
        "metric": "mAP (trapezoid AP), N-S score on UKBench",
        "local-feature embedding": (
            f"BoW, VLAD and Fisher vectors, all {params['aggregation_dim']}-d, codebooks "
            "(k-means, diagonal GMM) on L2-normalised local descriptors of the companion "
            "collection" if params["aggregation"] == "all" else "not run"),
        "NetVLAD": netvlad_protocol(params),
        "re-ranking": f"GeM ({'PCA-whitened' if params['whitening'] != 'none' else 'raw'}); "
                      f"average QE and alpha-QE (top {QE_NEIGHBOURS}, alpha {QE_ALPHA:g}); "
                      f"diffusion on a {params['diffusion_k']}-NN graph, s^3, alpha 0.99",
        "extraction schemes": ("single pass, multi-scale, rigid grid, spatial pyramid, FC "
                               "layer, conv + FC fusion, CroW, CAM-weighted CroW, one backbone"
                               if params["schemes"] == "all" else "not run"),
        "fine-tuning": finetune_protocol(params),
        "deep hashing": (f"{', '.join(map(str, hash_bit_counts(params)))} bits: LSH, PCA + sign "
                         f"and a hash head trained {HEAD_EPOCHS} epochs on frozen GeM "
                         "descriptors of the SfM images (pair loss, balance, decorrelation, "
                         "quantization, all weight 1); Hamming ranking"
                         if params["hash_bits"] else "not run"),
        "feature dimension": (f"a linear layer on frozen GeM, {dimensions_of(params)[0]} to "
                              f"{dimensions_of(params)[-1]}-d, trained {HEAD_EPOCHS} epochs on "
                              "the SfM tuples (contrastive)" if params["dims_max"] else
                              "not run"),
        "network depth": (", ".join(depth_networks(params)) + ", MAC, fine-tuned with the "
                          "contrastive loss of the fine-tuning row" if params["depths"] != "none"
                          else "not run"),
        "search": (f"exact, IVF-Flat, IVF-PQ, HNSW and binary codes (FAISS) on "
                   f"{params['search_n']:,} clustered {params['search_dim']}-d vectors, one "
                   "machine" if params["search_n"] else "not run"),
    }


def netvlad_protocol(params: Mapping[str, Any]) -> str:
    """The NetVLAD recipe of this run, in the words of the protocol table."""
    if params["aggregation"] == "none" or not params["netvlad_epochs"]:
        return "not run"
    return (f"VLAD's number of clusters ({params['aggregation_dim']}-d), k-means init and alpha "
            f"from the SfM training images' local features; the layer alone trained "
            f"{params['netvlad_epochs']} epochs on their frozen conv maps ({params['image_size']}"
            f" px squares), triplet loss, margin {NETVLAD_MARGIN:g}, 5 hard negatives, "
            f"{params['finetune_queries']} queries per epoch, Adam lr 1e-3; raw descriptors")


def finetune_protocol(params: Mapping[str, Any]) -> str:
    """The fine-tuning recipe of this run, in the words of the protocol table."""
    if params["finetune_loss"] == "none":
        return "not run"
    losses = ", ".join(finetune_losses_of(params))
    queries = params["finetune_queries"]
    return (f"GeM (learned p) on SfM-120k tuples ({losses}), margin 0.7, 5 hard negatives, "
            f"{queries} queries and a pool of {POOL_PER_QUERY * queries} per epoch, Adam lr "
            f"{params['finetune_lr']:g}, {params['finetune_epochs']} epochs, "
            f"{params['image_size']} px; learned whitening on the SfM val pairs")


DEVIATION_REASONS = {
    "data": "the real datasets cannot be downloaded here; the synthetic stand-ins are read by "
            "the same loaders",
    "backbone": "no ImageNet weights offline on a CPU profile; a frozen network trained on "
                "other classes plays their part",
    "image size": "CPU time",
    "whitening": "switched off by the whitening parameter",
    "Oxford/Paris version": "the original 2007 ground truth has known errors; the revisited "
                            "one is the current standard (-p oxford_version original)",
    "distractors": "set by the distractors parameter; revisitop1m, the distractor set of the "
                   "revisited benchmarks, stands in for Flickr100k",
    "local-feature embedding": "the thesis sets published numbers side by side; one length "
                               "and one backbone for every method make them comparable",
    "NetVLAD": "CPU time: the backbone stays frozen and only the layer learns, from the "
               "maps of at most the images that fit in memory; compared raw at VLAD's length",
    "re-ranking": "the thesis sets published numbers side by side; here every re-ranking "
                  "starts from the same descriptors",
    "extraction schemes": "the thesis sets published numbers side by side; here every scheme "
                          "uses the same backbone and images",
    "fine-tuning": "CPU time: a stand-in network, fewer and shorter epochs at the run's "
                   "image size; at the demo's 8 epochs of 200 "
                   "tuples the learning rate 1e-4 was picked over 1e-3 by the mAP on the SfM "
                   "val split (63.6 against 62.7, off-the-shelf 57.1) before any benchmark was "
                   "scored; the thesis collects published networks with their own recipes",
    "deep hashing": "the thesis collects published hashing methods; here every code length "
                    "and method starts from the same frozen descriptors",
    "feature dimension": "CPU time: only the added layer is trained, the backbone stays "
                         "frozen (the thesis fine-tunes ResNet-50 with it)",
    "network depth": "no ImageNet networks offline on a CPU profile: stand-ins of 3, 4 and 5 "
                     "blocks pre-trained alike; off by default on the demo (CPU time)",
    "search": "published timings come from different machines and indexes; here every "
              "backend searches the same vectors on the same machine",
}


def protocol_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """Table "protocol: thesis vs this run" with the reason of every deviation."""
    return protocol.protocol_table("ch02", protocol_values(params), DEVIATION_REASONS)


# --- data and features -----------------------------------------------------------------------

def benchmark_folder(synthetic: bool, root: str | Path | None, scale: str) -> Path:
    folder = data_root(synthetic, root)
    return folder if not synthetic or root else folder / scale


def _write_synthetic(folder: Path, names: list[str], seed: int, scale: str,
                     distractors: int) -> None:
    """The synthetic benchmarks ``names`` need, in their official layouts (once, cached)."""
    synth.ensure_instance_suite(folder, seed=seed, scale=scale,
                                image_size=SYNTH_IMAGE_SIZE[scale])
    if set(names) & set(ORIGINAL.values()):
        synth.ensure_oxford_original(folder, seed=seed, scale=scale,
                                     image_size=SYNTH_IMAGE_SIZE[scale])
    if distractors:
        synth.write_distractors(folder, seed=seed, n=distractors,
                                image_size=SYNTH_IMAGE_SIZE[scale])


def open_benchmarks(names: Iterable[str], *, synthetic: bool, root: str | Path | None,
                    seed: int, scale: str, distractors: int = 0) -> dict[str, InstanceBenchmark]:
    """Load benchmarks from their official layouts, writing the synthetic ones first if
    asked; the Oxford and Paris databases gain the first ``distractors`` images of the
    revisitop1m list."""
    names, folder = list(names), benchmark_folder(synthetic, root, scale)
    if synthetic:  # under torchrun rank 0 writes the data, then the others read it
        main_first(lambda: _write_synthetic(folder, names, seed, scale, distractors))
    benchmarks = {name: load_instance_benchmark(folder, name) for name in names}
    if distractors:
        from ..data.distractors import load_distractors

        extra = load_distractors(folder, distractors)
        for name in set(benchmarks) & {*ORIGINAL, *ORIGINAL.values()}:
            benchmarks[name] = with_distractors(benchmarks[name], extra)
    return benchmarks


def with_distractors(bench: InstanceBenchmark, paths: Sequence[Path]) -> InstanceBenchmark:
    """``bench`` with ``paths`` appended to its database: negatives of every query (the
    ground truth indexes the original images, which keep their positions)."""
    import dataclasses

    return dataclasses.replace(bench, db_paths=[*bench.db_paths, *paths])


def load_benchmarks(run: Session) -> dict[str, InstanceBenchmark]:
    """The benchmarks the run evaluates and the companions whitening is learned on."""
    p = run.params
    return open_benchmarks(benchmarks_needed(p["dataset"], p["whitening"], p["oxford_version"]),
                           synthetic=p["synthetic"], root=p["data_root"], seed=p["seed"],
                           scale=synth_scale(p["profile"]), distractors=p["distractors"])


def benchmark_summary(benchmarks: dict[str, InstanceBenchmark]) -> pd.DataFrame:
    """One row per benchmark: protocol, database size, number of queries."""
    rows = [{"benchmark": name, "protocol": b.protocol, "database images": len(b.db_paths),
             "queries": len(b.query_paths)} for name, b in benchmarks.items()]
    return pd.DataFrame(rows).set_index("benchmark")


def prepare_backbone(name: str, pretrained: bool, *, seed: int, scale: str, epochs: int,
                     device: str, progress: bool = True) -> torch.nn.Module:
    """A frozen backbone in eval mode: torchvision (cached ImageNet weights) or the stand-in."""
    if name == "smallcnn" and pretrained:
        backbone = standin_backbone(seed=seed, scale=scale, epochs=epochs, device=device,
                                    progress=progress)
    else:
        torch.manual_seed(seed)
        backbone = make_backbone(name, pretrained=pretrained)
    return backbone.to(device).eval()


@dataclass
class BenchmarkDescriptors:
    """A benchmark with, per pooling, the descriptors of its queries and database images."""

    benchmark: InstanceBenchmark
    query: dict[str, np.ndarray]
    db: dict[str, np.ndarray]


def describe(backbone: torch.nn.Module, bench: InstanceBenchmark,
             poolings: Sequence[str] | Mapping[str, torch.nn.Module], image_size: int,
             device: str, progress: bool = True) -> BenchmarkDescriptors:
    """Pooled descriptors of every database image and query (queries cropped to their box);
    ``poolings`` by name, or modules by name (:func:`irbook.models.extract_pooled`)."""
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


# --- evaluation ------------------------------------------------------------------------------

def evaluate_per_query(bench: InstanceBenchmark, query_desc: np.ndarray, db_desc: np.ndarray,
                       device: str | None = None) -> dict[str, np.ndarray]:
    """Per-query scores of an inner-product ranking under the benchmark's protocol: AP in
    percent (NaN for a query without positives in a setup), or the N-S count (0-4)."""
    if bench.protocol == "ukbench":
        _, top = knn(query_desc, db_desc, k=4, metric="ip")
        groups = bench.db_groups
        hits = groups[top] == groups[bench.query_db_index][:, None]
        return {"N-S": hits.sum(axis=1).astype(float)}
    return evaluate_rankings(bench, rank_all(query_desc, db_desc, metric="ip", device=device))


def evaluate_rankings(bench: InstanceBenchmark, rankings: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query AP in percent of full rankings (Q, N) under an mAP protocol (revisited:
    one entry per setup; NaN for a query without positives in it)."""
    if bench.protocol == "revisited":
        return {metric: 100 * mean_average_precision(
                    rankings, [setup_ground_truth(g, setup) for g in bench.gnd])[1]
                for setup, metric in REVISITED_SETUPS.items()}
    return {"mAP": 100 * mean_average_precision(rankings, bench.gnd)[1]}


def learn_whitening(learned_on: np.ndarray, whitening_dim: int = 0):
    """PCA-whitening of a companion collection; ``whitening_dim`` 0 keeps all it supports."""
    supported = min(learned_on.shape[1], learned_on.shape[0] - 1)
    dim = min(whitening_dim, supported) if whitening_dim else supported
    return fit_pca_whitening(learned_on, dim=dim)


def per_query_scores(descriptors: dict[str, BenchmarkDescriptors], evaluated: Sequence[str],
                     poolings: Sequence[str], whitenings: Sequence[str],
                     whitening_dim: int = 0, device: str | None = None,
                     version: str = "revisited"
                     ) -> dict[tuple[str, str, str, str], np.ndarray]:
    """(benchmark, pooling, whitening, metric) → per-query scores, every combination
    (whitening learned on the :func:`companion` in Oxford/Paris ``version``)."""
    scores = {}
    for pooling in poolings:
        for name in evaluated:
            found = descriptors[name]
            for whitening in whitenings:
                q, d = found.query[pooling], found.db[pooling]
                if whitening == "pca":
                    white = learn_whitening(descriptors[companion(name, version)].db[pooling],
                                            whitening_dim)
                    q, d = white.apply(q), white.apply(d)
                for metric, values in evaluate_per_query(found.benchmark, q, d, device).items():
                    scores[(name, pooling, whitening, metric)] = values
    return scores


def score_table(scores: Mapping[int, Mapping[tuple, np.ndarray]]) -> pd.DataFrame:
    """Long table (benchmark, pooling, whitening, metric, value): the mean over queries, then
    over the seeds of ``scores`` (seed → :func:`per_query_scores`)."""
    rows = [dict(seed=seed, benchmark=b, pooling=p, whitening=w, metric=m,
                 value=float(np.nanmean(values)))
            for seed, per_seed in scores.items() for (b, p, w, m), values in per_seed.items()]
    frame = pd.DataFrame(rows)
    return (frame.groupby(["benchmark", "pooling", "whitening", "metric"], sort=False)
            .value.mean().reset_index())


@dataclass
class OffTheShelfRun:
    """The features and scores of one seed (the stand-in backbone depends on the seed);
    ``aggregated`` holds the scores of the local-feature embeddings (whitening "none"),
    ``reranked`` those of the re-rankings (method ``rerank/<name>``), ``search`` the per-query
    AP and timed repeats of every search setting (:func:`search_tradeoff`), ``schemes`` the
    scores of the extraction schemes (method ``scheme/<name>``, :func:`scheme_scores`),
    ``finetuned`` those of the fine-tuned networks (method ``finetuned/<loss>``, whitening
    none / pca / learned, :func:`run_finetuning`), ``depth`` those of Fig. 2.13a
    (:func:`depth_scores`), ``hashed`` and ``dimension`` those of the heads on frozen features
    (:func:`hashing_scores`, :func:`dimension_scores`); ``netvlad_history`` one record per
    epoch of the NetVLAD training (:func:`train_netvlad`)."""

    descriptors: dict[str, BenchmarkDescriptors]
    scores: dict[tuple[str, str, str, str], np.ndarray]
    aggregated: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    reranked: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    search: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    schemes: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    finetuned: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    depth: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    hashed: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    dimension: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict)
    netvlad_history: list[dict[str, Any]] = field(default_factory=list)


def run_offtheshelf(run: Session, benchmarks: dict[str, InstanceBenchmark]
                    ) -> dict[int, OffTheShelfRun]:
    """Every seed of the run: backbone, descriptors of every benchmark, per-query scores."""
    p, results = run.params, {}
    for seed in run.seeds:
        net = prepare_backbone(p["backbone"], p["pretrained"], seed=seed,
                               scale=synth_scale(p["profile"]), epochs=p["pretrain_epochs"],
                               device=run.device)
        descriptors = {name: describe(net, bench, poolings_of(p), p["image_size"], run.device)
                       for name, bench in benchmarks.items()}
        scores = per_query_scores(descriptors, evaluated_benchmarks(p), poolings_of(p),
                                  whitenings_of(p), p["whitening_dim"], run.device,
                                  p["oxford_version"])
        aggregated, history = {}, []
        if p["aggregation"] == "all":
            layers, history = (train_netvlad(run, net, seed) if p["netvlad_epochs"]
                               else ({}, []))
            aggregated = aggregated_scores(net, benchmarks, p, seed, run.device, layers)
        results[seed] = OffTheShelfRun(descriptors, scores, aggregated, netvlad_history=history)
    run.state["results"] = results
    return results


# --- embeddings of local features (Sec. 2.3.2, Fig. 2.12b) ----------------------------------

AGGREGATION_LABELS = {"bow": "BoW", "vlad": "VLAD", "fv": "Fisher vector"}
NETVLAD_LABELS = {"netvlad/init": "NetVLAD, k-means init (untrained)",
                  "netvlad/trained": "NetVLAD, trained on SfM tuples"}
NETVLAD_MARGIN = 0.1
"""Triplet margin of the NetVLAD paper (on squared distances of unit vectors)."""
HEAD_MAX_IMAGES = 20_000
"""SfM training images whose frozen GeM descriptors the heads train on (all, on synthetic)."""
MAP_BUDGET_BYTES = 1 << 30
"""Memory for the frozen conv maps NetVLAD trains on; fewer images when they would not fit."""
LOCAL_PER_IMAGE = 100
"""Local descriptors drawn from each image of the companion collection for the codebooks."""


def codebook_sizes(dim: int, channels: int) -> dict[str, int]:
    """Codebook sizes that give every embedding the length ``dim`` (or just under): BoW
    K = dim words, VLAD K = dim // C centroids, Fisher vectors K = dim // 2C Gaussians."""
    sizes = {"bow": dim, "vlad": dim // channels, "fv": dim // (2 * channels)}
    if sizes["fv"] < 1:
        raise ParameterError(f"parameter 'aggregation_dim' got {dim}; with the {channels} "
                             f"channels of this backbone a Fisher vector needs at least "
                             f"{2 * channels}")
    return sizes


def fit_codebooks(backbone: torch.nn.Module, bench: InstanceBenchmark, sizes: Mapping[str, int],
                  image_size: int, seed: int, device: str) -> dict[str, Any]:
    """k-means words (BoW, VLAD) and a diagonal GMM (Fisher vectors) learned on L2-normalised
    local descriptors of ``bench``'s database images (the companion collection)."""
    from ..models import fit_diagonal_gmm, kmeans_codebook, sample_local_descriptors

    dataset = ImageListDataset(bench.db_paths, max_size=image_size)
    local = sample_local_descriptors(backbone, dataset, LOCAL_PER_IMAGE, seed, device,
                                     desc=f"{bench.name} local descriptors")
    local = torch.nn.functional.normalize(torch.from_numpy(local), dim=1)
    return {"bow": kmeans_codebook(local, sizes["bow"], seed),
            "vlad": kmeans_codebook(local, sizes["vlad"], seed),
            "fv": fit_diagonal_gmm(local, sizes["fv"], seed)}


def aggregated_scores(backbone: torch.nn.Module, benchmarks: Mapping[str, InstanceBenchmark],
                      params: Mapping[str, Any], seed: int, device: str,
                      layers: Mapping[str, torch.nn.Module] | None = None
                      ) -> dict[tuple[str, str, str, str], np.ndarray]:
    """(benchmark, method, "none", metric) → per-query scores of BoW, VLAD and Fisher vectors,
    each with codebooks learned on the companion collection (as whitening is), and of the
    trained ``layers`` by name (NetVLAD's, from :func:`train_netvlad`), in the same pass."""
    from ..models import LocalAggregation

    sizes = codebook_sizes(params["aggregation_dim"], backbone.out_channels)
    evaluated = evaluated_benchmarks(params)
    companions = {companion(name, params["oxford_version"]) for name in evaluated}
    companion_benchmarks = open_companions(benchmarks, companions, params, seed)
    codebooks = {name: fit_codebooks(backbone, companion_benchmarks[name], sizes,
                                     params["image_size"], seed, device)
                 for name in sorted(companions)}
    scores = {}
    for name in evaluated:
        books = codebooks[companion(name, params["oxford_version"])]
        modules = {m: LocalAggregation(m, books[m], normalize_descriptors=True)
                   for m in AGGREGATION_LABELS} | dict(layers or {})
        found = describe(backbone, benchmarks[name], modules, params["image_size"], device)
        for method in modules:
            for metric, values in evaluate_per_query(found.benchmark, found.query[method],
                                                     found.db[method], device).items():
                scores[(name, method, "none", metric)] = values
    return scores


def open_companions(benchmarks: Mapping[str, InstanceBenchmark], names: Iterable[str],
                    params: Mapping[str, Any], seed: int) -> dict[str, InstanceBenchmark]:
    """The companion collections, loaded if the run has not loaded them (whitening none)."""
    missing = [name for name in names if name not in benchmarks]
    extra = (open_benchmarks(missing, synthetic=params["synthetic"], root=params["data_root"],
                             seed=seed, scale=synth_scale(params["profile"]))
             if missing else {})
    return {**benchmarks, **extra}


def aggregation_table(results: Mapping[int, OffTheShelfRun]) -> pd.DataFrame:
    """Fig. 2.12b: mean score (over queries, then seeds) of every pooling (without whitening)
    and every local-feature embedding, one row per (benchmark, metric, method)."""
    merged = {seed: {**{k: v for k, v in r.scores.items() if k[2] == "none"}, **r.aggregated}
              for seed, r in results.items()}
    table = score_table(merged).rename(columns={"pooling": "method"})
    table["family"] = np.select(
        [table["method"].isin(list(AGGREGATION_LABELS)), table["method"].isin(NETVLAD_LABELS)],
        ["local-feature embedding", "trained layer"], "pooling")
    labels = AGGREGATION_LABELS | NETVLAD_LABELS
    table["method"] = table["method"].map(lambda m: labels.get(m, m))
    return table.drop(columns="whitening")


def netvlad_curves(results: Mapping[int, OffTheShelfRun]) -> Any:
    """NetVLAD's triplet loss and query-positive / query-negative distances per epoch."""
    from .. import viz

    history = pd.DataFrame([dict(record, seed=str(seed)) for seed, r in results.items()
                            for record in r.netvlad_history])
    long = history.melt(id_vars=["epoch", "seed"], var_name="quantity",
                        value_vars=["loss", "positive_distance", "negative_distance"])
    return viz.plot_lines(long, x="epoch", y="value", hue="seed", panel="quantity",
                          title="NetVLAD on the SfM tuples (frozen conv maps), per epoch")


def head_split(run: Session):
    """The SfM training images the heads on frozen features learn from: the whole split, or
    :data:`HEAD_MAX_IMAGES` of them in whole clusters (:func:`irbook.data.sfm.subset_split`)."""
    from ..data.sfm import subset_split

    if "head_split" not in run.state:
        if "sfm" not in run.state:
            run.state["sfm"] = sfm_training_set(run.params)
        run.state["head_split"] = subset_split(run.state["sfm"].train, HEAD_MAX_IMAGES,
                                               run.params["seed"])
    return run.state["head_split"]


def map_split(run: Session, backbone: torch.nn.Module):
    """:func:`head_split`, cut to the images whose conv maps fit in :data:`MAP_BUDGET_BYTES`."""
    from ..data.sfm import subset_split

    size = run.params["image_size"]
    with torch.no_grad():
        probe = backbone.eval()(torch.zeros(1, 3, size, size, device=run.device))
    per_image = probe.numel() * 4
    return subset_split(head_split(run), max(MAP_BUDGET_BYTES // per_image, 1),
                        run.params["seed"])


def netvlad_layer(maps: torch.Tensor, clusters: int, seed: int):
    """A :class:`irbook.models.NetVLAD` of ``clusters`` centroids from k-means on up to
    :data:`LOCAL_PER_IMAGE` local descriptors of every map (N, C, h, w), alpha estimated from
    them (the paper's initialisation)."""
    from ..models import kmeans_codebook
    from ..models.netvlad import NetVLAD

    generator = torch.Generator().manual_seed(seed)
    local = maps.flatten(2).transpose(1, 2)  # (N, h*w, C)
    keep = torch.stack([torch.randperm(local.shape[1], generator=generator)[:LOCAL_PER_IMAGE]
                        for _ in range(len(local))])
    local = torch.nn.functional.normalize(
        torch.gather(local, 1, keep[..., None].expand(-1, -1, local.shape[2])).flatten(0, 1),
        dim=1)
    layer = NetVLAD(clusters, maps.shape[1])
    layer.init_from_codebook(kmeans_codebook(local, clusters, seed), descriptors=local)
    return layer.eval()


def train_netvlad(run: Session, backbone: torch.nn.Module, seed: int) -> tuple[dict, list]:
    """NetVLAD with VLAD's number of clusters, initialised on the SfM training images' frozen
    conv maps (:func:`netvlad_layer`), then trained on their tuples with the triplet loss
    (:func:`irbook.instance.train_head_on_tuples`, checkpointed in the cache): the layers
    ``netvlad/init`` and ``netvlad/trained``, and the training history."""
    from ..incremental.runner import config_digest
    from ..instance.experiments import module_digest, split_conv_maps, split_digest
    from ..instance.heads import HeadConfig, train_head_on_tuples
    from ..paths import cache_dir

    p = run.params
    split = map_split(run, backbone)
    maps = split_conv_maps(backbone, split, p["image_size"], run.device, progress=False)
    clusters = codebook_sizes(p["aggregation_dim"], backbone.out_channels)["vlad"]
    layer = netvlad_layer(maps, clusters, seed)
    config = HeadConfig(loss="triplet", margin=NETVLAD_MARGIN, n_queries=p["finetune_queries"],
                        pool_size=min(POOL_PER_QUERY * p["finetune_queries"], split.n_images),
                        epochs=p["netvlad_epochs"], seed=seed, progress=False)
    key = config_digest({"layer": module_digest(layer), "split": split_digest(split),
                           "backbone": module_digest(backbone), "size": p["image_size"],
                           "config": {k: v for k, v in vars(config).items() if k != "progress"}})
    folder = cache_dir() / "ch02"
    folder.mkdir(parents=True, exist_ok=True)
    trained = train_head_on_tuples(layer, maps, split, config,
                                   checkpoint=folder / f"netvlad-{key}.pt")
    return {"netvlad/init": layer, "netvlad/trained": trained.head}, trained.history


# --- feature-extraction schemes (Sec. 2.3.1, Figs. 2.6-2.7) --------------------------------

SCHEMES = {"single": "single pass (GeM)", "multiscale": "multi-scale (1, 1/√2, 1/2)",
           "grid": "patches: rigid grid 2×2", "pyramid": "patches: spatial pyramid 1 + 2×2",
           "fc": "FC layer", "fusion": "conv (GeM) + FC fusion", "crow": "CroW",
           "cam_crow": "CAM-weighted CroW"}
CAM_CLASSES = 10
"""Classes whose activation maps weight the features in CAM-weighted CroW."""


def classifier_head(params: Mapping[str, Any], seed: int, device: str) -> tuple:
    """The linear classifier on the backbone's pooled maps: the stand-in's (trained with it on
    its synthetic classes) or torchvision's ImageNet one."""
    from ..models import pretrained_head
    from ..train.standin import standin_head

    if params["backbone"] == "smallcnn":
        return standin_head(seed=seed, scale=synth_scale(params["profile"]),
                            epochs=params["pretrain_epochs"], device=device)
    return pretrained_head(params["backbone"])


def _one_image_schemes(backbone: torch.nn.Module, head: tuple, image: torch.Tensor,
                       done: Mapping[str, torch.Tensor]) -> dict:
    """Every scheme of one image (1, 3, H, W) as a function, called (and timed) in the order
    of :data:`SCHEMES`; ``done`` holds the results so far (fusion reuses single and fc). The
    FC layer is the classifier ``head`` (weight, bias) on the average-pooled maps of the one
    forward pass, as the network was pre-trained."""
    from ..models import (
        cam_crow,
        crow,
        fuse_layers,
        gem,
        l2n,
        multiscale_descriptor,
        patch_descriptors,
    )

    maps = backbone(image)
    weight, bias = head
    return {"single": lambda: l2n(gem(maps)),
            "multiscale": lambda: multiscale_descriptor(backbone, image, pooling="gem"),
            "grid": lambda: patch_descriptors(backbone, image, scheme="grid"),
            "pyramid": lambda: patch_descriptors(backbone, image, scheme="pyramid"),
            "fc": lambda: l2n(torch.nn.functional.linear(maps.mean(dim=(2, 3)), weight, bias)),
            "fusion": lambda: fuse_layers(done["single"], done["fc"]),
            "crow": lambda: l2n(crow(maps)),
            "cam_crow": lambda: cam_crow(maps, weight, top_classes=min(CAM_CLASSES,
                                                                       len(weight)),
                                         class_bias=bias)}


@torch.no_grad()
def scheme_descriptors(backbone: torch.nn.Module, head: tuple, dataset: Any,
                       device: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Descriptors (N, D) of every image under every scheme of :data:`SCHEMES`, and each
    scheme's seconds (the shared forward pass of the whole image counts for the single pass)."""
    import time

    backbone = backbone.eval().to(device)
    head = tuple(t.to(device) for t in head)
    rows: dict[str, list] = {name: [] for name in SCHEMES}
    seconds = dict.fromkeys(SCHEMES, 0.0)
    for index in range(len(dataset)):
        image = dataset[index]
        image = (image[0] if isinstance(image, tuple) else image).unsqueeze(0).to(device)
        done: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        schemes = _one_image_schemes(backbone, head, image, done)
        seconds["single"] += time.perf_counter() - started
        for name, compute in schemes.items():
            started = time.perf_counter()
            done[name] = compute()
            seconds[name] += time.perf_counter() - started
            rows[name].append(done[name].float().cpu())
    return {n: torch.cat(r).numpy() for n, r in rows.items()}, seconds


def scheme_scores(run: Session) -> pd.DataFrame:
    """Every extraction scheme on every evaluated benchmark (no whitening): per-query scores
    kept as each seed's ``schemes``; returns the mean table with milliseconds per image."""
    p, timings = run.params, []
    for seed, result in run.state["results"].items():
        net = prepare_backbone(p["backbone"], p["pretrained"], seed=seed,
                               scale=synth_scale(p["profile"]), epochs=p["pretrain_epochs"],
                               device=run.device)
        head = classifier_head(p, seed, run.device)
        for name in evaluated_benchmarks(p):
            bench = result.descriptors[name].benchmark
            db, db_s = scheme_descriptors(net, head, ImageListDataset(
                bench.db_paths, max_size=p["image_size"]), run.device)
            if bench.query_db_index is not None:
                query = {k: v[bench.query_db_index] for k, v in db.items()}
            else:
                query = scheme_descriptors(net, head, ImageListDataset(
                    bench.query_paths, boxes=bench.query_boxes, max_size=p["image_size"]),
                    run.device)[0]
            for scheme in SCHEMES:
                timings.append({"scheme": scheme, "ms per image":
                                1000 * db_s[scheme] / len(bench.db_paths)})
                for metric, values in evaluate_per_query(bench, query[scheme], db[scheme],
                                                         run.device).items():
                    result.schemes[(name, f"scheme/{scheme}", "none", metric)] = values
    table = score_table({s: r.schemes for s, r in run.state["results"].items()})
    wide = table.pivot_table(index="pooling", columns=["benchmark", "metric"], values="value",
                             sort=False)
    wide[("time", "ms per image")] = pd.DataFrame(timings).groupby("scheme").mean()[
        "ms per image"].reindex([k.removeprefix("scheme/") for k in wide.index]).to_numpy()
    wide.index = [SCHEMES[k.removeprefix("scheme/")] for k in wide.index]
    return wide.round(2)


# --- query-time re-ranking: query expansion and diffusion (Sec. 2.4.2, Table 2.1) ----------

RERANKERS = {"none": "plain kNN", "aqe": "average QE", "alpha_qe": "α-QE",
             "diffusion": "kNN-graph diffusion"}
RERANK_POOLING = "gem"
"""Descriptor re-ranked: GeM (whitened when the run whitens), cirtorch's standard one."""
QE_NEIGHBOURS, QE_ALPHA = 10, 3.0
DIFFUSION = {"gamma": 3.0, "k_query": 10, "alpha": 0.99, "iterations": 20}
"""Iscen et al.'s settings for global descriptors (s^3, α 0.99, 20 CG steps); the graph's
degree is the ``diffusion_k`` parameter (theirs: 50)."""


def diffusion_graph(db: np.ndarray, k: int = 50) -> Any:
    """The offline part of diffusion: the ``k``-NN graph of the database (:data:`DIFFUSION`)."""
    from ..search import build_diffusion_graph

    return build_diffusion_graph(db, k=min(k, len(db)), gamma=DIFFUSION["gamma"])


def rerank_rankings(query: np.ndarray, db: np.ndarray, method: str,
                    graph: Any = None) -> np.ndarray:
    """Full rankings (Q, N) of the database after re-ranking with ``method`` of RERANKERS
    (diffusion on ``graph``, a 50-NN graph of ``db`` when not given)."""
    from ..search import diffusion_rank, expand_queries

    if method == "none":
        return rank_all(query, db, metric="ip")
    if method in ("aqe", "alpha_qe"):
        alpha = QE_ALPHA if method == "alpha_qe" else 0.0
        return rank_all(expand_queries(query, db, n=QE_NEIGHBOURS, alpha=alpha), db, metric="ip")
    if method == "diffusion":
        graph = diffusion_graph(db) if graph is None else graph
        return diffusion_rank(graph, query, k_query=min(DIFFUSION["k_query"], len(db)),
                              alpha=DIFFUSION["alpha"], iterations=DIFFUSION["iterations"])[1]
    raise ValueError(f"method must be one of {', '.join(RERANKERS)}; got {method!r}")


def reranked_scores(run: Session) -> tuple[dict, pd.DataFrame]:
    """Per-query AP of every re-ranking on every mAP benchmark (seed → (benchmark,
    ``rerank/<method>``, whitening, metric) → scores, also kept as each seed's ``reranked``)
    and the milliseconds per query of the online part (the diffusion graph is built offline;
    its seconds are a column of their own)."""
    import time

    p = run.params
    whitening = "pca" if "pca" in whitenings_of(p) else "none"
    scores, timings = {}, []
    for seed, result in run.state["results"].items():
        scores[seed] = {}
        for name in evaluated_benchmarks(p):
            found = result.descriptors[name]
            if found.benchmark.protocol == "ukbench":
                continue
            q, d = found.query[RERANK_POOLING], found.db[RERANK_POOLING]
            if whitening == "pca":
                white = learn_whitening(result.descriptors[companion(name, p["oxford_version"])]
                                        .db[RERANK_POOLING], p["whitening_dim"])
                q, d = white.apply(q), white.apply(d)
            started = time.perf_counter()
            graph = diffusion_graph(d, p["diffusion_k"])
            offline = time.perf_counter() - started
            for method in RERANKERS:
                started = time.perf_counter()
                rankings = rerank_rankings(q, d, method, graph)
                seconds = time.perf_counter() - started
                timings.append({"seed": seed, "benchmark": name, "method": method,
                                "ms per query": 1000 * seconds / len(q),
                                "offline s": offline if method == "diffusion" else 0.0})
                for metric, values in evaluate_rankings(found.benchmark, rankings).items():
                    scores[seed][(name, f"rerank/{method}", whitening, metric)] = values
        result.reranked = scores[seed]
    return scores, pd.DataFrame(timings)


def rerank_table(run: Session) -> pd.DataFrame:
    """Mean AP of each re-ranking per benchmark and setup beside its milliseconds per query
    and, for diffusion, the seconds of building the graph (means over benchmarks, seeds)."""
    scores, timings = reranked_scores(run)
    table = score_table(scores)
    table["method"] = table["pooling"].str.removeprefix("rerank/")
    wide = table.pivot_table(index="method", columns=["benchmark", "metric"], values="value",
                             sort=False)
    times = timings.groupby("method", sort=False)[["ms per query", "offline s"]].mean()
    for column in times:
        wide[("time", column)] = times[column]
    wide.index = [RERANKERS[m] for m in wide.index]
    for key, method in (("rerank_ms_plain", "none"), ("rerank_ms_diffusion", "diffusion")):
        run.report.metric(key, round(float(times.loc[method, "ms per query"]), 2), glue=False)
    run.report.metric("relevant_per_query", relevant_per_query(run))
    return wide.round(2)


def relevant_per_query(run: Session) -> float:
    """Mean number of relevant database images (Medium: easy + hard) per query of the first
    revisited benchmark evaluated, to set beside the diffusion graph's degree."""
    found = next(iter(run.state["results"].values())).descriptors
    for name in evaluated_benchmarks(run.params):
        bench = found[name].benchmark
        if bench.protocol == "revisited":
            return round(float(np.mean([len(g["easy"]) + len(g["hard"]) for g in bench.gnd])),
                         1)
    return float("nan")


# --- the accuracy-speed trade-off of search (Table 2.1) ------------------------------------

SEARCH_SPREAD = 1.5
"""Noise of the clustered vectors around their centres (unit vectors): set so that exact search
has a mean AP@100 between 50 and 90 % (49 % at 1.6, 87 % at 1.3 on the demo's 50k x 128), as real
embeddings have, before any backend was compared."""
SEARCH_PER_CLUSTER, SEARCH_K = 100, 100
CLAIM_PQ = "ivf_pq nprobe=16"


def search_data(params: Mapping[str, Any], seed: int, structured: bool = True) -> tuple:
    """(database, queries, database labels, query labels): clustered vectors, 100 per cluster
    (``structured`` False: structureless Gaussian vectors, labels all 0)."""
    from ..data.synth import clustered_queries, clustered_vectors, gaussian_vectors

    n, dim = params["search_n"], params["search_dim"]
    queries = max(10, min(500, n // 20))
    if not structured:
        return (gaussian_vectors(n, dim, seed), gaussian_vectors(queries, dim, seed + 1),
                np.zeros(n, np.int64), np.zeros(queries, np.int64))
    clusters = max(1, n // SEARCH_PER_CLUSTER)
    db, db_labels = clustered_vectors(n, dim, clusters, seed, spread=SEARCH_SPREAD)
    q, q_labels = clustered_queries(queries, dim, clusters, seed, spread=SEARCH_SPREAD)
    return db, q, db_labels, q_labels


def search_tradeoff(run: Session) -> pd.DataFrame:
    """Every backend at every query setting on the clustered vectors (per seed; kept as each
    seed's ``search`` for the claim): mAP@100, recall@10, ms per query (medians of 5 timed
    searches), build seconds and memory; means over the seeds."""
    from ..search.tradeoff import sweep_backends

    tables = []
    for seed, result in run.state["results"].items():
        table, per_setting = sweep_backends(*search_data(run.params, seed), k=SEARCH_K,
                                            seed=seed, repeats=5)
        result.search = per_setting
        tables.append(table)
    table = pd.concat(tables).groupby(["backend", "setting"], sort=False).mean().reset_index()
    exact = table[table.setting == "exact"].iloc[0]
    pq = table[table.setting == CLAIM_PQ].iloc[0]
    run.report.metric("search_exact_map", round(float(exact["mAP@k"]), 1))
    run.report.metric("search_pq_map", round(float(pq["mAP@k"]), 1))
    return table


def search_speedup(run: Session, table: pd.DataFrame) -> float:
    """How many times faster IVF-PQ (nprobe 16) answers than exact search (glued; a timing,
    so shown apart from the accuracies)."""
    by_setting = table.set_index("setting")["ms per query"]
    speedup = round(float(by_setting["exact"] / by_setting[CLAIM_PQ]), 1)
    run.report.metric("search_pq_speedup", speedup)
    return speedup


STRUCTURELESS_MAX = 20_000
"""Vectors of the structureless note at most: the collapse shows at any size."""


def structureless_recall(run: Session) -> pd.DataFrame:
    """Recall@10 of the approximate backends on Gaussian vectors of the same dimension, at most
    :data:`STRUCTURELESS_MAX` of them (first seed): without clusters the cells and graphs of
    the indexes carry no information."""
    from ..search.tradeoff import sweep_backends

    params = {**run.params, "search_n": min(run.params["search_n"], STRUCTURELESS_MAX)}
    table, _ = sweep_backends(*search_data(params, run.seeds[0], structured=False),
                              k=10, seed=run.seeds[0], repeats=1,
                              kinds=("ivf_flat", "ivf_pq", "hnsw"))
    return table[["backend", "setting", "recall@10"]]


def record_table(run: Session, table: pd.DataFrame) -> None:
    """Every number of the score table into ``results.json`` (not glued)."""
    for row in table.itertuples():
        run.report.metric(f"{row.benchmark}/{row.metric}/{row.pooling}/{row.whitening}",
                          round(row.value, 2), glue=False)


def best_configuration(run: Session, table: pd.DataFrame) -> pd.Series:
    """The best (pooling, whitening) by mAP (Medium on the revisited sets), glued."""
    best = table[table["metric"].isin(["mAP M", "mAP"])].sort_values("value").iloc[-1]
    run.report.metric("best_config",
                      f"{best.pooling} with whitening '{best.whitening}' on {best.benchmark}")
    run.report.metric("best_value", round(best.value, 1))
    return best


# --- supervised fine-tuning on SfM tuples (Sec. 2.4.1, Table 2.3) ---------------------------

FINETUNE_LABELS = {"contrastive": "contrastive (cirtorch form of Eq. 2.16)",
                   "siamese": "Siamese (Eq. 2.16)",
                   "double_margin": "double-margin Siamese (Eq. 2.19)",
                   "triplet": "triplet (Eq. 2.17)",
                   "joint": "triplet + cross-entropy (Eq. 2.18)"}
FINETUNE_WHITENINGS = {"none": "raw", "pca": "PCA-whitened (companion)",
                       "learned": "learned whitening (SfM val pairs)"}
POOL_PER_QUERY = 10
"""Images in the mining pool per query: cirtorch draws 20,000 for its 2,000 queries."""


def finetune_losses_of(params: Mapping[str, Any]) -> list[str]:
    from ..instance import LOSSES

    choice = params["finetune_loss"]
    return [] if choice == "none" else list(LOSSES) if choice == "all" else [choice]


def sfm_training_set(params: Mapping[str, Any]):
    """retrieval-SfM-120k in its official layout (the synthetic stand-in written first)."""
    from ..data.sfm import load_sfm120k
    from ..data.synth.sfm import SFM_SCALES

    scale = synth_scale(params["profile"])
    folder = benchmark_folder(params["synthetic"], params["data_root"], scale)
    if params["synthetic"]:
        synth.write_sfm120k(folder, seed=params["seed"], **SFM_SCALES[scale])
    return load_sfm120k(folder)


def finetune_config(params: Mapping[str, Any], loss: str, seed: int, n_images: int,
                    pooling: str = "gem"):
    """cirtorch's recipe (:class:`irbook.instance.FinetuneConfig`) with the run's loss,
    epochs, queries, learning rate and image size."""
    from ..instance import FinetuneConfig

    queries = params["finetune_queries"]
    return FinetuneConfig(loss=loss, lr=params["finetune_lr"], epochs=params["finetune_epochs"],
                          n_queries=queries, pool_size=min(POOL_PER_QUERY * queries, n_images),
                          image_size=params["image_size"], pooling=pooling,
                          mining_batch_size=32 if params["synthetic"] else 1, seed=seed,
                          progress=False)


def finetuned_network(params: Mapping[str, Any], backbone: torch.nn.Module, sfm: Any,
                      loss: str, seed: int, pooling: str = "gem"):
    """The fine-tuned network, read from the cache when this exact run finished before."""
    from ..instance.experiments import cached_finetune
    from ..paths import cache_dir

    config = finetune_config(params, loss, seed, sfm.train.n_images, pooling)
    return cached_finetune(backbone, sfm.train, config, cache_dir() / "ch02")


def finetuned_whitenings(net: Any, sfm: Any, descriptors: Mapping[str, BenchmarkDescriptors],
                         params: Mapping[str, Any], device: str) -> dict[str, Any]:
    """Whitening name -> callable (query, db, benchmark name) -> whitened (query, db)."""
    from ..instance.experiments import split_descriptors, split_learned_whitening

    chosen: dict[str, Any] = {"none": lambda q, d, name: (q, d)}
    if "pca" in whitenings_of(params):
        def pca(q, d, name):
            white = learn_whitening(descriptors[companion(name, params["oxford_version"])]
                                    .db["gem"], params["whitening_dim"])
            return white.apply(q), white.apply(d)
        chosen["pca"] = pca
    val = split_descriptors(net, sfm.val, params["image_size"], device, batch_size=32,
                            progress=False)
    dim = min(params["whitening_dim"] or val.shape[1], val.shape[1])
    learned = split_learned_whitening(val, sfm.val, dim=dim)
    chosen["learned"] = lambda q, d, name: (learned.apply(q), learned.apply(d))
    return chosen


def evaluate_finetuned(result: Any, sfm: Any, benchmarks: Mapping[str, InstanceBenchmark],
                       params: Mapping[str, Any], device: str, method: str) -> dict:
    """(benchmark, ``method``, whitening, metric) -> per-query scores of a fine-tuned net."""
    net = result.net
    descriptors = {name: describe(net.backbone, bench, {"gem": net.pooling},
                                  params["image_size"], device, progress=False)
                   for name, bench in benchmarks.items()}
    scores = {}
    for whitening, apply in finetuned_whitenings(net, sfm, descriptors, params, device).items():
        for name in evaluated_benchmarks(params):
            found = descriptors[name]
            q, d = apply(found.query["gem"], found.db["gem"], name)
            for metric, values in evaluate_per_query(found.benchmark, q, d, device).items():
                scores[(name, method, whitening, metric)] = values
    return scores


def run_finetuning(run: Session, benchmarks: Mapping[str, InstanceBenchmark]) -> pd.DataFrame:
    """Fine-tune the run's backbone with every chosen loss (GeM, learned p) for every seed,
    score it raw, PCA-whitened and with learned whitening (kept as each seed's ``finetuned``);
    returns the training history (loss, distances and p per epoch) of every network."""
    p, histories = run.params, []
    sfm = run.state["sfm"] if "sfm" in run.state else sfm_training_set(p)
    for seed, result in run.state["results"].items():
        backbone = prepare_backbone(p["backbone"], p["pretrained"], seed=seed,
                                    scale=synth_scale(p["profile"]),
                                    epochs=p["pretrain_epochs"], device=run.device)
        for loss in finetune_losses_of(p):
            trained = finetuned_network(p, backbone, sfm, loss, seed)
            result.finetuned.update(evaluate_finetuned(trained, sfm, benchmarks, p,
                                                       run.device, f"finetuned/{loss}"))
            histories += [dict(record, seed=seed, loss_name=loss) for record in trained.history]
    run.state["sfm"] = sfm
    return pd.DataFrame(histories)


def finetune_table(run: Session) -> pd.DataFrame:
    """Table 2.3 analogue: off-the-shelf GeM beside every fine-tuned network and whitening,
    mean per benchmark and setup (means over the seeds)."""
    results = run.state["results"]
    rows = score_table({seed: {**{k: v for k, v in r.scores.items() if k[1] == "gem"},
                               **r.finetuned} for seed, r in results.items()})
    rows["network"] = rows["pooling"].map(
        lambda m: "off-the-shelf" if m == "gem"
        else FINETUNE_LABELS[m.removeprefix("finetuned/")])
    rows["whitening"] = rows["whitening"].map(FINETUNE_WHITENINGS)
    wide = rows.pivot_table(index=["network", "whitening"], columns=["benchmark", "metric"],
                            values="value", sort=False)
    for row in rows.itertuples():
        run.report.metric(f"finetune/{row.benchmark}/{row.metric}/{row.pooling}/"
                          f"{row.whitening}", round(row.value, 2), glue=False)
    return wide.round(2)


def finetune_curves(history: pd.DataFrame) -> Any:
    """The loss, the query-positive / query-negative distances and GeM's p per epoch."""
    from .. import viz

    long = history.melt(id_vars=["epoch", "loss_name", "seed"],
                        value_vars=["loss", "positive_distance", "negative_distance", "gem_p"],
                        var_name="quantity").dropna(subset=["value"])
    return viz.plot_lines(long, x="epoch", y="value", hue="loss_name", panel="quantity",
                          title="Fine-tuning on the SfM tuples, per epoch")


# --- network depth (Fig. 2.13a) --------------------------------------------------------------

DEPTH_STANDINS = (3, 4, 5)
"""Conv blocks of the stand-ins compared on the CPU profiles (128, 256 and 512 channels)."""
DEPTH_TORCHVISION = ("vgg16", "googlenet", "resnet50", "resnet101")
"""The ImageNet networks compared with a torchvision backbone (the thesis also has AlexNet)."""


def depth_networks(params: Mapping[str, Any]) -> list[str]:
    """Labels of the networks of Fig. 2.13a, shallowest first."""
    if params["depths"] == "none":
        return []
    if params["backbone"] == "smallcnn":
        return [f"smallcnn-{depth}" for depth in DEPTH_STANDINS]
    return list(DEPTH_TORCHVISION)


def depth_backbone(params: Mapping[str, Any], label: str, seed: int,
                   device: str) -> torch.nn.Module:
    """The pre-trained network behind a :func:`depth_networks` label, frozen, in eval mode."""
    if label.startswith("smallcnn-"):
        return standin_backbone(seed=seed, scale=synth_scale(params["profile"]),
                                epochs=params["pretrain_epochs"], device=device,
                                depth=int(label.removeprefix("smallcnn-"))).eval()
    return prepare_backbone(label, True, seed=seed, scale=synth_scale(params["profile"]),
                            epochs=0, device=device)


def raw_scores(backbone: torch.nn.Module, pooling: torch.nn.Module,
               benchmarks: Mapping[str, InstanceBenchmark], params: Mapping[str, Any],
               device: str, method: str) -> dict:
    """(benchmark, ``method``, "none", metric) -> per-query scores of raw descriptors."""
    scores = {}
    for name in evaluated_benchmarks(params):
        found = describe(backbone, benchmarks[name], {"pooled": pooling}, params["image_size"],
                         device, progress=False)
        values = evaluate_per_query(found.benchmark, found.query["pooled"], found.db["pooled"],
                                    device)
        scores.update({(name, method, "none", metric): v for metric, v in values.items()})
    return scores


def depth_scores(run: Session, benchmarks: Mapping[str, InstanceBenchmark]) -> pd.DataFrame:
    """Fig. 2.13a: every network of :func:`depth_networks` with MAC, off-the-shelf and
    fine-tuned with the contrastive loss (the run's recipe), raw descriptors; kept as each
    seed's ``depth`` (method ``depth/<network>/<state>``); mean mAP per network and state."""
    from ..models.pooling import make_pooling

    p = run.params
    sfm = run.state.get("sfm") or sfm_training_set(p)
    for seed, result in run.state["results"].items():
        for label in depth_networks(p):
            backbone = depth_backbone(p, label, seed, run.device)
            result.depth.update(raw_scores(backbone, make_pooling("mac"), benchmarks, p,
                                           run.device, f"depth/{label}/off-the-shelf"))
            tuned = finetuned_network(p, backbone, sfm, "contrastive", seed, pooling="mac").net
            result.depth.update(raw_scores(tuned.backbone, tuned.pooling, benchmarks, p,
                                           run.device, f"depth/{label}/fine-tuned"))
    table = score_table({seed: r.depth for seed, r in run.state["results"].items()})
    parts = table["pooling"].str.split("/", expand=True)
    return table.assign(network=parts[1], state=parts[2])


def plot_depths(table: pd.DataFrame) -> Any:
    """mAP of each network, off-the-shelf and fine-tuned, one panel per benchmark setup."""
    from .. import viz

    panels = table.assign(panel=table["benchmark"] + " · " + table["metric"])
    return viz.plot_metric_panels(panels, panel="panel", x="network", hue="state",
                                  title="Fig. 2.13a: network depth (MAC)")


# --- heads on frozen features: deep hashing (Eq. 2.12) and the dimension (Fig. 2.13b) --------

HASH_METHODS = {"lsh": "LSH (signs of random projections)", "pca_sign": "PCA + sign",
                "deep": "deep hashing head (Eq. 2.12)"}
HEAD_EPOCHS = 20
"""Epochs of every head trained on frozen features (seconds each on the CPU profiles)."""


def hash_bit_counts(params: Mapping[str, Any]) -> list[int]:
    bits = params["hash_bits"]
    return [bits // 4, bits // 2, bits] if bits else []


def dimensions_of(params: Mapping[str, Any]) -> list[int]:
    """32, 64, ... up to ``dims_max`` (Fig. 2.13b's 32-8192)."""
    top = params["dims_max"]
    return [32 * 2**i for i in range(12) if 32 * 2**i <= top] if top else []


def frozen_sfm_features(run: Session, seed: int) -> torch.Tensor:
    """Off-the-shelf GeM descriptors (N, C) of the :func:`head_split` images (first call
    computes)."""
    from ..instance.experiments import split_descriptors
    from ..models.net import RetrievalNet

    cache = run.state.setdefault("sfm_features", {})
    if seed not in cache:
        p = run.params
        backbone = prepare_backbone(p["backbone"], p["pretrained"], seed=seed,
                                    scale=synth_scale(p["profile"]),
                                    epochs=p["pretrain_epochs"], device=run.device)
        cache[seed] = torch.from_numpy(split_descriptors(
            RetrievalNet(backbone, "gem").eval(), head_split(run), p["image_size"],
            run.device, batch_size=32, progress=False))
    return cache[seed]


def scores_of_rankings(bench: InstanceBenchmark, rankings: np.ndarray) -> dict:
    """Per-query scores of full rankings under the benchmark's protocol (UKBench: N-S)."""
    if bench.protocol == "ukbench":
        groups = bench.db_groups
        hits = groups[rankings[:, :4]] == groups[bench.query_db_index][:, None]
        return {"N-S": hits.sum(axis=1).astype(float)}
    return evaluate_rankings(bench, rankings)


def binary_codes(method: str, train: np.ndarray, bits: int, seed: int, labels: np.ndarray):
    """A function mapping descriptors (n, C) to {0, 1} codes (n, bits) for ``method``; every
    method sees the descriptors standardised by the training set's mean and deviation (the
    raw GeM coordinates share one sign, which left a linear head's codes constant)."""
    mean, scale = train.mean(axis=0), train.std(axis=0) + 1e-8
    train = (train - mean) / scale
    encode = _encoder(method, train, bits, seed, labels)
    return lambda x: encode((x - mean) / scale)


def _encoder(method: str, train: np.ndarray, bits: int, seed: int, labels: np.ndarray):
    if method == "lsh":
        projection = np.random.default_rng(seed).standard_normal((train.shape[1], bits))
        return lambda x: (x @ projection >= 0).astype(np.uint8)
    if method == "pca_sign":
        white = fit_pca_whitening(train, dim=min(bits, train.shape[1]))
        return lambda x: (white.apply(x, normalize=False) >= 0).astype(np.uint8)
    from ..instance.heads import HashTrainingConfig, train_hash_head

    head = train_hash_head(torch.from_numpy(train), labels, HashTrainingConfig(
        n_bits=bits, epochs=HEAD_EPOCHS, seed=seed, progress=False)).head
    return lambda x: head.codes(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))


def hashing_scores(run: Session) -> pd.DataFrame:
    """Hamming ranking (``irbook.search`` binary codes) of every method and code length on
    every benchmark, codes learned on the SfM training images' frozen GeM descriptors; kept as
    each seed's ``hashed`` (method ``hash/<method>/<bits>``); means per benchmark and setup."""
    from ..search.binary import hamming_knn

    p = run.params
    for seed, result in run.state["results"].items():
        train = frozen_sfm_features(run, seed).numpy()
        labels = head_split(run).clusters
        for bits in hash_bit_counts(p):
            for method in HASH_METHODS:
                encode = binary_codes(method, train, bits, seed, labels)
                for name in evaluated_benchmarks(p):
                    found = result.descriptors[name]
                    db = encode(found.db["gem"])
                    rankings = hamming_knn(encode(found.query["gem"]), db, k=len(db))[1]
                    for metric, values in scores_of_rankings(found.benchmark, rankings).items():
                        result.hashed[(name, f"hash/{method}/{bits}", "none", metric)] = values
    table = score_table({seed: r.hashed for seed, r in run.state["results"].items()})
    parts = table["pooling"].str.split("/", expand=True)
    return table.assign(method=parts[1].map(HASH_METHODS), bits=parts[2].astype(int))


def dimension_scores(run: Session) -> pd.DataFrame:
    """Fig. 2.13b: a linear layer C -> d on the frozen GeM descriptors, trained on the SfM
    tuples with the contrastive loss, for every d of :func:`dimensions_of`; kept as each
    seed's ``dimension`` (method ``dim/<d>``); means per benchmark and setup."""
    from ..instance.heads import HeadConfig, train_head_on_tuples

    p = run.params
    for seed, result in run.state["results"].items():
        train, split = frozen_sfm_features(run, seed), head_split(run)
        config = HeadConfig(n_queries=p["finetune_queries"], epochs=HEAD_EPOCHS, seed=seed,
                            pool_size=min(POOL_PER_QUERY * p["finetune_queries"],
                                          split.n_images), progress=False)
        for dim in dimensions_of(p):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                head = torch.nn.Linear(train.shape[1], dim)
            head = train_head_on_tuples(head, train, split, config).head

            def project(x, head=head):
                with torch.no_grad():
                    out = head(torch.from_numpy(np.ascontiguousarray(x)))
                return torch.nn.functional.normalize(out, dim=1).numpy()

            for name in evaluated_benchmarks(p):
                found = result.descriptors[name]
                values = evaluate_per_query(found.benchmark, project(found.query["gem"]),
                                            project(found.db["gem"]), run.device)
                result.dimension.update({(name, f"dim/{dim}", "none", m): v
                                         for m, v in values.items()})
    table = score_table({seed: r.dimension for seed, r in run.state["results"].items()})
    return table.assign(dimension=table["pooling"].str.removeprefix("dim/").astype(int))


# --- claims ----------------------------------------------------------------------------------

def _evidence(results: Mapping[int, OffTheShelfRun]) -> list[Evidence]:
    """One :class:`Evidence` per seed: every mAP-type score array, NaN queries dropped (they
    have no positives in that setup, whatever the ranking, so the query sets still pair)."""
    out = []
    for seed, result in results.items():
        evidence = Evidence(seed)
        every = {**result.scores, **result.aggregated, **result.reranked, **result.schemes,
                 **result.finetuned, **result.depth, **result.hashed, **result.dimension}
        for (bench, pooling, whitening, metric), values in every.items():
            if metric.startswith("mAP"):
                keep = ~np.isnan(values)
                evidence.add(_name(bench, pooling, whitening, metric), values[keep],
                             query_set=f"{bench}/{metric}")
        for setting, measured in result.search.items():
            evidence.add(f"search {setting} AP", measured["ap"], query_set="search/AP")
            evidence.add(f"search {setting} ms", measured["ms"], query_set="search/repeats")
        out.append(evidence)
    return out


def _name(bench: str, pooling: str, whitening: str, metric: str) -> str:
    return f"{metric} {bench} {pooling} {whitening}"


def _map_keys(results: Mapping[int, OffTheShelfRun]) -> list[tuple[str, str, str, str]]:
    first = next(iter(results.values()))
    return [key for key in first.scores if key[3].startswith("mAP")]


def whitening_claim(results, evidence):
    """PCA-whitening raises the mean mAP over every (benchmark, pooling, setup) (Table 2.2)."""
    keys = _map_keys(results)
    if {k[2] for k in keys} != {"none", "pca"}:
        return None
    plus = tuple(_name(*k) for k in keys if k[2] == "pca")
    minus = tuple(_name(*k) for k in keys if k[2] == "none")
    return evaluate_claim(
        "ch02.whitening_helps", "PCA-whitening raises the mAP of off-the-shelf descriptors",
        "Table 2.2", [Comparison("PCA-whitened − raw, mean mAP", plus, minus)], evidence)


def weighted_pooling_claim(results, evidence):
    """R-MAC, CroW and GeM each beat SPoC in mean mAP (Table 2.2, Figure 2.12b)."""
    keys = _map_keys(results)
    if not {"spoc", "rmac", "crow", "gem"} <= {k[1] for k in keys}:
        return None

    def names(pooling):
        return tuple(_name(*k) for k in keys if k[1] == pooling)

    comparisons = [Comparison(f"{p} − spoc, mean mAP", names(p), names("spoc"))
                   for p in ("rmac", "crow", "gem")]
    return evaluate_claim("ch02.weighted_beats_spoc", "R-MAC, CroW and GeM beat plain SPoC",
                          "Table 2.2, Figure 2.12b", comparisons, evidence)


def hard_is_harder_claim(results, evidence):
    """Easy ≥ Medium ≥ Hard on each revisited benchmark (the book's reading of the protocol)."""
    keys = [k for k in _map_keys(results) if k[3] in REVISITED_SETUPS.values()]
    if not keys:
        return None
    comparisons = []
    for bench in dict.fromkeys(k[0] for k in keys):
        def names(metric, bench=bench):
            return tuple(_name(*k) for k in keys if k[0] == bench and k[3] == metric)
        comparisons += [Comparison(f"E − M, {bench}", names("mAP E"), names("mAP M")),
                        Comparison(f"M − H, {bench}", names("mAP M"), names("mAP H"))]
    return evaluate_claim(
        "ch02.hard_is_harder", "Hard queries score below Medium ones, Medium below Easy", "book",
        comparisons, evidence)


def vlad_fv_beat_bow_claim(results, evidence):
    """VLAD and Fisher vectors beat BoW at the same length, in mean mAP over every benchmark
    and setup (Sec. 2.3.2, Fig. 2.12b)."""
    first = next(iter(results.values()))
    keys = [k for k in first.aggregated if k[3].startswith("mAP")]
    if not keys:
        return None

    def names(method):
        return tuple(_name(*k) for k in keys if k[1] == method)

    comparisons = [Comparison(f"{AGGREGATION_LABELS[m]} − BoW, mean mAP", names(m),
                              names("bow")) for m in ("vlad", "fv")]
    return evaluate_claim("ch02.vlad_fv_beat_bow", "VLAD and Fisher vectors embed local "
                          "features better than a bag of words of the same length",
                          "Sec. 2.3.2, Fig. 2.12b", comparisons, evidence)


def netvlad_claim(results, evidence):
    """NetVLAD trained on matching pairs beats VLAD with as many centroids, in mean mAP over
    every benchmark and setup (Sec. 2.3.2.2: the VLAD layer fine-tuned, Table 2.3)."""
    first = next(iter(results.values()))
    keys = [k for k in first.aggregated if k[3].startswith("mAP")]
    if not any(k[1] == "netvlad/trained" for k in keys):
        return None

    def names(method):
        return tuple(_name(*k) for k in keys if k[1] == method)

    return evaluate_claim("ch02.netvlad_beats_vlad", "VLAD as a layer trained on matching "
                          "pairs (NetVLAD) beats VLAD with the same centroids count",
                          "Sec. 2.3.2.2, Table 2.3",
                          [Comparison("NetVLAD trained − VLAD, mean mAP",
                                      names("netvlad/trained"), names("vlad"))], evidence)


def diffusion_claim(results, evidence):
    """kNN-graph diffusion raises the Hard mAP of each revisited benchmark over the plain
    ranking of the same descriptors (Sec. 2.4.2, Table 2.1: the diffusion entries)."""
    first = next(iter(results.values()))
    keys = [k for k in first.reranked if k[3] == "mAP H"]
    if not keys:
        return None
    comparisons = []
    for bench in dict.fromkeys(k[0] for k in keys):
        whitening = next(k[2] for k in keys if k[0] == bench)
        comparisons.append(Comparison(
            f"diffusion − plain kNN, mAP H, {bench}",
            _name(bench, "rerank/diffusion", whitening, "mAP H"),
            _name(bench, "rerank/none", whitening, "mAP H")))
    return evaluate_claim("ch02.diffusion_raises_hard", "Diffusion over the kNN graph of the "
                          "database raises the Hard mAP", "Sec. 2.4.2, Table 2.1", comparisons,
                          evidence)


def pq_tradeoff_claim(results, evidence):
    """IVF-PQ (nprobe 16) answers faster than exact search and loses mAP@100 for it (Table
    2.1's accuracy-speed balance; the timed repeats are resampled for the speed)."""
    if not next(iter(results.values())).search:
        return None
    comparisons = [
        Comparison("exact − IVF-PQ, mAP@100", "search exact AP", f"search {CLAIM_PQ} AP"),
        Comparison("exact − IVF-PQ, ms per query", "search exact ms", f"search {CLAIM_PQ} ms",
                   unit="ms")]
    return evaluate_claim("ch02.ivfpq_trades_map_for_speed", "IVF-PQ trades mAP for speed: "
                          "it answers faster than exact search and ranks worse",
                          "Sec. 2.5, Table 2.1", comparisons, evidence)


def multiple_passes_claim(results, evidence):
    """Several passes over image patches (rigid grid, spatial pyramid) raise the mean mAP over
    one pass over the whole image, both with GeM (Sec. 2.3.1.2)."""
    first = next(iter(results.values()))
    keys = [k for k in first.schemes if k[3].startswith("mAP")]
    if not keys:
        return None

    def names(scheme):
        return tuple(_name(*k) for k in keys if k[1] == f"scheme/{scheme}")

    comparisons = [Comparison(f"{SCHEMES[s]} − single pass, mean mAP", names(s),
                              names("single")) for s in ("grid", "pyramid")]
    return evaluate_claim("ch02.multiple_passes_help", "Multiple passes over image patches "
                          "retrieve better than one pass over the whole image",
                          "Sec. 2.3.1.2, Fig. 2.7", comparisons, evidence)


def finetuned_claim(results, evidence):
    """Every fine-tuned network beats the off-the-shelf one with the same pooling (GeM), raw
    descriptors, in mean mAP over every benchmark and setup (Sec. 2.5.3, Tables 2.2-2.3)."""
    first = next(iter(results.values()))
    keys = [k for k in first.finetuned if k[3].startswith("mAP") and k[2] == "none"]
    if not keys or not any(k[1] == "gem" and k[2] == "none" for k in first.scores):
        return None
    offtheshelf = tuple(_name(*k) for k in first.scores
                        if k[1] == "gem" and k[2] == "none" and k[3].startswith("mAP"))
    comparisons = [Comparison(f"{method.removeprefix('finetuned/')} − off-the-shelf GeM, mean "
                              "mAP", tuple(_name(*k) for k in keys if k[1] == method),
                              offtheshelf)
                   for method in dict.fromkeys(k[1] for k in keys)]
    return evaluate_claim("ch02.finetuned_beats_offtheshelf", "Fine-tuning on matching and "
                          "non-matching pairs beats the off-the-shelf network",
                          "Sec. 2.5.3, Tables 2.2-2.3", comparisons, evidence)


def depth_claim(results, evidence):
    """The deepest network, fine-tuned, beats the shallowest one fine-tuned the same way, in
    mean mAP over every benchmark and setup (Sec. 2.5.3, Fig. 2.13a)."""
    first = next(iter(results.values()))
    keys = [k for k in first.depth if k[3].startswith("mAP") and k[1].endswith("/fine-tuned")]
    networks = list(dict.fromkeys(k[1] for k in keys))
    if len(networks) < 2:
        return None

    def names(method):
        return tuple(_name(*k) for k in keys if k[1] == method)

    deep, shallow = networks[-1], networks[0]
    label = f"{deep.split('/')[1]} − {shallow.split('/')[1]}, fine-tuned, mean mAP"
    return evaluate_claim("ch02.deeper_is_better", "A deeper network retrieves better after "
                          "the same fine-tuning", "Sec. 2.5.3, Fig. 2.13a",
                          [Comparison(label, names(deep), names(shallow))], evidence)


def hashing_claim(results, evidence):
    """Learned hash codes beat LSH codes of the same length, in mean mAP over every benchmark
    and setup, at every length (Sec. 2.3.2.4)."""
    first = next(iter(results.values()))
    keys = [k for k in first.hashed if k[3].startswith("mAP")]
    if not keys:
        return None

    def names(method, bits):
        return tuple(_name(*k) for k in keys if k[1] == f"hash/{method}/{bits}")

    bit_counts = list(dict.fromkeys(int(k[1].split("/")[2]) for k in keys))
    comparisons = [Comparison(f"deep − LSH, {b} bits, mean mAP", names("deep", b),
                              names("lsh", b)) for b in bit_counts]
    return evaluate_claim("ch02.learned_codes_beat_lsh", "Hash codes learned from labelled "
                          "pairs beat random-projection codes of the same length",
                          "Sec. 2.3.2.4", comparisons, evidence)


def dimension_claim(results, evidence):
    """The longest trained descriptor beats the 32-d one (Sec. 2.5.3, Fig. 2.13b)."""
    first = next(iter(results.values()))
    keys = [k for k in first.dimension if k[3].startswith("mAP")]
    dims = sorted({int(k[1].removeprefix("dim/")) for k in keys})
    if len(dims) < 2:
        return None

    def names(dim):
        return tuple(_name(*k) for k in keys if k[1] == f"dim/{dim}")

    return evaluate_claim("ch02.higher_dimension_helps", "Longer descriptors retrieve better",
                          "Sec. 2.5.3, Fig. 2.13b",
                          [Comparison(f"{dims[-1]}-d − {dims[0]}-d, mean mAP",
                                      names(dims[-1]), names(dims[0]))], evidence)


CLAIMS = (whitening_claim, weighted_pooling_claim, hard_is_harder_claim,
          vlad_fv_beat_bow_claim, netvlad_claim, diffusion_claim, pq_tradeoff_claim,
          multiple_passes_claim, finetuned_claim, depth_claim, hashing_claim, dimension_claim)
CLAIM_IDS = ("ch02.whitening_helps", "ch02.weighted_beats_spoc", "ch02.hard_is_harder",
             "ch02.vlad_fv_beat_bow", "ch02.netvlad_beats_vlad", "ch02.diffusion_raises_hard",
             "ch02.ivfpq_trades_map_for_speed", "ch02.multiple_passes_help",
             "ch02.finetuned_beats_offtheshelf", "ch02.deeper_is_better",
             "ch02.learned_codes_beat_lsh", "ch02.higher_dimension_helps")


def check_claims(run: Session) -> pd.DataFrame:
    """Every claim of the chapter on this run; the ones the run cannot test are skipped."""
    results = run.state["results"]
    evidence = _evidence(results)
    checked = [claim for check in CLAIMS if (claim := check(results, evidence)) is not None]
    for claim in checked:
        run.report.add_claim(claim)
    for missing in sorted(set(CLAIM_IDS) - {c.id for c in checked}):
        run.report.skip_claim(missing, "this run's pooling/whitening/aggregation/dataset "
                                       "choice")
    run.report.save()
    return run.report.claims_frame()


# --- gallery ---------------------------------------------------------------------------------

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
    """Inputs of :func:`irbook.viz.plot_galleries`: each query's top ``k`` (top-k search)."""
    bench, queries = found.benchmark, list(queries)
    if not queries:
        return []
    _, top = knn(found.query[pooling][queries], found.db[pooling], k=k + 1, metric="ip")
    rows = []
    for q, ranking in zip(queries, top, strict=True):
        ranked = [int(i) for i in ranking if bench.query_db_index is None
                  or i != bench.query_db_index[q]][:k]
        rows.append(GalleryRow(
            query_image=load_image(bench.query_paths[q]),
            query_box=bench.query_boxes[q],
            result_images=[load_image(bench.db_paths[i]) for i in ranked],
            labels=result_labels(bench, q, ranked),
        ))
    return rows
