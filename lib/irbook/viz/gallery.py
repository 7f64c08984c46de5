"""Retrieval galleries: a query (with its bounding box) followed by its ranked results.

Each result gets a coloured frame for its label: green positive, red negative, grey junk
(:data:`irbook.viz.theme.LABEL_COLOURS`); a legend under the figure names the colours.
Figures are built with :class:`matplotlib.figure.Figure` (not pyplot), so a notebook shows a
returned figure once and nothing accumulates in pyplot's figure list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .theme import BOOK_WIDTH_IN, LABEL_COLOURS, QUERY_COLOUR

LABELS = tuple(LABEL_COLOURS)
FRAME_WIDTH = 3.0


class GalleryRow(NamedTuple):
    """One query and its results; ``query_box`` is (x1, y1, x2, y2) in pixels or None."""

    query_image: Any
    query_box: Sequence[float] | None
    result_images: Sequence[Any]
    labels: Sequence[str]


def as_rgb_array(image: Any) -> np.ndarray:
    """An HxWx3 uint8 array from a PIL image or an HxWx3 / HxW uint8 array."""
    if hasattr(image, "convert"):  # PIL.Image
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    if array.dtype != np.uint8 or not shape_ok:
        raise ValueError(
            f"images must be PIL images or HxWx3 / HxW uint8 arrays, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    return np.stack([array] * 3, axis=-1) if array.ndim == 2 else array


def check_labels(labels: Sequence[str], n_results: int) -> None:
    """Raise ``ValueError`` unless there is one label per result, each in :data:`LABELS`."""
    if len(labels) != n_results:
        raise ValueError(f"labels must have one entry per result ({n_results}), got {len(labels)}")
    bad = sorted({label for label in labels if label not in LABEL_COLOURS})
    if bad:
        raise ValueError(f"labels must be in {LABELS}, got {bad}")


def check_box(box: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """Validate a query box (x1, y1, x2, y2) with x1 < x2 and y1 < y2."""
    if box is None:
        return None
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"query_box must be (x1, y1, x2, y2) with x1 < x2, y1 < y2, got {box}")
    return tuple(float(v) for v in box)


def _framed_image(ax: Any, image: Any, colour: str, caption: str) -> None:
    """Show ``image`` on ``ax`` without ticks, framed in ``colour``, captioned above."""
    ax.imshow(as_rgb_array(image))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(FRAME_WIDTH)
    ax.set_title(caption, fontsize=8, pad=2)


def _draw_query(ax: Any, row: GalleryRow) -> None:
    _framed_image(ax, row.query_image, QUERY_COLOUR, "query")
    box = check_box(row.query_box)
    if box is not None:
        x1, y1, x2, y2 = box
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="#ffbf00", linewidth=2)
        )


def _lines_per_row(row: GalleryRow, ncols: int) -> int:
    return max(1, math.ceil(len(row.result_images) / ncols))


def _legend(fig: Figure, rows: Sequence[GalleryRow]) -> None:
    present = [label for label in LABELS if any(label in row.labels for row in rows)]
    handles = [
        Patch(facecolor="none", edgecolor=LABEL_COLOURS[label], linewidth=FRAME_WIDTH, label=label)
        for label in present
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)


def plot_galleries(
    rows: Sequence[GalleryRow | tuple], ncols: int = 10, title: str | None = None
) -> Figure:
    """One gallery line per query: the query, then up to ``ncols`` results per line, rank order.

    Results beyond ``ncols`` wrap onto extra lines under the same query. Returns the Figure,
    with one Axes per shown image (queries first in each row, then its results).
    """
    if ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols}")
    rows = [GalleryRow(*row) for row in rows]
    if not rows:
        raise ValueError("rows must hold at least one gallery row")
    for row in rows:
        check_labels(row.labels, len(row.result_images))
    width = 1 + min(ncols, max([1, *(len(row.result_images) for row in rows)]))
    n_lines = sum(_lines_per_row(row, ncols) for row in rows)
    cell = BOOK_WIDTH_IN / width
    fig = Figure(figsize=(BOOK_WIDTH_IN, cell * n_lines * 1.15 + 0.6 + 0.3 * bool(title)))
    grid = fig.add_gridspec(n_lines, width, wspace=0.08, hspace=0.25)
    line = 0
    for row in rows:
        _draw_query(fig.add_subplot(grid[line, 0]), row)
        for rank, (image, label) in enumerate(zip(row.result_images, row.labels, strict=True)):
            ax = fig.add_subplot(grid[line + rank // ncols, 1 + rank % ncols])
            _framed_image(ax, image, LABEL_COLOURS[label], str(rank + 1))
        line += _lines_per_row(row, ncols)
    _legend(fig, rows)
    if title:
        fig.suptitle(title)
    return fig


def plot_gallery(
    query_image: Any,
    query_box: Sequence[float] | None,
    result_images: Sequence[Any],
    labels: Sequence[str],
    title: str | None = None,
    ncols: int = 10,
) -> Figure:
    """Gallery of one query: :func:`plot_galleries` with a single row."""
    row = GalleryRow(query_image, query_box, result_images, labels)
    return plot_galleries([row], ncols=ncols, title=title)
