"""Tests of irbook.viz: gallery layout and frame colours, bar plot labels, input checks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from irbook.viz import (  # noqa: E402
    LABEL_COLOURS,
    plot_galleries,
    plot_gallery,
    plot_map_bars,
    set_theme,
)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(n)]


def test_gallery_axes_and_frame_colours() -> None:
    set_theme()
    labels = ["positive", "negative", "junk", "positive"]
    query = Image.fromarray(_images(1)[0])
    fig = plot_gallery(query, (1, 2, 8, 10), _images(4), labels, title="q")
    assert len(fig.axes) == 5  # query + 4 results
    query_ax, *result_axes = fig.axes
    assert any(isinstance(p, Rectangle) for p in query_ax.patches)  # the query's box
    for ax, label in zip(result_axes, labels, strict=True):
        assert ax.spines["top"].get_edgecolor() == to_rgba(LABEL_COLOURS[label])
        assert ax.spines["left"].get_linewidth() > 1
    legend_texts = {t.get_text() for t in fig.legends[0].get_texts()}
    assert legend_texts == {"positive", "negative", "junk"}


def test_galleries_wrap_rows_and_accept_grayscale() -> None:
    grey = np.zeros((12, 10), dtype=np.uint8)
    rows = [
        (grey, None, _images(7), ["negative"] * 7),  # wraps onto 3 lines of 3
        (grey, None, _images(2), ["positive", "junk"]),
    ]
    fig = plot_galleries(rows, ncols=3)
    assert len(fig.axes) == 2 + 7 + 2
    grid = fig.axes[1].get_subplotspec().get_gridspec()
    assert grid.get_geometry() == (4, 4)  # 3 + 1 lines, query column + 3 results
    assert fig.axes[7].get_subplotspec().rowspan.start == 2  # 7th result on the third line


def test_gallery_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels must be in .*positive.*negative.*junk"):
        plot_gallery(_images(1)[0], None, _images(2), ["positive", "relevant"])
    with pytest.raises(ValueError, match="one entry per result"):
        plot_gallery(_images(1)[0], None, _images(2), ["positive"])
    with pytest.raises(ValueError, match="uint8"):
        plot_gallery(np.zeros((4, 4, 3), dtype=np.float32), None, _images(1), ["junk"])
    with pytest.raises(ValueError, match="query_box"):
        plot_gallery(_images(1)[0], (5, 5, 2, 8), _images(1), ["junk"])


def test_map_bars_show_percent_labels() -> None:
    df = pd.DataFrame(
        {"dataset": ["ROxf", "ROxf", "RPar", "RPar"], "pool": ["MAC", "GeM"] * 2,
         "mAP": [0.30, 0.412, 0.5, 0.625]}
    )
    fig = plot_map_bars(df, x="dataset", y="mAP", hue="pool", title="pooling")
    ax = fig.axes[0]
    assert sum(len(container) for container in ax.containers) == 4  # 2 datasets x 2 pools
    assert sorted(t.get_text() for t in ax.texts) == ["30.0", "41.2", "50.0", "62.5"]
    assert ax.get_title() == "pooling" and "%" in ax.get_ylabel()
    with pytest.raises(ValueError, match="hue='method' is not a column"):
        plot_map_bars(df, x="dataset", y="mAP", hue="method", title="t")


def test_metric_panels_one_axes_per_panel_and_a_shared_legend():
    import pandas as pd

    from irbook.viz import plot_metric_panels

    df = pd.DataFrame({
        "panel": ["a", "a", "b", "b", "c", "c"],
        "pooling": ["mac", "gem"] * 3,
        "whitening": ["none", "pca"] * 3,
        "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    })
    fig = plot_metric_panels(df, panel="panel", x="pooling", hue="whitening", ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c"]
    assert len(fig.legends) == 1
    heights = sorted(p.get_height() for p in visible[2].patches if p.get_height() > 0)
    assert heights == [5.0, 6.0]
    with pytest.raises(ValueError, match="panel='nope' is not a column"):
        plot_metric_panels(df, panel="nope", x="pooling", hue="whitening")


def test_plot_lines_draws_one_panel_per_value_and_names_a_missing_column():
    from irbook.viz import plot_lines

    df = pd.DataFrame(dict(step=[1, 2, 1, 2, 1, 2], value=[1.0, 2.0, 2.0, 1.0, 3.0, 3.0],
                           method=list("aabbaa"), dataset=["x"] * 4 + ["y"] * 2))
    fig = plot_lines(df, "step", "value", "method", panel="dataset")
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["x", "y"]
    drawn = [[line for line in ax.get_lines() if len(line.get_xdata())] for ax in titled]
    assert [len(lines) for lines in drawn] == [2, 1]
    with pytest.raises(ValueError, match="'missing' is not a column"):
        plot_lines(df, "step", "missing", "method")


def test_label_palette_fixes_the_thesis_method_and_keeps_other_colours_distinct():
    from irbook.viz import FIXED_COLOURS, label_palette

    labels = ["fine-tuning", "ours", "reference", "EWC", "initial model"]
    palette = label_palette(labels)
    assert list(palette) == labels
    assert palette["ours"] == FIXED_COLOURS["ours"]
    assert palette["reference"] == FIXED_COLOURS["reference"]
    assert len(set(palette.values())) == len(labels)
    many = label_palette([f"m{i}" for i in range(12)])
    assert len(set(many.values())) == 12  # more labels than the palette has colours
