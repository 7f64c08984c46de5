"""Sharded FAISS indexes, and IVF-PQ whose inverted lists live in one file on disk.

:func:`build_sharded_index` cuts the database into ``shards`` contiguous parts (sizes differing
by at most one), builds one FAISS index of the same kind per part and joins them in a
``faiss.IndexShards`` with ``successive_ids``: shard ``s`` answers with its local row numbers and
FAISS adds the number of vectors in the shards before it, so the ids are rows of the whole
database. An IVF is trained once, on a sample of the whole database, and every shard gets a copy
of that trained (empty) index: all shards share the same cells, so ``nprobe`` means the same
thing everywhere. Query parameters go to FAISS as ``SearchParameters``, which ``IndexShards``
hands to every shard (checked by the tests: ``nprobe=1`` and ``nprobe=nlist`` differ).

On a machine where FAISS sees GPUs, ``gpus`` (default: all of them) places the shards on the
GPUs, shard ``s`` on GPU ``s mod gpus``, each whole; ``faiss.index_cpu_to_all_gpus`` with
``shard=True`` is not used because it re-splits one index over the GPUs by itself (one part per
GPU), which would ignore ``shards``. HNSW has no GPU version and stays on the CPU.

:func:`build_ondisk_ivfpq` follows FAISS's recipe for indexes larger than RAM: train one IVF-PQ,
fill a copy of it with each part of the database (one ``block_<s>.index`` file each, written by
``faiss.write_index``), then merge all inverted lists into one ``faiss.OnDiskInvertedLists``
file. The folder then holds ``trained.index``, ``populated.index`` (centroids, codebooks and the
list offsets) and ``merged.ivfdata`` (codes and ids, memory-mapped when searched).
:func:`load_ondisk_index` opens it again, from wherever the folder has been moved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .index import (
    Index,
    _check_build_params,
    _check_choice,
    _check_metric,
    _check_positive_int,
    _check_seed,
    _check_train_size,
    _float_database,
    _kind_params,
    _trained_float_index,
)
from .knn import METRICS

__all__ = ["SHARDED_KINDS", "OnDiskIndex", "ShardedIndex", "build_ondisk_ivfpq",
           "build_sharded_index", "load_ondisk_index", "shard_bounds"]

SHARDED_KINDS = ("exact", "ivf_flat", "ivf_pq", "hnsw")
GPU_KINDS = ("exact", "ivf_flat", "ivf_pq")  # FAISS has no GPU HNSW
TRAINED_FILE, POPULATED_FILE, IVFDATA_FILE = "trained.index", "populated.index", "merged.ivfdata"
ADD_ROWS = 1 << 20  # vectors handed to FAISS per add() call while filling an on-disk block


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``[start, stop)`` rows of each of ``shards`` contiguous parts of ``n`` rows."""
    n, shards = _check_positive_int(n, "n"), _check_positive_int(shards, "shards")
    if shards > n:
        raise ValueError(f"shards ({shards}) must be <= the number of vectors ({n})")
    return [(s * n // shards, (s + 1) * n // shards) for s in range(shards)]


def _faiss_gpu_count() -> int:
    import faiss

    count = getattr(faiss, "get_num_gpus", None)
    return int(count()) if count is not None else 0


def _check_gpus(gpus: Any, kind: str) -> int:
    """How many GPUs to spread the shards over: 0 on a CPU-only FAISS or for HNSW when
    ``gpus`` is None; an explicit count must be available and the kind GPU-capable."""
    available = _faiss_gpu_count()
    if gpus is None:
        return available if kind in GPU_KINDS else 0
    if isinstance(gpus, bool) or not isinstance(gpus, int | np.integer) or gpus < 0:
        raise ValueError(f"gpus must be None or a non-negative integer, got {gpus!r}")
    if gpus > available:
        raise ValueError(f"gpus={gpus} but FAISS sees {available} GPU(s); pass gpus=0 or None")
    if gpus and kind not in GPU_KINDS:
        raise ValueError(f"kind {kind!r} cannot be placed on GPUs (allowed there: "
                         f"{GPU_KINDS}); pass gpus=0")
    return int(gpus)


class ShardedIndex(Index):
    """An :class:`Index` whose FAISS engine is an ``IndexShards``; ids are global rows."""

    def __init__(self, kind: str, metric: str, params: dict[str, int], engine: Any,
                 sizes: list[int], dim: int, gpus: int = 0) -> None:
        super().__init__(kind, metric, params, engine, int(sum(sizes)), dim)
        self.shard_sizes, self.gpus = tuple(int(size) for size in sizes), gpus

    @property
    def shards(self) -> int:
        """Number of shards."""
        return len(self.shard_sizes)

    def memory_bytes(self) -> int:
        """Sum of the shards' FAISS serialization lengths (GPU shards copied back first)."""
        import faiss

        total = 0
        for s in range(self.engine.count()):
            part = self.engine.at(s)
            part = faiss.index_gpu_to_cpu(part) if self.gpus else part
            total += len(faiss.serialize_index(part))
        return total

    def _engine_text(self) -> str:
        import faiss

        part = type(faiss.downcast_index(self.engine.at(0))).__name__
        place = f"{self.gpus} GPU(s)" if self.gpus else "CPU"
        sizes = ", ".join(str(size) for size in self.shard_sizes)
        return (f"faiss {faiss.__version__} IndexShards of {self.shards} {part} "
                f"({sizes} vectors) on {place}")


def _fill_parts(vectors: np.ndarray, bounds: list[tuple[int, int]], template: Any) -> list:
    """One copy of the empty (trained) ``template`` per part, filled with that part's rows."""
    import faiss

    parts = []
    for start, stop in bounds:
        part = faiss.clone_index(template)
        part.add(vectors[start:stop])
        parts.append(part)
    return parts


def _on_gpus(parts: list, gpus: int, kind: str) -> list:
    """GPU copies of ``parts``, part ``s`` on GPU ``s mod gpus`` (needs a GPU build of FAISS)."""
    import faiss

    resources = [faiss.StandardGpuResources() for _ in range(gpus)]
    options = faiss.GpuClonerOptions()
    options.useFloat16 = kind == "ivf_pq"  # float16 lookup tables: IVF-PQ with many sub-vectors
    moved = [faiss.index_cpu_to_gpu(resources[s % gpus], s % gpus, part, options)
             for s, part in enumerate(parts)]
    for s, part in enumerate(moved):
        part.referenced_objects = [resources[s % gpus]]  # the resources outlive the index
    return moved


def _join(parts: list, dim: int, threaded: bool) -> Any:
    import faiss

    joined = faiss.IndexShards(dim, threaded, True)  # successive_ids: global row ids
    for part in parts:
        joined.add_shard(part)  # FAISS's Python wrapper keeps a reference to each part
    return joined


def build_sharded_index(database: Any, kind: str, metric: str | None = None, shards: int = 2, *,
                        seed: int = 0, train_size: int | None = None, gpus: int | None = None,
                        threaded: bool = True, **params: Any) -> ShardedIndex:
    """A :class:`ShardedIndex` of ``kind`` (one of :data:`SHARDED_KINDS`) over ``database``.

    ``database``, ``metric``, ``seed``, ``train_size`` and ``params`` as in
    :func:`~irbook.search.index.build_index` (an IVF is trained once, on a sample of the whole
    database). ``shards``: number of contiguous parts, at most the number of vectors.
    ``gpus``: None (all GPUs FAISS sees, none on a CPU build or for HNSW), 0 (CPU) or a count.
    ``threaded``: search the shards in parallel threads.
    """
    _check_choice(kind, SHARDED_KINDS, "kind")
    metric = _check_metric(kind, metric)
    seed = _check_seed(seed)
    resolved = _kind_params(kind, params)
    n_gpus = _check_gpus(gpus, kind)
    vectors = _float_database(database)
    n, dim = vectors.shape
    bounds = shard_bounds(n, shards)
    train_size = _check_train_size(train_size, n)
    template = _trained_float_index(vectors, kind, metric, resolved, seed, train_size)
    parts = _fill_parts(vectors, bounds, template)
    if n_gpus:
        parts = _on_gpus(parts, n_gpus, kind)
    sizes = [stop - start for start, stop in bounds]
    return ShardedIndex(kind, metric, resolved, _join(parts, dim, bool(threaded)), sizes, dim,
                        n_gpus)


# --- IVF-PQ with the inverted lists on disk -------------------------------------------------

class OnDiskIndex(Index):
    """An IVF-PQ :class:`Index` whose codes and ids are memory-mapped from ``directory``."""

    def __init__(self, metric: str, params: dict[str, int], engine: Any, dim: int,
                 directory: Path) -> None:
        super().__init__("ivf_pq", metric, params, engine, int(engine.ntotal), dim)
        self.directory = Path(directory)

    def disk_bytes(self) -> int:
        """Size of ``populated.index`` plus ``merged.ivfdata``."""
        return sum((self.directory / name).stat().st_size
                   for name in (POPULATED_FILE, IVFDATA_FILE))

    def _engine_text(self) -> str:
        return f"{super()._engine_text()} with inverted lists in {self.directory / IVFDATA_FILE}"


def _writable_directory(directory: Any) -> Path:
    """``directory`` as an absolute path, created if missing; its parent must exist."""
    if not isinstance(directory, str | os.PathLike) or not str(directory):
        raise ValueError(f"directory must be a path, got {directory!r}")
    path = Path(directory).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"directory {str(path)!r} exists and is not a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path)!r}: its parent folder does not exist")
    path.mkdir(exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"directory {str(path)!r} is not writable")
    return path


def _write_blocks(trained: Any, vectors: np.ndarray, bounds: list[tuple[int, int]],
                  directory: Path) -> list[Path]:
    """One file per part: a copy of ``trained`` holding that part's rows under global ids."""
    import faiss

    paths = []
    for s, (start, stop) in enumerate(bounds):
        block = faiss.clone_index(trained)
        for first in range(start, stop, ADD_ROWS):
            last = min(stop, first + ADD_ROWS)
            block.add_with_ids(vectors[first:last], np.arange(first, last, dtype=np.int64))
        paths.append(directory / f"block_{s}.index")
        faiss.write_index(block, str(paths[-1]))
        del block
    return paths


def _merge_blocks(trained: Any, blocks: list[Path], ivfdata: Path) -> None:
    """Move the inverted lists of the ``blocks`` files into one ``OnDiskInvertedLists`` file
    and make it the lists of ``trained`` (empty): what ``faiss.contrib.ondisk`` does."""
    import faiss

    opened = [faiss.read_index(str(path), faiss.IO_FLAG_MMAP) for path in blocks]
    sources = faiss.InvertedListsPtrVector()
    for block in opened:
        sources.push_back(faiss.extract_index_ivf(block).invlists)
    ivf = faiss.extract_index_ivf(trained)
    merged = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(ivfdata))
    ntotal = merged.merge_from_multiple(sources.data(), sources.size(), False)
    ivf.replace_invlists(merged, True)  # the index owns (and will free) the merged lists
    merged.this.disown()
    trained.ntotal = ivf.ntotal = ntotal
    del opened  # only now may the blocks' own lists go


