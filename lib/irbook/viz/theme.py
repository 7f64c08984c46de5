"""One plotting theme for the whole book (seaborn), sized for a page about 8 inches wide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import seaborn as sns

BOOK_WIDTH_IN = 8.0
"""Width of a full-width figure in the rendered book, in inches."""

LABEL_COLOURS = {"positive": "#2ca02c", "negative": "#d62728", "junk": "#7f7f7f"}
"""Border colours of retrieved images: green positive, red negative, grey junk."""

QUERY_COLOUR = "#1f77b4"
"""Frame and bounding-box colour of query images."""


FIXED_COLOURS = {"ours": "#d55e00", "reference": "#000000", "initial model": "#949494"}
"""Method labels drawn in the same colour in every figure of the book: the thesis' method in
vermilion, the joint-training reference in black, the unchanged initial model in grey."""


def label_palette(labels: Sequence[str]) -> dict[str, Any]:
    """Colours for ``labels`` in order: :data:`FIXED_COLOURS` where given, the other labels the
    colour-blind palette's remaining colours in turn (so a method keeps its colour across the
    figures of one chapter as long as the line-ups agree)."""
    labels = list(dict.fromkeys(labels))
    taken = {c.lower() for c in FIXED_COLOURS.values()} | {"#de8f05"}  # orange: too near ours
    free = [c for c in sns.color_palette("colorblind", 10).as_hex() if c.lower() not in taken]
    others = [label for label in labels if label not in FIXED_COLOURS]
    extra = sns.color_palette("husl", max(0, len(others) - len(free))).as_hex()
    colours = dict(zip(others, free + extra, strict=False))
    return {label: FIXED_COLOURS.get(label, colours.get(label)) for label in labels}


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
