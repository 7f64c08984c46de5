"""The book's plots: one theme, retrieval galleries, bar charts of results."""

from .crossmodal import (
    plot_image_results,
    plot_samples,
    plot_text_results,
    plot_tsne_panels,
)
from .gallery import GalleryRow, plot_galleries, plot_gallery
from .grams import plot_grams
from .plots import (
    pareto_frontier,
    plot_lines,
    plot_map_bars,
    plot_metric_panels,
    plot_scatter_panels,
    plot_tradeoff,
)
from .theme import (
    BOOK_WIDTH_IN,
    FIXED_COLOURS,
    LABEL_COLOURS,
    QUERY_COLOUR,
    label_palette,
    set_theme,
)
from .trends import plot_attention, plot_progress, plot_survey_bars

__all__ = [
    "plot_attention",
    "plot_progress",
    "plot_survey_bars",
    "BOOK_WIDTH_IN",
    "FIXED_COLOURS",
    "LABEL_COLOURS",
    "QUERY_COLOUR",
    "GalleryRow",
    "label_palette",
    "plot_galleries",
    "plot_gallery",
    "plot_grams",
    "plot_image_results",
    "pareto_frontier",
    "plot_lines",
    "plot_tradeoff",
    "plot_map_bars",
    "plot_metric_panels",
    "plot_samples",
    "plot_scatter_panels",
    "plot_text_results",
    "plot_tsne_panels",
    "set_theme",
]
