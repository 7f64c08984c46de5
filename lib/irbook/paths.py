"""Where the book keeps things: repository root, datasets, synthetic data, caches and runs.

Environment variables override the defaults: ``IRBOOK_DATA`` (real datasets),
``IRBOOK_SYNTH`` (synthetic datasets), ``IRBOOK_CACHE`` (trained stand-in weights),
``IRBOOK_RUNS`` (executed notebooks and ``results.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser().resolve() if value else default


def datasets_dir() -> Path:
    """Root of the real datasets (official layouts), ``data/datasets`` by default."""
    return _env_path("IRBOOK_DATA", REPO_ROOT / "data" / "datasets")


def synthetic_dir() -> Path:
    """Root of the synthetic datasets written by :mod:`irbook.data.synth`."""
    return _env_path("IRBOOK_SYNTH", REPO_ROOT / "data" / "synthetic")


def cache_dir() -> Path:
    """Weights the book trains itself (e.g. the stand-in for ImageNet pre-training)."""
    return _env_path("IRBOOK_CACHE", REPO_ROOT / "data" / "cache")


def runs_dir() -> Path:
    """Executed notebooks and their ``results.json``, one folder per profile and chapter."""
    return _env_path("IRBOOK_RUNS", REPO_ROOT / "runs")


def data_root(synthetic: bool, given: str | os.PathLike | None = None) -> Path:
    """The folder a chapter reads its datasets from."""
    if given:
        return Path(given).expanduser().resolve()
    return synthetic_dir() if synthetic else datasets_dir()
