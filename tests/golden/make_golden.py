"""Regenerate the nbval golden notebooks: `make golden` after an intended change of results.

Each chapter is executed with the smoke profile; the executed notebook is stored here without
its images (nbval does not compare images) so that `pytest --nbval` re-executes it and compares
every printed number and table.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat

from irbook.chapters import CHAPTERS
from irbook.runner import run_chapter

HERE = Path(__file__).resolve().parent
IMAGES = ("image/png", "image/jpeg", "image/svg+xml")


def drop_images(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime in IMAGES:
                output.get("data", {}).pop(mime, None)
    nbformat.write(nb, path)


def main() -> int:
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        for key, chapter in CHAPTERS.items():
            out = run_chapter(key, "smoke", out_root=Path(tmp), progress=False)
            target = HERE / chapter.notebook_path.name
            target.write_bytes((out / chapter.notebook_path.name).read_bytes())
            drop_images(target)
            print(f"golden notebook written: {target.relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
