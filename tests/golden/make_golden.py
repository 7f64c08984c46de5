"""Regenerate the nbval golden notebooks: `make golden` after an intended change of results.

Each chapter (or those named on the command line) is executed with the smoke profile; the
executed notebook is stored here without its images, with the fingerprint of the machine it was
made on, and ``tests/test_golden.py`` compares every later smoke run's text with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import nbformat

from irbook.chapters import CHAPTERS
from irbook.runner import run_chapter

HERE = Path(__file__).resolve().parent
IMAGES = ("image/png", "image/jpeg", "image/svg+xml")


NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "pillow", "faiss-cpu", "scikit-learn")


def machine_fingerprint() -> str:
    """What decides the smoke runs' last digits: the CPU's instruction sets, the kernels torch
    dispatches to and the numeric packages' versions (a short hash)."""
    import torch

    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")]
        flags = " ".join(sorted(set(lines[0].split(":", 1)[1].split()))) if lines else ""
    versions = {}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    described = json.dumps([platform.machine(), flags, torch.backends.cpu.get_cpu_capability(),
                            versions], sort_keys=True)
    return hashlib.sha1(described.encode()).hexdigest()[:12]


def drop_images(path: Path) -> None:
    """Drop the images (not compared) and record the machine the notebook was made on."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime in IMAGES:
                output.get("data", {}).pop(mime, None)
    nb.metadata["irbook_golden"] = {"machine": machine_fingerprint()}
    nbformat.write(nb, path)


def main(keys: list[str]) -> int:
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        for key, chapter in CHAPTERS.items():
            if keys and key not in keys:
                continue
            out = run_chapter(key, "smoke", out_root=Path(tmp), progress=False)
            target = HERE / chapter.notebook_path.name
            target.write_bytes((out / chapter.notebook_path.name).read_bytes())
            drop_images(target)
            print(f"golden notebook written: {target.relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
