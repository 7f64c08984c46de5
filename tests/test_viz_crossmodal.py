"""Plots of the cross-modal chapters draw what they are given."""

import numpy as np
import pandas as pd
import pytest

from irbook import viz
from irbook.viz.theme import LABEL_COLOURS


def _images(n, size=8):
    return [np.full((size, size, 3), 40 * i, dtype=np.uint8) for i in range(n)]


def test_samples_show_each_image_with_its_text():
    fig = viz.plot_samples(_images(3), ["a red disc", "two squares", "a star"], ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    assert visible[1].get_xlabel() == "two squares"
    with pytest.raises(ValueError, match="texts"):
        viz.plot_samples(_images(2), ["only one"])


def test_text_results_colour_correct_captions_green():
    fig = viz.plot_text_results(_images(1), [["right one", "wrong one"]], [[True, False]])
    texts = fig.axes[1].texts
    assert [t.get_text() for t in texts] == ["1. right one", "2. wrong one"]
    assert texts[0].get_color() == LABEL_COLOURS["positive"]
    assert texts[1].get_color() == LABEL_COLOURS["negative"]


def test_image_results_frame_each_result():
    fig = viz.plot_image_results(["a caption"], [_images(3)], [[False, True, False]])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    assert axes[1].spines["left"].get_edgecolor()[:3] == pytest.approx((0x2c / 255, 0xa0 / 255,
                                                                        0x2c / 255))


def test_tsne_panels_one_per_configuration():
    df = pd.DataFrame(dict(x=[0, 1, 2, 3], y=[1, 0, 1, 0], label=[0, 0, 1, 1],
                           modality=["image", "text"] * 2, config=["a", "a", "b", "b"]))
    fig = viz.plot_tsne_panels(df, panel="config", title="t-SNE")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["a", "b"]
    assert len(fig.axes[0].collections[0].get_offsets()) == 2
