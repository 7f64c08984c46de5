"""Query expansion and kNN-graph diffusion against written-out formulas and dense solvers."""

import math

import numpy as np
import pytest
import torch

from irbook.search.knn import knn
from irbook.search.rerank import (
    alpha_query_expansion,
    average_query_expansion,
    build_diffusion_graph,
    diffusion_rank,
    diffusion_scores,
    diffusion_seeds,
    expand_queries,
)


def unit_2d(*degrees: float) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


# The query points along 0 degrees; the database lies at +10, -20, +25 and -28 degrees.
QUERY = unit_2d(0.0)
DATABASE = unit_2d(10.0, -20.0, 25.0, -28.0)


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------- query expansion


def test_aqe_averages_the_query_and_its_top_n_by_hand():
    expected = QUERY[0] + DATABASE[0] + DATABASE[1]  # the two nearest: +10 and -20 degrees
    expected /= np.linalg.norm(expected)
    got = expand_queries(QUERY, DATABASE, n=2)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    # The expanded query points at about -3.3 degrees, so -28 now ranks above +25.
    scores, indices = average_query_expansion(QUERY, DATABASE, n=2, backend="torch")
    assert indices[0].tolist() == [0, 1, 3, 2]
    np.testing.assert_allclose(scores[0], DATABASE[[0, 1, 3, 2]] @ expected, rtol=1e-5)
    assert knn(QUERY, DATABASE, 4, backend="torch")[1][0].tolist() == [0, 1, 2, 3]


def test_alpha_qe_weights_neighbours_by_similarity_cubed():
    weights = [math.cos(math.radians(10)) ** 3, math.cos(math.radians(20)) ** 3]
    expected = QUERY[0] + weights[0] * DATABASE[0] + weights[1] * DATABASE[1]
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(expand_queries(QUERY, DATABASE, n=2, alpha=3.0)[0], expected,
                               rtol=1e-6)
    scores, indices = alpha_query_expansion(QUERY, DATABASE, n=2, alpha=3.0, k=2)
    assert indices.shape == (1, 2)
    np.testing.assert_allclose(scores[0], DATABASE[indices[0]] @ expected, rtol=1e-5)


def test_alpha_changes_the_expanded_query_and_alpha_zero_is_aqe():
    aqe = expand_queries(QUERY, DATABASE, n=3)
    assert np.allclose(expand_queries(QUERY, DATABASE, n=3, alpha=0.0), aqe)
    assert not np.allclose(expand_queries(QUERY, DATABASE, n=3, alpha=3.0), aqe, atol=1e-3)


def test_n_zero_keeps_the_ranking():
    queries, database = random_unit(5, 16, seed=1), random_unit(60, 16, seed=2)
    plain = knn(queries, database, 60, backend="torch")[1]
    for expand in (average_query_expansion, alpha_query_expansion):
        np.testing.assert_array_equal(expand(queries, database, n=0, backend="torch")[1], plain)


def test_initial_ranking_forms_agree_and_torch_inputs_work():
    queries, database = random_unit(4, 8, seed=3), random_unit(30, 8, seed=4)
    found = knn(queries, database, 7)
    from_none = expand_queries(queries, database, None, n=5, alpha=3.0)
    from_tuple = expand_queries(queries, database, found, n=5, alpha=3.0)
    from_ranks = expand_queries(torch.from_numpy(queries), database, found[1], n=5, alpha=3.0)
    np.testing.assert_allclose(from_tuple, from_none, rtol=1e-6)
    np.testing.assert_allclose(from_ranks, from_none, rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": -1}, "n must be"),
    ({"n": 5}, "n must be <="),
    ({"n": 2, "alpha": float("nan")}, "alpha"),
    ({"n": 2, "alpha": -1.0}, "alpha"),
    ({"n": 2, "ranks_or_knn": np.zeros((1, 1), dtype=np.int64)}, "ranks_or_knn"),
    ({"n": 1, "ranks_or_knn": np.array([[9]])}, "ranks_or_knn"),
    ({"n": 1, "ranks_or_knn": np.array([[0.5]])}, "integer"),
])
def test_query_expansion_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expand_queries(QUERY, DATABASE, **kwargs)


def test_query_expansion_rejects_nan_vectors():
    with pytest.raises(ValueError, match="query_vecs must hold finite"):
        average_query_expansion(np.array([[np.nan, 0.0]]), DATABASE)
    with pytest.raises(ValueError, match="db_vecs"):
        alpha_query_expansion(QUERY, DATABASE * np.nan)


# ------------------------------------------------------------------------------- diffusion


def naive_transition(db: np.ndarray, k: int, gamma: float, mutual: bool) -> np.ndarray:
    """The normalised affinity S written out with loops over a dense similarity matrix."""
    sims = db.astype(np.float64) @ db.astype(np.float64).T
    n = len(db)
    lists = [set(np.argsort(-sims[i])[:k].tolist()) for i in range(n)]  # self included
    affinity = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            linked = (j in lists[i] and i in lists[j]) if mutual else (
                j in lists[i] or i in lists[j])
            if linked and i != j:
                affinity[i, j] = max(0.0, sims[i, j]) ** gamma
    degrees = affinity.sum(axis=1)
    scale = np.where(degrees > 0, 1 / np.sqrt(np.where(degrees > 0, degrees, 1)), 0)
    return scale[:, None] * affinity * scale[None, :]


