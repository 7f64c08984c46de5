"""Rows of images (Figs. 7.4-7.7) draw what they are given."""

import numpy as np
import pytest

from irbook.viz.lifelong import plot_image_rows


def _images(n, size=6):
    return [np.full((size, size, 3), 30 * i, dtype=np.uint8) for i in range(n)]


def test_one_row_per_entry_with_its_name_and_titles():
    fig = plot_image_rows({"birds": _images(3), "cars": _images(2)},
                          column_titles=["noise", "step 5", "step 10"],
                          captions={"cars": ["k = 0", "k = 1"]}, title="generated")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(visible) == 5
    assert fig.axes[0].get_ylabel() == "birds" and fig.axes[3].get_ylabel() == "cars"
    assert [fig.axes[i].get_title() for i in range(3)] == ["noise", "step 5", "step 10"]
    assert fig.axes[4].get_xlabel() == "k = 1" and fig.axes[0].get_xlabel() == ""
    shown = fig.axes[1].images[0].get_array()
    assert np.array_equal(np.asarray(shown), _images(3)[1])
    assert fig._suptitle.get_text() == "generated"


def test_a_wider_figure_is_not_taller_per_row():
    narrow = plot_image_rows({"a": _images(2)}).get_size_inches()
    wide = plot_image_rows({"a": _images(8)}).get_size_inches()
    assert narrow[0] == wide[0] and wide[1] < narrow[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows={}), "at least one row"),
    (dict(rows={"a": []}), "at least one row"),
    (dict(rows={"a": _images(2)}, column_titles=["x"]), "column_titles needs 2"),
    (dict(rows={"a": _images(2)}, captions={"a": ["x"]}), "captions of row 'a'"),
    (dict(rows={"a": _images(2)}, captions={"b": ["x", "y"]}), "captions of row 'b'"),
])
def test_bad_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_image_rows(**kwargs)
