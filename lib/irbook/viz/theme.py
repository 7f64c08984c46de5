"""One plotting theme for the whole book (seaborn), sized for a page about 8 inches wide."""

from __future__ import annotations

import seaborn as sns

BOOK_WIDTH_IN = 8.0
"""Width of a full-width figure in the rendered book, in inches."""

LABEL_COLOURS = {"positive": "#2ca02c", "negative": "#d62728", "junk": "#7f7f7f"}
"""Border colours of retrieved images: green positive, red negative, grey junk."""

QUERY_COLOUR = "#1f77b4"
"""Frame and bounding-box colour of query images."""


def set_theme() -> None:
    """Apply the book's seaborn theme (white grid, colour-blind palette, readable small fonts)."""
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette="colorblind",
        font_scale=0.9,
        rc={
            "figure.figsize": (BOOK_WIDTH_IN, BOOK_WIDTH_IN * 0.5),
            "figure.dpi": 100,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "legend.frameon": False,
        },
    )
