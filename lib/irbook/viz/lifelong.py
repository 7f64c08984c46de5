"""Plots of chapter 7: rows of images, e.g. the images generated from a frozen teacher's
BatchNorm statistics per dataset (Figs. 7.4-7.6) and one image over the iterations of its
generation (Fig. 7.7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .gallery import as_rgb_array
from .theme import BOOK_WIDTH_IN

__all__ = ["plot_image_rows"]


def plot_image_rows(rows: Mapping[str, Sequence[np.ndarray]],
                    column_titles: Sequence[str] | None = None,
                    captions: Mapping[str, Sequence[str]] | None = None,
                    title: str | None = None) -> Figure:
    """One row of square image cells per entry of ``rows`` (its name written at the left), as
    many columns as the longest row; ``column_titles`` above the first row, ``captions`` (per
    row, one per image) under each image."""
    if not rows or not all(len(images) for images in rows.values()):
        raise ValueError("rows must hold at least one row, each with at least one image")
    ncols = max(len(images) for images in rows.values())
    if column_titles is not None and len(column_titles) != ncols:
        raise ValueError(f"column_titles needs {ncols} titles; got {len(column_titles)}")
    captions = dict(captions or {})
    for name, texts in captions.items():
        if name not in rows or len(texts) != len(rows[name]):
            raise ValueError(f"captions of row {name!r} must match its images")
    cell = BOOK_WIDTH_IN / (ncols + 0.6)
    extra = 0.25 if captions else 0.0
    height = len(rows) * (cell + extra) + (0.3 if column_titles else 0) + (0.4 if title else 0)
    fig = Figure(figsize=(BOOK_WIDTH_IN, height), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.set_visible(False)
                continue
            ax.imshow(as_rgb_array(images[c]))
            if name in captions:
                ax.set_xlabel(captions[name][c], fontsize="x-small")
            if r == 0 and column_titles is not None:
                ax.set_title(column_titles[c], fontsize="small")
        axes[r][0].set_ylabel(name, fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
