"""Galleries of a labelled test set (query = gallery): neighbours, marks and precision@k."""

import numpy as np
import pytest

from irbook.data.finegrained import LabelledSet
from irbook.incremental import gallery


def brute_force(embeddings: np.ndarray, query: int, k: int) -> list[int]:
    """The ``k`` items of largest inner product with ``query``, the query removed."""
    scores = embeddings @ embeddings[query]
    order = [int(i) for i in np.argsort(-scores, kind="stable") if i != query]
    return order[:k]


def test_query_neighbours_equal_a_brute_force_ranking_without_the_query():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(30, 5))
    queries = [0, 7, 29, 12]
    found = gallery.query_neighbours(emb, queries, k=6)
    assert found.shape == (4, 6)
    for query, row in zip(queries, found, strict=True):
        assert query not in row
        assert row.tolist() == brute_force(emb, query, 6)


def test_the_query_is_excluded_even_when_it_is_not_its_own_nearest_item():
    # item 1 has a larger inner product with item 0 than item 0 with itself
    emb = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert gallery.query_neighbours(emb, [0], k=2).tolist() == [[1, 2]]
    assert gallery.query_neighbours(emb, [1], k=3).tolist() == [[0, 2, 3]]


def test_k_is_clipped_to_the_other_items_and_one_item_is_refused():
    emb = np.eye(3)
    assert gallery.query_neighbours(emb, [0, 1], k=10).shape == (2, 2)
    with pytest.raises(ValueError, match="at least two items"):
        gallery.query_neighbours(np.eye(1), [0])


EMB = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4]])
LABELS = np.array([0, 0, 1, 1, 0])


def test_marks_and_precision_at_k_by_hand():
    # neighbours of 0: 1 (0.9), 4 (0.6), 3 (0.2); of 2: 3 (0.8), 4 (0.4), 1 (0.1)
    neighbours = gallery.query_neighbours(EMB, [0, 2], k=3)
    assert neighbours.tolist() == [[1, 4, 3], [3, 4, 1]]
    assert gallery.marks(LABELS, [0, 2], neighbours).tolist() == [
        ["positive", "positive", "negative"], ["positive", "negative", "negative"]]
    assert gallery.precision_at(EMB, LABELS, [0, 2], k=3) == pytest.approx(100 * 3 / 6)
    assert gallery.precision_at(EMB, LABELS, [0], k=1) == pytest.approx(100.0)
    assert gallery.precision_at(EMB, LABELS, [2], k=3) == pytest.approx(100 / 3)


def test_gallery_rows_hold_the_query_its_results_and_their_labels():
    colours = np.arange(5, dtype=np.uint8)[:, None, None, None] * 50
    images = np.broadcast_to(colours, (5, 4, 6, 3)).copy()
    rows = gallery.gallery_rows(EMB, LabelledSet(images, LABELS), [2, 0], k=3)
    assert [row.labels for row in rows] == [["positive", "negative", "negative"],
                                            ["positive", "positive", "negative"]]
    first = rows[0]
    assert first.query_box is None and first.query_image.size == (6, 4)
    assert np.asarray(first.query_image)[0, 0, 0] == 100  # item 2
    assert [np.asarray(im)[0, 0, 0] for im in first.result_images] == [150, 200, 50]  # 3, 4, 1
