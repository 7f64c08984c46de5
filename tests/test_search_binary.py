"""Binary codes: packing, Hamming distances, FAISS k-NN and radius lookup against brute force."""

import numpy as np
import pytest
import torch

from irbook.search.binary import (
    as_bits,
    hamming_distances,
    hamming_knn,
    hamming_radius_lookup,
    pack_codes,
)


def random_codes(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, 1, -1).astype(np.int8)


def brute_distances(q, db):
    return np.array([[sum(int(a != b) for a, b in zip(qi, di, strict=True)) for di in db]
                     for qi in q])


def test_pack_codes_by_hand_with_padding():
    code = np.array([[1, -1, 1, 1, -1, -1, -1, -1, 1, -1]])
    packed = pack_codes(code)
    assert packed.dtype == np.uint8 and packed.shape == (1, 2)
    assert packed.tolist() == [[0b10110000, 0b10000000]]
    assert np.array_equal(pack_codes((code > 0).astype(np.uint8)), packed)  # {0,1} bits too
    assert np.array_equal(pack_codes(torch.from_numpy(code)), packed)


def test_bad_codes_raise():
    with pytest.raises(ValueError, match="±1 codes"):
        as_bits(np.array([[0.3, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        as_bits(np.ones(4))
    with pytest.raises(ValueError, match="same number of bits"):
        hamming_distances(np.ones((2, 8)), np.ones((3, 9)))


@pytest.mark.parametrize("n_bits", [5, 13, 16])
def test_hamming_distances_match_brute_force(n_bits):
    rng = np.random.default_rng(n_bits)
    q, db = random_codes(rng, 6, n_bits), random_codes(rng, 9, n_bits)
    d = hamming_distances(q, db)
    assert d.dtype == np.int32
    assert np.array_equal(d, brute_distances(q, db))
    # the same from {0, 1} bits
    assert np.array_equal(hamming_distances(q > 0, (db > 0).astype(np.uint8)), d)


@pytest.mark.parametrize("n_bits", [3, 5, 16])
def test_faiss_knn_matches_brute_force_including_ties(n_bits):
    rng = np.random.default_rng(0)
    q, db = random_codes(rng, 7, n_bits), random_codes(rng, 40, n_bits)  # many ties
    distances, indices = hamming_knn(q, db, k=12)
    brute = brute_distances(q, db)
    assert distances.shape == indices.shape == (7, 12)
    for row in range(7):
        order = np.lexsort((np.arange(40), brute[row]))[:12]  # by distance, then index
        assert np.array_equal(indices[row], order)
        assert np.array_equal(distances[row], brute[row][order])
    assert len(np.unique(brute)) < brute.size  # ties were present


def test_knn_k_is_clipped_and_checked():
    rng = np.random.default_rng(1)
    q, db = random_codes(rng, 2, 8), random_codes(rng, 3, 8)
    distances, indices = hamming_knn(q, db, k=10)
    assert indices.shape == (2, 3)
    assert sorted(indices[0].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="k must be"):
        hamming_knn(q, db, k=0)


def test_radius_lookup_matches_brute_force():
    rng = np.random.default_rng(2)
    q, db = random_codes(rng, 5, 6), random_codes(rng, 30, 6)
    brute = brute_distances(q, db)
    for radius in (0, 1, 2, 6):
        hits = hamming_radius_lookup(q, db, radius)
        for row, found in enumerate(hits):
            expected = [j for j in np.lexsort((np.arange(30), brute[row]))
                        if brute[row, j] <= radius]
            assert found.tolist() == expected
    assert all(len(h) == 30 for h in hamming_radius_lookup(q, db, 6))
    with pytest.raises(ValueError, match="radius"):
        hamming_radius_lookup(q, db, -1)
