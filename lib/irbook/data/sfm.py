"""Fine-tuning tuples from retrieval-SfM-120k (cnnimageretrieval-pytorch) and hard-negative mining.

Layout read (``root`` is the folder that holds ``retrieval-SfM-120k/``, i.e. cirtorch's
``<data_root>/train``)::

    <root>/retrieval-SfM-120k/retrieval-SfM-120k.pkl
    <root>/retrieval-SfM-120k/ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>

The pickle is a dict with one entry per split, ``"train"`` and ``"val"``; each split is a dict
with ``cids`` (image names; the files carry no extension), ``cluster`` (one id per image: the
3-D model the image was registered to), ``qidxs`` and ``pidxs`` (equal-length lists of 0-based
image indices: query ``qidxs[i]`` and its matching image ``pidxs[i]``) and, optionally, ``bbxs``
(one entry per image, None or ``[x1, y1, x2, y2]``). Indices refer to the split's own images.

Each epoch, :func:`mine_tuples` draws query-positive pairs and, for each query, the most similar
images of a random pool that come from other clusters, at most one per cluster (Radenovic et
al.'s SfM-based selection, thesis sections 2.4.1.2 and 2.4.2). A tuple feeds the Siamese
(contrastive) loss, Eq. 2.16, as (q, p) with S = 1 and (q, n_i) with S = 0, or the triplet loss,
Eq. 2.17. Descriptors come from a callable, so any model (or none) can drive the mining.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from irbook.data.errors import DatasetCorruptError, require

Box = tuple[float, float, float, float]
Describe = Callable[[np.ndarray], np.ndarray]
"""Maps an int64 array of image indices to an ``(len(indices), D)`` array of descriptors."""

SFM_NAME = "retrieval-SfM-120k"
SFM_SPLITS = ("train", "val")
SPLIT_KEYS = ("cids", "cluster", "qidxs", "pidxs")
HOW_TO_GET = (
    "download ims.tar.gz from http://cmp.felk.cvut.cz/cnnimageretrieval/data/train/ims/ and "
    "extract it to <root>/retrieval-SfM-120k/ims/, and retrieval-SfM-120k.pkl from "
    "http://cmp.felk.cvut.cz/cnnimageretrieval/data/train/dbs/ into <root>/retrieval-SfM-120k/ "
    "(cnnimageretrieval-pytorch's download_train does both). Without real data the book writes "
    "a synthetic stand-in with irbook.data.synth.sfm.write_sfm120k"
)
QUERY_CHUNK = 512  # queries scored at once while mining (bounds the score matrix in memory)


def cid2filename(cid: str, ims_root: str | PathLike[str]) -> Path:
    """Path of the image named ``cid``: three folders from its last six characters, then
    ``cid`` itself (cirtorch's ``cid2filename`` layout)."""
    return Path(ims_root) / cid[-2:] / cid[-4:-2] / cid[-6:-4] / cid


@dataclass
class SfmSplit:
    """One split of retrieval-SfM-120k: images, their cluster ids and the matching pairs."""

    name: str
    image_paths: list[Path]
    cids: list[str]
    clusters: np.ndarray  # int64, one per image
    qidxs: np.ndarray  # int64, one per pair
    pidxs: np.ndarray  # int64, one per pair
    boxes: list[Box | None] | None = None

    @property
    def n_images(self) -> int:
        return len(self.image_paths)

    @property
    def n_pairs(self) -> int:
        return int(self.qidxs.size)


@dataclass
class SfmTrainingSet:
    """retrieval-SfM-120k as loaded from ``root``: the ``train`` and ``val`` splits."""

    root: Path
    train: SfmSplit
    val: SfmSplit

    def split(self, name: str) -> SfmSplit:
        if name not in SFM_SPLITS:
            raise ValueError(f"split must be one of {SFM_SPLITS}, got {name!r}")
        return self.train if name == "train" else self.val


# --------------------------------------------------------------------------- loading


def _int_array(values: object, where: Path, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise DatasetCorruptError(where, f"{what} is not a list of integers") from exc
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise DatasetCorruptError(where, f"{what} must be a flat list of integers")
    return arr.astype(np.int64)


def _indices(values: object, where: Path, what: str, n_images: int) -> np.ndarray:
    arr = _int_array(values, where, what)
    if arr.size and (arr.min() < 0 or arr.max() >= n_images):
        raise DatasetCorruptError(
            where, f"{what} has indices outside [0, {n_images}) (min {arr.min()}, max {arr.max()})"
        )
    return arr


def _boxes(values: object, where: Path, what: str, n_images: int) -> list[Box | None]:
    if not isinstance(values, list | tuple) or len(values) != n_images:
        raise DatasetCorruptError(where, f"{what} must hold one entry per image ({n_images})")
    boxes: list[Box | None] = []
    for i, value in enumerate(values):
        if value is None:
            boxes.append(None)
            continue
        try:
            b = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DatasetCorruptError(where, f"{what}[{i}] is not 4 numbers") from exc
        if b.size != 4 or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
            raise DatasetCorruptError(where, f"{what}[{i}] must be [x1, y1, x2, y2], x2>x1, y2>y1")
        boxes.append((float(b[0]), float(b[1]), float(b[2]), float(b[3])))
    return boxes


def _image_paths(cids: object, where: Path, what: str, ims_root: Path) -> list[Path]:
    if not isinstance(cids, list | tuple | np.ndarray) or not all(
        isinstance(c, str) and c and "/" not in c and "\\" not in c and c not in (".", "..")
        for c in cids
    ):
        raise DatasetCorruptError(where, f"{what} must be a list of image names (strings)")
    paths = [cid2filename(c, ims_root) for c in cids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DatasetCorruptError(
            where, f"{len(missing)} images of {what} are missing from {ims_root}: {shown}"
        )
    return paths


def _load_split(db: object, name: str, pkl: Path, ims_root: Path) -> SfmSplit:
    if not isinstance(db, dict):
        raise DatasetCorruptError(pkl, f"['{name}'] is not a dict")
    missing = [k for k in SPLIT_KEYS if k not in db]
    if missing:
        raise DatasetCorruptError(pkl, f"['{name}'] lacks keys {missing}; found {sorted(db)}")
    paths = _image_paths(db["cids"], pkl, f"['{name}']['cids']", ims_root)
    n = len(paths)
    clusters = _int_array(db["cluster"], pkl, f"['{name}']['cluster']")
    if clusters.size != n:
        raise DatasetCorruptError(pkl, f"['{name}']['cluster'] has {clusters.size} ids for {n} "
                                  "images")
    qidxs = _indices(db["qidxs"], pkl, f"['{name}']['qidxs']", n)
    pidxs = _indices(db["pidxs"], pkl, f"['{name}']['pidxs']", n)
    if qidxs.size != pidxs.size:
        raise DatasetCorruptError(pkl, f"['{name}'] has {qidxs.size} qidxs but {pidxs.size} pidxs")
    boxes = db.get("bbxs")
    if boxes is not None:
        boxes = _boxes(boxes, pkl, f"['{name}']['bbxs']", n)
    return SfmSplit(name, paths, [str(c) for c in db["cids"]], clusters, qidxs, pidxs, boxes)


def load_sfm120k(root: str | PathLike[str]) -> SfmTrainingSet:
    """Read ``<root>/retrieval-SfM-120k/`` (layout in the module docstring).

    Missing files raise DatasetNotFoundError with :data:`HOW_TO_GET`; a damaged pickle (missing
    split or key, index out of range, listed image absent) raises DatasetCorruptError naming it.
    """
    folder = require(Path(root) / SFM_NAME, SFM_NAME, HOW_TO_GET)
    pkl = require(folder / f"{SFM_NAME}.pkl", SFM_NAME, HOW_TO_GET)
    ims_root = require(folder / "ims", SFM_NAME, HOW_TO_GET)
    try:
        with open(pkl, "rb") as f:
            db = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError, OSError) as exc:
        raise DatasetCorruptError(pkl, f"cannot be unpickled ({exc!r})") from exc
    if not isinstance(db, dict):
        raise DatasetCorruptError(pkl, f"expected a dict, found {type(db).__name__}")
    missing = [s for s in SFM_SPLITS if s not in db]
    if missing:
        raise DatasetCorruptError(pkl, f"missing splits {missing}; found {sorted(db)}")
    train, val = (_load_split(db[s], s, pkl, ims_root) for s in SFM_SPLITS)
    return SfmTrainingSet(folder, train, val)


def subset_split(split: SfmSplit, max_images: int, seed: int = 0) -> SfmSplit:
    """At most ``max_images`` images of ``split``, whole clusters drawn in a seeded random
    order (a cluster that would overflow is passed over), with the pairs among them re-indexed.
    The split itself when it is small enough. For training that holds every image's features in
    memory (the 91,642 training images of the real release do not fit as conv maps)."""
    max_images = _check_count("max_images", max_images, 1)
    if split.n_images <= max_images:
        return split
    rng = np.random.default_rng(zlib.crc32(f"sfm-subset/{split.name}/{seed}".encode()))
    kept, total = [], 0
    for cluster in rng.permutation(np.unique(split.clusters)):
        size = int((split.clusters == cluster).sum())
        if total + size <= max_images:
            kept.append(cluster)
            total += size
    keep = np.flatnonzero(np.isin(split.clusters, kept))
    if keep.size == 0:
        raise ValueError(f"max_images={max_images} is smaller than every cluster of split "
                         f"{split.name!r}")
    new_index = np.full(split.n_images, -1, dtype=np.int64)
    new_index[keep] = np.arange(keep.size)
    pairs = (new_index[split.qidxs] >= 0) & (new_index[split.pidxs] >= 0)
    return SfmSplit(split.name, [split.image_paths[i] for i in keep],
                    [split.cids[i] for i in keep], split.clusters[keep],
                    new_index[split.qidxs[pairs]], new_index[split.pidxs[pairs]],
                    None if split.boxes is None else [split.boxes[i] for i in keep])


# --------------------------------------------------------------------------- tuple mining


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def _descriptors(describe: Describe, indices: np.ndarray, dim: int | None = None) -> np.ndarray:
    vecs = np.asarray(describe(indices))
    wrong_dim = dim is not None and vecs.ndim == 2 and vecs.shape[1] != dim
    if vecs.ndim != 2 or vecs.shape[0] != indices.size or wrong_dim:
        want = f"({indices.size}, {'D' if dim is None else dim})"
        raise ValueError(f"describe must return an array of shape {want}, got {vecs.shape}")
    if not np.issubdtype(vecs.dtype, np.number) or not np.all(np.isfinite(vecs)):
        raise ValueError("describe returned non-numeric, NaN or infinite descriptors")
    return vecs


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """Generator of one epoch's draws: the same (seed, epoch) always gives the same tuples."""
    _check_count("seed", seed, 0)
    _check_count("epoch", epoch, 0)
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(b"sfm-tuples"), seed, epoch]))


