"""irbook.search.tradeoff: AP of top-k lists by hand, build parameters, the sweep's table."""

import numpy as np
import pandas as pd
import pytest

from irbook.data.synth import clustered_queries, clustered_vectors
from irbook.search.tradeoff import (
    SWEEPS,
    build_params,
    map_at_k,
    settings_of,
    sign_codes_of,
    sweep_backends,
)
from irbook.viz import pareto_frontier


def test_map_at_k_by_hand():
    db_labels = np.array([0, 0, 1, 1, 0])  # three items of class 0
    ids = np.array([[0, 2, 1],    # hits at ranks 1 and 3: (1/1 + 2/3) / min(3, 3)
                    [2, 3, 4],    # query of class 1 (two items): hits at 1, 2 -> (1 + 1) / 2
                    [-1, 4, 0]])  # padding counts as a miss: (1/2 + 2/3) / 3
    query_labels = np.array([0, 1, 0])
    ap = map_at_k(ids, db_labels, query_labels)
    np.testing.assert_allclose(ap, 100 * np.array([(1 + 2 / 3) / 3, 1.0, (1 / 2 + 2 / 3) / 3]))
    assert np.isnan(map_at_k(ids[:1], db_labels, np.array([7])))[0]
    with pytest.raises(ValueError, match="ids must be"):
        map_at_k(ids[:2], db_labels, query_labels)


def test_build_params_follow_the_faiss_guidance():
    params = build_params(50_000, 128)
    assert params["ivf_flat"]["nlist"] == 1024 and params["ivf_pq"] == {"nlist": 1024, "m": 16}
    assert build_params(3000, 32)["ivf_flat"]["nlist"] == 76  # at least 39 vectors per cell
    assert build_params(5000, 36)["ivf_pq"]["m"] == 4  # the largest divisor of 36 up to 36 // 8


def test_sign_codes_are_seeded_bits_of_a_rotation():
    vectors = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    codes = sign_codes_of(vectors, seed=3)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {0, 1}
    np.testing.assert_array_equal(codes, sign_codes_of(vectors, seed=3))
    assert not np.array_equal(codes, sign_codes_of(vectors, seed=4))
    np.testing.assert_array_equal(sign_codes_of(-vectors, seed=3), 1 - codes)


def test_the_sweep_measures_every_setting_and_exact_is_exact():
    db, db_labels = clustered_vectors(2000, 16, 20, seed=0, spread=1.0)
    q, q_labels = clustered_queries(40, 16, 20, seed=0, spread=1.0)
    table, per_setting = sweep_backends(db, q, db_labels, q_labels, k=20, repeats=2)
    assert len(table) == sum(len(v) for v in SWEEPS.values()) == len(per_setting)
    exact = table.set_index("setting").loc["exact"]
    assert exact["recall@10"] == 1.0
    full_probe = table.set_index("setting").loc["ivf_flat nprobe=51"]  # 64 clipped to nlist
    assert full_probe["recall@10"] == 1.0 and full_probe["mAP@k"] == pytest.approx(
        exact["mAP@k"])
    assert all(v["ap"].shape == (40,) and v["ms"].shape == (2,) for v in per_setting.values())
    assert (table["ms per query"] > 0).all() and (table["MB"] > 0).all()


def test_the_pareto_frontier_keeps_the_undominated_points():
    points = pd.DataFrame({"ms": [1.0, 2.0, 3.0, 0.5, 2.5], "map": [50, 70, 60, 40, 80]})
    assert pareto_frontier(points, "ms", "map").index.tolist() == [3, 0, 1, 4]


def test_settings_clip_nprobe_to_nlist():
    assert settings_of("ivf_pq", {"nlist": 10, "m": 2}) == [{"nprobe": 1}, {"nprobe": 4},
                                                            {"nprobe": 10}]
    assert settings_of("hnsw", {"M": 32}) == SWEEPS["hnsw"]