@pytest.mark.parametrize("mutual", [True, False])
def test_graph_matches_a_dense_loop(mutual):
    db = random_unit(25, 5, seed=5)
    graph = build_diffusion_graph(db, k=4, gamma=3.0, mutual=mutual)
    expected = naive_transition(db, 4, 3.0, mutual)
    np.testing.assert_allclose(graph.transition.toarray(), expected, rtol=1e-5, atol=1e-7)
    assert (expected > 0).sum() > 0


def test_mutual_graph_drops_one_sided_links():
    # Three points close together and a fourth, farther, whose nearest other point is 2 while
    # point 2 does not list it back at k = 2 (self plus one): the plain graph keeps 2-3.
    db = unit_2d(0.0, 4.0, 9.0, 30.0)
    mutual = build_diffusion_graph(db, k=2, gamma=1.0, mutual=True).transition.toarray()
    plain = build_diffusion_graph(db, k=2, gamma=1.0, mutual=False).transition.toarray()
    assert mutual[2, 3] == 0 and plain[2, 3] > 0
    assert np.allclose(mutual, mutual.T) and np.allclose(plain, plain.T)


def test_seeds_are_the_query_top_k_similarities_to_the_gamma():
    db = unit_2d(0.0, 20.0, 50.0, 80.0)
    graph = build_diffusion_graph(db, k=2, gamma=3.0)
    seeds = diffusion_seeds(graph, unit_2d(10.0), k_query=2)
    expected = [math.cos(math.radians(10)) ** 3, math.cos(math.radians(10)) ** 3, 0.0, 0.0]
    np.testing.assert_allclose(seeds[0], expected, rtol=1e-6)


def test_conjugate_gradient_matches_a_dense_solve():
    db, queries = random_unit(40, 6, seed=6), random_unit(3, 6, seed=7)
    graph = build_diffusion_graph(db, k=6, gamma=3.0)
    seeds = diffusion_seeds(graph, queries, k_query=5)
    system = np.eye(40) - 0.9 * graph.transition.toarray()
    expected = np.linalg.solve(system, seeds.T).T
    got = diffusion_scores(graph, queries, k_query=5, alpha=0.9, iterations=500, tol=1e-12)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10)


def two_chains(n: int = 20, gap_degrees: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Two parallel arcs of unit vectors in 3-D, ``gap_degrees`` of latitude apart.

    Neighbours along an arc are 3 to about 5.5 degrees apart (unequal steps avoid ties), so
    every point's two nearest others lie on its own arc.
    """
    longitude = np.deg2rad(np.arange(n) * 3.0 + 0.1 * np.arange(n) ** 1.5)

    def arc(latitude_degrees: float) -> np.ndarray:
        lat = math.radians(latitude_degrees)
        return np.stack([math.cos(lat) * np.cos(longitude), math.cos(lat) * np.sin(longitude),
                         np.full(n, math.sin(lat))], axis=1)

    return arc(0.0), arc(gap_degrees)


def test_diffusion_follows_the_query_chain_where_plain_knn_does_not():
    own, other = two_chains()
    chain = np.concatenate([own, other]).astype(np.float32)  # 0..19 own chain, 20..39 other
    shuffle = np.random.default_rng(0).permutation(40)  # database row r holds chain[shuffle[r]]
    db = chain[shuffle]
    position = np.argsort(shuffle)  # the database row of each chain point
    query = own[:1] + np.array([[0.0, 0.0, -0.01]])
    query /= np.linalg.norm(query)
    far_end, other_start = position[19], position[20]
    plain = knn(query, db, 40)[1][0].tolist()
    assert plain.index(other_start) < plain.index(far_end)  # plain: other chain first
    graph = build_diffusion_graph(db, k=3, gamma=3.0)
    scores, ranked = diffusion_rank(graph, query, k_query=2)
    order = ranked[0].tolist()
    assert sorted(order[:20]) == sorted(position[:20].tolist())  # the own chain comes first
    assert order.index(far_end) < order.index(other_start)
    assert np.all(np.diff(scores[0]) <= 0)
    # Unreached items (f = 0) keep their plain order: the tie-break by similarity.
    assert np.all(scores[0, 20:] == 0)
    assert order[20:] == [i for i in plain if shuffle[i] >= 20]


def test_diffusion_rank_top_k_and_torch_queries():
    db, queries = random_unit(30, 4, seed=8), random_unit(2, 4, seed=9)
    graph = build_diffusion_graph(torch.from_numpy(db), k=5)
    full_scores, full = diffusion_rank(graph, queries, k_query=3)
    scores, top = diffusion_rank(graph, torch.from_numpy(queries), k_query=3, top_k=7)
    np.testing.assert_array_equal(top, full[:, :7])
    np.testing.assert_allclose(scores, full_scores[:, :7])


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must be"),
    ({"k": True}, "k must be"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": float("nan")}, "gamma"),
    ({"gamma": -1.0}, "gamma"),
])
def test_graph_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_diffusion_graph(random_unit(10, 3, seed=0), **kwargs)


def test_graph_rejects_nan_vectors():
    db = random_unit(10, 3, seed=0)
    db[3, 1] = np.nan
    with pytest.raises(ValueError, match="db_vecs must hold finite"):
        build_diffusion_graph(db)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"iterations": 0}, "iterations"),
    ({"k_query": 0}, "k_query"),
    ({"tol": float("nan")}, "tol"),
    ({"top_k": 0}, "top_k"),
])
def test_diffusion_rank_rejects_bad_arguments(kwargs, match):
    graph = build_diffusion_graph(random_unit(10, 3, seed=0), k=3)
    with pytest.raises(ValueError, match=match):
        diffusion_rank(graph, random_unit(1, 3, seed=1), **kwargs)