def hardest_negatives(
    query_vecs: np.ndarray, query_clusters: np.ndarray, pool_vecs: np.ndarray,
    pool_indices: np.ndarray, clusters: np.ndarray, n_negatives: int,
) -> np.ndarray:
    """For each query, the ``n_negatives`` pool images of highest inner product whose clusters
    differ from the query's and from each other, hardest first; shape ``(n_queries, k)``.

    Ties keep pool order. Raises ValueError when the pool lacks enough other clusters.
    """
    out = np.empty((len(query_vecs), n_negatives), dtype=np.int64)
    pool_clusters = clusters[pool_indices]
    for start in range(0, len(query_vecs), QUERY_CHUNK):
        scores = query_vecs[start:start + QUERY_CHUNK] @ pool_vecs.T
        for row, score in enumerate(scores):
            q = start + row
            taken = {int(query_clusters[q])}
            found = []
            for pos in np.argsort(-score, kind="stable"):
                cluster = int(pool_clusters[pos])
                if cluster not in taken:
                    taken.add(cluster)
                    found.append(pool_indices[pos])
                    if len(found) == n_negatives:
                        break
            if len(found) < n_negatives:
                raise ValueError(
                    f"the negative pool holds {len(found)} clusters other than query {q}'s, fewer "
                    f"than n_negatives={n_negatives}; raise pool_size or lower n_negatives"
                )
            out[q] = found
    return out


def mine_tuples(
    clusters: np.ndarray, qidxs: np.ndarray, pidxs: np.ndarray, describe: Describe, *,
    n_queries: int, n_negatives: int = 5, pool_size: int, seed: int, epoch: int,
) -> np.ndarray:
    """One epoch of training tuples ``(q, p, n1, ..., nk)`` as rows of an int64 array.

    Draws ``n_queries`` of the pairs ``(qidxs[i], pidxs[i])`` and a pool of ``pool_size`` images
    at random (both capped at what exists, as cirtorch does), describes queries and pool with
    ``describe`` and keeps :func:`hardest_negatives` of the pool for every query. Similarity is
    the inner product, as in cirtorch: return L2-normalised descriptors for cosine similarity.
    """
    n_queries = _check_count("n_queries", n_queries, 1)
    n_negatives = _check_count("n_negatives", n_negatives, 0)
    pool_size = _check_count("pool_size", pool_size, 1)
    clusters, qidxs, pidxs = (np.asarray(a, dtype=np.int64).reshape(-1)
                              for a in (clusters, qidxs, pidxs))
    if qidxs.size == 0 or qidxs.size != pidxs.size:
        raise ValueError(f"qidxs and pidxs must be non-empty and of equal length, got "
                         f"{qidxs.size} and {pidxs.size}")
    if min(qidxs.min(), pidxs.min()) < 0 or max(qidxs.max(), pidxs.max()) >= clusters.size:
        raise ValueError(f"qidxs and pidxs must index the {clusters.size} images of clusters")
    rng = epoch_rng(seed, epoch)
    chosen = rng.permutation(qidxs.size)[:n_queries]
    pairs = np.stack([qidxs[chosen], pidxs[chosen]], axis=1)
    if n_negatives == 0:
        return pairs
    pool = rng.permutation(clusters.size)[:pool_size].astype(np.int64)
    query_vecs = _descriptors(describe, pairs[:, 0])
    pool_vecs = _descriptors(describe, pool, query_vecs.shape[1])
    negatives = hardest_negatives(query_vecs, clusters[pairs[:, 0]], pool_vecs, pool, clusters,
                                  n_negatives)
    return np.concatenate([pairs, negatives], axis=1)


