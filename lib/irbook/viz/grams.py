"""Gram matrices side by side (Figs. 6.6b and 6.11 of the thesis)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .theme import BOOK_WIDTH_IN


def plot_grams(grams: Mapping[str, np.ndarray], per_class: int | None = None,
               title: str | None = None) -> Figure:
    """The Gram matrices side by side on one colour scale, from the smallest to the largest
    entry of all of them (Fig. 6.6b); thin lines separate the classes when ``per_class`` is
    given."""
    if not grams:
        raise ValueError("grams must hold at least one matrix")
    low = min(float(np.min(g)) for g in grams.values())
    high = max(float(np.max(g)) for g in grams.values())
    fig = Figure(figsize=(BOOK_WIDTH_IN, BOOK_WIDTH_IN / len(grams) + 0.8),
                 layout="constrained")
    axes = fig.subplots(1, len(grams), squeeze=False)[0]
    image = None
    for ax, (label, gram) in zip(axes, grams.items(), strict=True):
        image = ax.imshow(gram, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
        ax.set_title(label, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if per_class:
            for edge in np.arange(per_class, len(gram), per_class) - 0.5:
                ax.axhline(edge, color="white", linewidth=0.4)
                ax.axvline(edge, color="white", linewidth=0.4)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig
