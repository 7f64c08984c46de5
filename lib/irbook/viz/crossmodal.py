"""Plots of the cross-modal chapters: image–text samples, text results of an image query and
image results of a text query (Fig. 4.9), t-SNE panels with shape = modality (Fig. 4.5)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .gallery import as_rgb_array
from .plots import _check_columns
from .theme import BOOK_WIDTH_IN, LABEL_COLOURS

__all__ = ["plot_image_results", "plot_samples", "plot_text_results", "plot_tsne_panels"]

MARKERS = {"image": "^", "text": "o"}


def plot_samples(images: Sequence[np.ndarray], texts: Sequence[str], ncols: int = 4,
                 title: str | None = None, width: int = 28) -> Figure:
    """Images in a grid, each with its (wrapped) text underneath."""
    if len(images) != len(texts) or not len(images):
        raise ValueError(f"need as many texts as images (at least one); got {len(images)} "
                         f"images and {len(texts)} texts")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 2.6 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, image, text in zip(axes, images, texts, strict=False):
        ax.imshow(as_rgb_array(image))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(textwrap.fill(text, width), fontsize="x-small")
    for ax in axes[len(images):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_text_results(query_images: Sequence[np.ndarray], results: Sequence[Sequence[str]],
                      correct: Sequence[Sequence[bool]], title: str | None = None,
                      width: int = 70) -> Figure:
    """Image queries (left) and their top-ranked captions (right); a correct caption (of the
    query's image or instance) is written in green, a wrong one in red."""
    if not (len(query_images) == len(results) == len(correct)) or not len(results):
        raise ValueError("query_images, results and correct must have the same length >= 1")
    rows = len(results)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 1.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, width_ratios=[1, 4])
    for (image_ax, text_ax), image, texts, oks in zip(axes, query_images, results, correct,
                                                      strict=True):
        image_ax.imshow(as_rgb_array(image))
        image_ax.set_axis_off()
        text_ax.set_axis_off()
        for i, (text, ok) in enumerate(zip(texts, oks, strict=True)):
            colour = LABEL_COLOURS["positive" if ok else "negative"]
            text_ax.text(0, 1 - (i + 0.5) / max(len(texts), 1),
                         f"{i + 1}. " + textwrap.shorten(text, width), color=colour,
                         fontsize="x-small", va="center", transform=text_ax.transAxes)
    if title:
        fig.suptitle(title)
    return fig


def plot_image_results(queries: Sequence[str], images: Sequence[Sequence[np.ndarray]],
                       correct: Sequence[Sequence[bool]], title: str | None = None) -> Figure:
    """Caption queries (as row titles) and their top-ranked images, framed green when the
    image is the caption's (or shows its instance), red otherwise."""
    if not (len(queries) == len(images) == len(correct)) or not len(queries):
        raise ValueError("queries, images and correct must have the same length >= 1")
    ncols = max(len(row) for row in images)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 1.7 * len(queries) + 0.4), layout="constrained")
    subfigs = fig.subfigures(len(queries), 1, squeeze=False).ravel()
    for sub, query, row, oks in zip(subfigs, queries, images, correct, strict=True):
        sub.suptitle(textwrap.shorten(query, 110), fontsize="small")
        axes = sub.subplots(1, ncols, squeeze=False).ravel()
        for ax, image, ok in zip(axes, row, oks, strict=False):
            ax.imshow(as_rgb_array(image))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(LABEL_COLOURS["positive" if ok else "negative"])
                spine.set_linewidth(3)
        for ax in axes[len(row):]:
            ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_tsne_panels(df: pd.DataFrame, panel: str, x: str = "x", y: str = "y",
                     colour: str = "label", shape: str = "modality",
                     title: str | None = None) -> Figure:
    """One scatter panel per ``panel`` value: colour = ``colour`` (e.g. the pair's label),
    marker = ``shape`` (▲ image, ● text)."""
    _check_columns(df, [("panel", panel), ("x", x), ("y", y), ("colour", colour),
                        ("shape", shape)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    panels = list(dict.fromkeys(df[panel]))
    ncols = min(len(panels), 2)
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 3.0 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    markers = {k: MARKERS.get(str(k), "s") for k in df[shape].unique()}
    for ax, name in zip(axes, panels, strict=False):
        part = df[df[panel] == name]
        sns.scatterplot(data=part, x=x, y=y, hue=colour, style=shape, markers=markers,
                        palette="tab20", s=28, ax=ax, legend=False)
        ax.set_title(str(name), fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(f"{title}  (▲ image, ● text; colour = pair)")
    return fig