class TupleSampler:
    """Epoch-wise tuples of one :class:`SfmSplit` (cirtorch defaults: 2000 queries, 5 negatives
    from a pool of 20000 images); see :func:`mine_tuples`."""

    def __init__(self, split: SfmSplit, *, n_queries: int = 2000, n_negatives: int = 5,
                 pool_size: int = 20000, seed: int = 0) -> None:
        self.split = split
        self.n_queries = _check_count("n_queries", n_queries, 1)
        self.n_negatives = _check_count("n_negatives", n_negatives, 0)
        self.pool_size = _check_count("pool_size", pool_size, 1)
        self.seed = _check_count("seed", seed, 0)

    def __len__(self) -> int:
        """Tuples per epoch (``n_queries`` capped at the number of pairs)."""
        return min(self.n_queries, self.split.n_pairs)

    def tuples(self, epoch: int, describe: Describe) -> np.ndarray:
        """Index tuples ``(q, p, n1, ..., nk)`` of ``epoch``, mined with ``describe``."""
        s = self.split
        return mine_tuples(s.clusters, s.qidxs, s.pidxs, describe, n_queries=self.n_queries,
                           n_negatives=self.n_negatives, pool_size=self.pool_size,
                           seed=self.seed, epoch=epoch)

    def paths(self, tuples: np.ndarray) -> list[list[Path]]:
        """The image paths of each tuple row."""
        return [[self.split.image_paths[i] for i in row] for row in np.asarray(tuples)]
