"""Plots of Chapter 8: the progress of a benchmark over the years with the book's own runs
marked on it (Figs. 8.4-8.5), survey results as bars (Tables 8.2, 8.4), and word-to-region
attention drawn over an image (Fig. 8.3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .gallery import as_rgb_array
from .plots import _check_columns
from .theme import BOOK_WIDTH_IN, FIXED_COLOURS

__all__ = ["plot_attention", "plot_progress", "plot_survey_bars"]


def plot_progress(df: pd.DataFrame, value: str, panel: str, marks: pd.DataFrame | None = None,
                  ylabel: str | None = None, title: str | None = None) -> Figure:
    """One panel per ``panel`` value: every method's ``value`` at its ``year`` (points, the
    best so far as a step line) and, from ``marks`` (same ``panel`` column, a ``label``), the
    book's own results as stars."""
    _check_columns(df, [("value", value), ("panel", panel), ("x", "year"), ("hue", "method")])
    panels = list(dict.fromkeys(df[panel]))
    fig = Figure(figsize=(BOOK_WIDTH_IN, 2.9 * -(-len(panels) // 2) + 0.5),
                 layout="constrained")
    axes = fig.subplots(-(-len(panels) // 2), min(2, len(panels)), squeeze=False).ravel()
    for ax, name in zip(axes, panels, strict=False):
        part = df[df[panel] == name].sort_values("year")
        sns.scatterplot(data=part, x="year", y=value, ax=ax, color="#0173b2", s=30)
        best = part.groupby("year")[value].max().cummax()
        ax.step(best.index, best.values, where="post", color="#0173b2", alpha=0.5)
        if marks is not None and not marks.empty:
            own = marks[marks[panel] == name]
            ax.scatter([part["year"].max() + 0.6] * len(own), own[value], marker="*", s=160,
                       color=FIXED_COLOURS["ours"], zorder=3)
            for row in own.itertuples():
                ax.annotate(str(row.label), (part["year"].max() + 0.6, getattr(row, value)),
                            xytext=(6, 0), textcoords="offset points", fontsize="x-small",
                            va="center")
        ax.set_title(str(name), fontsize="medium")
        ax.set_ylabel(ylabel or value)
        ax.set_xlabel("year")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_survey_bars(df: pd.DataFrame, value: str, label: str = "method",
                     highlight: Sequence[str] = (), xlabel: str | None = None,
                     title: str | None = None) -> Figure:
    """Horizontal bars of ``value`` per ``label`` (rows without a value left out), sorted; the
    labels in ``highlight`` (the book's runs) in the colour of the book's method."""
    _check_columns(df, [("value", value), ("label", label)])
    part = df.dropna(subset=[value]).sort_values(value)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 0.22 * len(part) + 1.0), layout="constrained")
    ax = fig.subplots()
    colours = [FIXED_COLOURS["ours"] if name in highlight else "#0173b2" for name in part[label]]
    ax.barh(part[label].astype(str), part[value], color=colours)
    ax.set_xlabel(xlabel or value)
    ax.tick_params(axis="y", labelsize="x-small")
    if title:
        ax.set_title(title)
    return fig


def plot_attention(images: Sequence[np.ndarray], words: Sequence[Sequence[str]],
                   weights: Sequence[np.ndarray], max_words: int = 4,
                   title: str | None = None) -> Figure:
    """Per image (one row): the image, then for its first ``max_words`` words the attention
    weights over the regions (a grid × grid map, brighter = more weight) drawn over it."""
    if not len(images) or len(images) != len(words) or len(images) != len(weights):
        raise ValueError("need one word list and one weight matrix per image (at least one)")
    ncols = 1 + max_words
    fig = Figure(figsize=(BOOK_WIDTH_IN, 1.7 * len(images) + 0.4), layout="constrained")
    axes = fig.subplots(len(images), ncols, squeeze=False)
    for row, (image, sentence, weight) in enumerate(zip(images, words, weights, strict=True)):
        image = as_rgb_array(image)
        side = int(round(np.sqrt(weight.shape[1])))
        axes[row, 0].imshow(image)
        axes[row, 0].set_xlabel(" ".join(sentence), fontsize="xx-small", wrap=True)
        for col in range(1, ncols):
            ax = axes[row, col]
            if col - 1 < len(sentence):
                ax.imshow(image, alpha=0.45)
                ax.imshow(weight[col - 1].reshape(side, side), cmap="magma", alpha=0.55,
                          extent=(0, image.shape[1], image.shape[0], 0), vmin=0, vmax=1)
                ax.set_title(sentence[col - 1], fontsize="small")
            else:
                ax.set_visible(False)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig
