"""Small helpers to author and clean the chapter notebooks.

    python tools/nbtool.py strip notebooks/*.ipynb   # drop outputs and execution counts
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def strip(path: Path) -> bool:
    """Remove outputs, execution counts and volatile metadata; True when the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after)
    return after != before


if __name__ == "__main__":
    command, *files = sys.argv[1:]
    if command != "strip":
        raise SystemExit("usage: nbtool.py strip NOTEBOOK...")
    for name in files:
        if strip(Path(name)):
            print(f"stripped {name}")
