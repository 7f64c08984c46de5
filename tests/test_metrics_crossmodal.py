"""Image-text metrics of the VSE++ protocol against hand-computed values and loops."""

import numpy as np
import pytest

import irbook.metrics.crossmodal as cm
from irbook.metrics.crossmodal import (
    i2t_ranks,
    label_average_precision,
    median_rank,
    ranking_pr,
    recall_at,
    rsum,
    t2i_ranks,
)

# 2 images x 4 captions; captions 0, 1 describe image 0 and captions 2, 3 image 1
SIM = np.array([[0.1, 0.9, 0.8, 0.2],
                [0.5, 0.4, 0.3, 0.2]])
CAPTION_IMAGE = np.array([0, 0, 1, 1])


def test_ranks_by_hand():
    # image 0 ranks c1, c2, c3, c0 -> its caption c1 is first; image 1 ranks c0, c1, c2, c3
    assert i2t_ranks(SIM, CAPTION_IMAGE).tolist() == [0, 2]
    # c0: image 1 first; c1: image 0 first; c2: image 0 first; c3: tie -> image 0 (index order)
    assert t2i_ranks(SIM, CAPTION_IMAGE).tolist() == [1, 0, 1, 1]


def test_recall_median_rsum_by_hand():
    i2t = recall_at(i2t_ranks(SIM, CAPTION_IMAGE))
    t2i = recall_at(t2i_ranks(SIM, CAPTION_IMAGE))
    assert i2t == {1: 50.0, 5: 100.0, 10: 100.0}
    assert t2i == {1: 25.0, 5: 100.0, 10: 100.0}
    assert rsum(i2t, t2i) == 475.0
    assert recall_at(np.array([0, 1, 2, 3]), ks=(2,)) == {2: 50.0}
    assert median_rank(np.array([0, 2])) == 2.0      # floor(1) + 1
    assert median_rank(np.array([0, 0, 3, 4])) == 2.0  # floor(1.5) + 1
    assert median_rank(np.array([4])) == 5.0


def test_label_average_precision_by_hand():
    labels = np.array([0, 1])
    caption_labels = labels[CAPTION_IMAGE]
    i2t = label_average_precision(SIM, labels, caption_labels)
    # image 0: hits at ranks 1 and 4 -> (1 + 2/4) / 2; image 1: hits at 3, 4 -> (1/3 + 2/4) / 2
    assert i2t == pytest.approx([0.75, 5 / 12])
    t2i = label_average_precision(SIM.T, caption_labels, labels)
    assert t2i == pytest.approx([0.5, 1.0, 0.5, 0.5])


def test_label_average_precision_shared_identity():
    # PEDES-style: both images share identity 7; every caption is relevant to every image
    labels = np.array([7, 7])
    aps = label_average_precision(SIM, labels, labels[CAPTION_IMAGE])
    assert aps == pytest.approx([1.0, 1.0])
    missing = label_average_precision(SIM, np.array([7, 8]), np.array([7, 7, 7, 7]))
    assert missing[0] == 1.0 and np.isnan(missing[1])


def test_ranking_pr_by_hand():
    labels = np.array([0, 1])
    pr = ranking_pr(SIM, labels, labels[CAPTION_IMAGE])
    assert list(pr.columns) == ["recall", "precision"] and len(pr) == 21
    # image 0: [hit, miss, miss, hit] -> 1 up to recall 0.5, then 0.5; image 1: 0.5 everywhere
    low = pr[pr.recall <= 0.5 + 1e-9].precision
    high = pr[pr.recall > 0.5 + 1e-9].precision
    assert np.allclose(low, 0.75) and np.allclose(high, 0.5)


def loop_ranks(sim, caption_image):
    i2t, t2i = [], []
    for i in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda c: (-sim[i, c], c))
        i2t.append(min(order.index(c) for c in np.flatnonzero(caption_image == i)))
    for c in range(sim.shape[1]):
        order = sorted(range(sim.shape[0]), key=lambda i: (-sim[i, c], i))
        t2i.append(order.index(caption_image[c]))
    return i2t, t2i


def test_ranks_match_loops_across_chunks(monkeypatch):
    monkeypatch.setattr(cm, "RANK_CHUNK", 3)
    rng = np.random.default_rng(0)
    caption_image = np.repeat(np.arange(7), 3)
    sim = np.round(rng.normal(size=(7, 21)), 1)  # rounding creates ties
    i2t, t2i = loop_ranks(sim, caption_image)
    assert i2t_ranks(sim, caption_image).tolist() == i2t
    assert t2i_ranks(sim, caption_image).tolist() == t2i


def test_bad_inputs():
    with pytest.raises(ValueError, match="caption_image"):
        i2t_ranks(SIM, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="no caption"):
        i2t_ranks(SIM, np.array([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="ks"):
        recall_at(np.array([0]), ks=(0,))
    with pytest.raises(ValueError, match="sim"):
        label_average_precision(SIM, np.array([0, 1]), np.array([0, 1]))


def test_label_ap_and_pr_match_loops_across_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    sim = np.round(rng.normal(size=(7, 12)), 1)
    query_labels, gallery_labels = rng.integers(0, 3, 7), rng.integers(0, 3, 12)
    expected = []
    for q in range(7):
        order = sorted(range(12), key=lambda g: (-sim[q, g], g))
        hits, precisions = 0, []
        for position, g in enumerate(order):
            if gallery_labels[g] == query_labels[q]:
                hits += 1
                precisions.append(hits / (position + 1))
        expected.append(np.mean(precisions) if precisions else np.nan)
    full_pr = ranking_pr(sim, query_labels, gallery_labels)
    monkeypatch.setattr(cm, "RANK_CHUNK", 3)
    got = label_average_precision(sim, query_labels, gallery_labels)
    assert np.allclose(got, expected, equal_nan=True)
    assert np.allclose(ranking_pr(sim, query_labels, gallery_labels).precision,
                       full_pr.precision)