def _merge(trained: Any, blocks: list[Path], ivfdata: Path) -> None:
    try:
        from faiss.contrib.ondisk import merge_ondisk
    except ImportError:  # an old FAISS without the contrib helper
        _merge_blocks(trained, blocks, ivfdata)
    else:
        merge_ondisk(trained, [str(path) for path in blocks], str(ivfdata))


def _ivfpq_params(nlist: Any, m: Any, nbits: Any, nprobe: Any) -> dict[str, int]:
    given = {"nlist": nlist, "m": m, "nbits": nbits}
    if nprobe is not None:
        given["nprobe"] = nprobe
    return _kind_params("ivf_pq", given)


def build_ondisk_ivfpq(database: Any, directory: Any, *, nlist: int, m: int, nbits: int = 8,
                       shards: int = 2, seed: int = 0, train_size: int | None = None,
                       metric: str = "ip", nprobe: int | None = None,
                       keep_blocks: bool = False) -> OnDiskIndex:
    """Write an IVF-PQ of ``database`` to ``directory`` with its inverted lists in one file.

    Trains IVF-PQ (``nlist`` cells, ``m`` sub-vectors of ``nbits`` bits, ``seed``ed, on
    ``train_size`` sampled vectors as :func:`~irbook.search.index.build_index`), fills one block
    file per part of ``shards``, merges them into ``merged.ivfdata``, writes ``populated.index``
    and returns the index that searches it (default ``nprobe`` min(16, nlist)). The block files
    are deleted unless ``keep_blocks``. ``directory`` is created; its parent must exist. A
    memory-mapped float32 database (``np.load(..., mmap_mode="r")``) is read part by part.
    """
    _check_choice(metric, METRICS, "metric")
    seed = _check_seed(seed)
    params = _ivfpq_params(nlist, m, nbits, nprobe)
    vectors = _float_database(database)
    n, dim = vectors.shape
    bounds = shard_bounds(n, shards)
    train_size = _check_train_size(train_size, n)
    _check_build_params(params, n, dim, n if train_size is None else train_size)
    path = _writable_directory(directory)  # created only once everything else is valid
    trained = _trained_float_index(vectors, "ivf_pq", metric, params, seed, train_size)
    import faiss

    faiss.write_index(trained, str(path / TRAINED_FILE))
    blocks = _write_blocks(trained, vectors, bounds, path)
    _merge(trained, blocks, path / IVFDATA_FILE)
    faiss.write_index(trained, str(path / POPULATED_FILE))
    if not keep_blocks:
        for block in blocks:
            block.unlink()
    return OnDiskIndex(metric, params, trained, dim, path)


def load_ondisk_index(directory: Any) -> OnDiskIndex:
    """Open the index :func:`build_ondisk_ivfpq` wrote to ``directory`` (lists memory-mapped,
    read-only, looked up next to ``populated.index`` even after the folder was moved)."""
    import faiss

    path = Path(directory).expanduser().resolve()
    for name in (POPULATED_FILE, IVFDATA_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"directory {str(path)!r} holds no {name}; write it with "
                                    f"build_ondisk_ivfpq")
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
    index = faiss.read_index(str(path / POPULATED_FILE), flags)
    ivf = faiss.extract_index_ivf(index)
    pq = faiss.downcast_index(ivf).pq
    metric = "ip" if ivf.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"
    params = {"nlist": int(ivf.nlist), "m": int(pq.M), "nbits": int(pq.nbits),
              "nprobe": int(ivf.nprobe)}
    return OnDiskIndex(metric, params, index, int(index.d), path)
