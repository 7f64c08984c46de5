"""Chapter 2: per-query scores on hand-made benchmarks, the score table, claims, protocol."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irbook.chapters import ch02
from irbook.data.instance import InstanceBenchmark
from irbook.params import ParameterError

NAN = float("nan")


def benchmark(protocol, gnd, n_db, n_queries, query_db_index=None, db_groups=None,
              folder=Path("/nowhere")) -> InstanceBenchmark:
    return InstanceBenchmark(
        "toy", protocol, [folder / f"db{i}.png" for i in range(n_db)],
        [folder / f"q{i}.png" for i in range(n_queries)], [None] * n_queries, gnd,
        query_db_index=query_db_index, db_groups=db_groups)


def revisited():
    """Query 0 ranks the database 0, 1, 2, 3, 4; query 1 ranks it 4, 3, 2, 1, 0."""
    gnd = [{"easy": np.array([0]), "hard": np.array([3]), "junk": np.array([1])},
           {"easy": np.array([], dtype=np.int64), "hard": np.array([2]),
            "junk": np.array([], dtype=np.int64)}]
    db = np.array([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    return benchmark("revisited", gnd, 5, 2), np.array([[1.0, 0.0], [-1.0, 0.0]]), db


def test_revisited_per_query_ap_follows_the_three_setups():
    bench, queries, db = revisited()
    scores = ch02.evaluate_per_query(bench, queries, db)
    assert set(scores) == {"mAP E", "mAP M", "mAP H"}
    # Easy: positive 0 first (hard 3 and junk 1 removed) -> 1. Query 1 has no easy image.
    np.testing.assert_allclose(scores["mAP E"], [100.0, NAN])
    # Medium on query 0: positives at ranks 0 and 2 after junk 1 is removed:
    # (1 + (1/2 + 2/3) / 2) / 2; query 1: hard 2 at rank 2: (0 + 1/3) / 2
    np.testing.assert_allclose(scores["mAP M"], [100 * (1 + 7 / 12) / 2, 100 / 6])
    # Hard on query 0: 3 at rank 1 once easy 0 and junk 1 are removed: (0 + 1/2) / 2
    np.testing.assert_allclose(scores["mAP H"], [25.0, 100 / 6])


def ukbench():
    """Two groups of four; item 7 (group 1) lies near group 0."""
    db = np.array([[1.0, 0, 0], [0.9, 0, 0], [0.8, 0, 0], [0.7, 0, 0],
                   [0, 1.0, 0], [0, 0.9, 0], [0, 0.8, 0], [0.75, 0.05, 0]])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    gnd = [{"ok": np.flatnonzero(groups == g)} for g in groups]
    return benchmark("ukbench", gnd, 8, 8, np.arange(8), groups), db


def test_ukbench_score_counts_the_group_in_the_top_four_query_included():
    bench, db = ukbench()
    scores = ch02.evaluate_per_query(bench, db, db)
    # queries 0-3: top four 0, 1, 2, 7 (query 3 itself is fifth); 4-6: 4, 5, 6, 7;
    # query 7: 0, 1, 2, 7, so only itself
    assert list(scores) == ["N-S"]
    assert scores["N-S"].tolist() == [3, 3, 3, 3, 4, 4, 4, 1]


def test_holidays_style_map_removes_the_query_as_junk():
    db = np.array([[1.0, 0.0], [0.8, 0.2], [0.9, 0.05], [0.0, 1.0]])
    gnd = [{"ok": np.array([1]), "junk": np.array([0])}, {"ok": np.array([2]),
                                                         "junk": np.array([3])}]
    bench = benchmark("holidays", gnd, 4, 2, np.array([0, 3]), np.array([0, 0, 1, 1]))
    scores = ch02.evaluate_per_query(bench, db[[0, 3]], db)
    # query 0 ranks 0, 2, 1, 3: without the junk 0, its positive 1 is second, AP
    # (0 / 1 + 1 / 2) / 2 = 0.25; query 1 ranks 3, 1, 2, 0: the same
    np.testing.assert_allclose(scores["mAP"], [25.0, 25.0])


def test_score_table_means_over_queries_then_over_seeds():
    key = ("roxford5k", "gem", "pca", "mAP M")
    other = ("ukbench", "mac", "none", "N-S")
    scores = {0: {key: np.array([10.0, 30.0, NAN]), other: np.array([4.0, 2.0])},
              1: {key: np.array([50.0]), other: np.array([3.0, 3.0])}}
    table = ch02.score_table(scores)
    assert list(table.columns) == ["benchmark", "pooling", "whitening", "metric", "value"]
    values = table.set_index(["benchmark", "pooling", "whitening", "metric"]).value
    assert values[key] == pytest.approx((20.0 + 50.0) / 2)
    assert values[other] == pytest.approx(3.0)


# --- claims ----------------------------------------------------------------------------------

OFFSETS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])


def scores_of(level, poolings=("mac", "spoc", "gem", "rmac", "crow"),
              whitenings=("none", "pca")):
    """Per-query scores whose mean is ``level(pooling, whitening, metric)`` on roxford5k
    (E/M/H, query 4 without easy images) and holidays, plus a UKBench score."""
    scores = {}
    for p in poolings:
        for w in whitenings:
            for m in ("mAP E", "mAP M", "mAP H"):
                values = level(p, w, m) + OFFSETS
                scores[("roxford5k", p, w, m)] = np.where(
                    (m == "mAP E") & (np.arange(5) == 4), NAN, values)
            scores[("holidays", p, w, "mAP")] = level(p, w, "mAP") + OFFSETS
            scores[("ukbench", p, w, "N-S")] = np.full(5, -100.0)  # never in a claim
    return scores


SETUP = {"mAP E": 20.0, "mAP M": 10.0, "mAP H": 0.0, "mAP": 10.0}
POOLING = {"mac": 2.0, "spoc": 0.0, "gem": 6.0, "rmac": 5.0, "crow": 4.0}


def thesis_like(p, w, m):
    return 40.0 + SETUP[m] + POOLING[p] + (8.0 if w == "pca" else 0.0)


AGGREGATION = {"bow": 0.0, "vlad": 3.0, "fv": 5.0}


def aggregated_of(level):
    """Scores of the local-feature embeddings (whitening "none"), means level(method, m)."""
    return {key: value for method in AGGREGATION for key, value in scores_of(
        lambda p, w, m: level(p, m), poolings=(method,), whitenings=("none",)).items()}


def reranked_of(gain):
    """Re-ranked Hard-mAP scores on roxford5k: diffusion ``gain`` points above plain kNN."""
    return {("roxford5k", f"rerank/{m}", "pca", "mAP H"): 30.0 + g + OFFSETS
            for m, g in (("none", 0.0), ("diffusion", gain))}


def searched_of(map_loss, seconds_saved=0.25):
    """Search evidence: IVF-PQ ``map_loss`` points of AP below exact, ``seconds_saved`` ms
    faster."""
    return {"exact": {"ap": 60.0 + OFFSETS, "ms": np.array([0.30, 0.31, 0.29])},
            ch02.CLAIM_PQ: {"ap": 60.0 - map_loss + OFFSETS,
                            "ms": np.array([0.30, 0.31, 0.29]) - seconds_saved}}


def schemes_of(gain):
    """Scheme scores: the grid and the pyramid ``gain`` points above the single pass."""
    return {("roxford5k", f"scheme/{name}", "none", m): 40.0 + SETUP[m] + g + OFFSETS
            for name, g in (("single", 0.0), ("grid", gain), ("pyramid", gain / 2))
            for m in ("mAP M", "mAP H")}


def gained(method_gains, whitening="none"):
    """Scores on roxford5k (Medium, Hard) of methods ``gain`` points above a level of 40."""
    return {("roxford5k", method, whitening, m): 40.0 + SETUP[m] + g + OFFSETS
            for method, g in method_gains.items() for m in ("mAP M", "mAP H")}


def runs(level, seeds=(0, 1), aggregation=None, diffusion_gain=None, pq_loss=None,
         passes_gain=None, finetune_gain=None, depth_gain=None, hash_gain=None,
         dim_gain=None, netvlad_gain=None, **kwargs):
    made = {}
    for s in seeds:
        run = ch02.OffTheShelfRun({}, scores_of(lambda *a, s=s: level(*a) + s, **kwargs),
                                  aggregated_of(lambda *a, s=s: aggregation(*a) + s)
                                  if aggregation else {},
                                  reranked_of(diffusion_gain) if diffusion_gain else {},
                                  searched_of(pq_loss) if pq_loss else {},
                                  schemes_of(passes_gain) if passes_gain else {})
        if finetune_gain is not None:  # off-the-shelf GeM raw is level("gem", "none", m)
            run.finetuned = {(b, "finetuned/contrastive", w, m): v + finetune_gain
                             for (b, p, w, m), v in run.scores.items()
                             if p == "gem" and w == "none"}
        if depth_gain is not None:
            run.depth = gained({"depth/a/fine-tuned": 0.0, "depth/b/fine-tuned": depth_gain / 2,
                                "depth/c/fine-tuned": depth_gain, "depth/c/off-the-shelf": -9})
        if hash_gain is not None:
            run.hashed = gained({f"hash/{m}/{b}": g * (b // 16) for b in (16, 32)
                                 for m, g in (("lsh", 0.0), ("pca_sign", -50), ("deep",
                                                                                 hash_gain))})
        if dim_gain is not None:
            run.dimension = gained({"dim/32": 0.0, "dim/64": 50.0, "dim/128": dim_gain})
        if netvlad_gain is not None:  # the trained layer netvlad_gain above VLAD, init below
            run.aggregated |= {(b, f"netvlad/{name}", w, m): v + gain
                               for (b, p, w, m), v in run.aggregated.items() if p == "vlad"
                               for name, gain in (("init", -7.0), ("trained", netvlad_gain))}
        made[s] = run
    return made


def thesis_like_aggregation(method, m):
    return 30.0 + SETUP[m] + AGGREGATION[method]


def verdicts(results):
    evidence = ch02._evidence(results)
    return {check.__name__: None if (claim := check(results, evidence)) is None
            else claim.verdict for check in ch02.CLAIMS}


def test_evidence_holds_the_map_scores_without_their_nan_queries():
    evidence = ch02._evidence(runs(thesis_like))
    first = evidence[0]
    assert len(first.names) == 5 * 2 * 4  # ukbench N-S left out
    assert first.values("mAP E roxford5k gem pca").size == 4
    assert first.mean("mAP E roxford5k gem pca") == pytest.approx(40 + 20 + 6 + 8 - 0.5)
    assert first.query_set("mAP H roxford5k mac none") == "roxford5k/mAP H"


def test_claims_are_supported_when_the_thesis_ordering_holds():
    found = verdicts(runs(thesis_like, aggregation=thesis_like_aggregation,
                          diffusion_gain=5.0, pq_loss=4.0, passes_gain=4.0, finetune_gain=3.0,
                          depth_gain=3.0, hash_gain=3.0, dim_gain=60.0, netvlad_gain=2.0))
    assert found == {check.__name__: "supported" for check in ch02.CLAIMS}
    assert len(found) == 12


def test_the_aggregation_claim_compares_each_embedding_with_bow():
    def vlad_below_bow(method, m):
        return thesis_like_aggregation(method, m) - (6.0 if method == "vlad" else 0.0)

    results = runs(thesis_like, aggregation=vlad_below_bow)
    claim = ch02.vlad_fv_beat_bow_claim(results, ch02._evidence(results))
    by_label = {c["label"]: c for c in claim.comparisons}
    assert by_label["VLAD − BoW, mean mAP"]["difference"] == pytest.approx(-3.0)
    assert by_label["Fisher vector − BoW, mean mAP"]["difference"] == pytest.approx(5.0)
    assert claim.verdict == "not supported"
    assert ch02._evidence(results)[0].mean("mAP E roxford5k fv none") == pytest.approx(
        30 + 20 + 5 - 0.5)  # query 4 has no easy positive: dropped


def test_the_netvlad_claim_compares_the_trained_layer_with_vlad_not_its_init():
    for gain, verdict in ((2.0, "supported"), (-2.0, "not supported")):
        results = runs(thesis_like, aggregation=thesis_like_aggregation, netvlad_gain=gain)
        claim = ch02.netvlad_claim(results, ch02._evidence(results))
        assert [c["label"] for c in claim.comparisons] == ["NetVLAD trained − VLAD, mean mAP"]
        assert claim.comparisons[0]["difference"] == pytest.approx(gain)
        assert claim.verdict == verdict
    assert ch02.netvlad_claim(runs(thesis_like, aggregation=thesis_like_aggregation),
                              None) is None
    table = ch02.aggregation_table(runs(thesis_like, aggregation=thesis_like_aggregation,
                                        netvlad_gain=1.0))
    families = table.drop_duplicates("method").set_index("method")["family"]
    assert families[ch02.NETVLAD_LABELS["netvlad/trained"]] == "trained layer"
    assert families["VLAD"] == "local-feature embedding" and families["gem"] == "pooling"


def test_codebook_sizes_give_every_embedding_the_same_length():
    assert ch02.codebook_sizes(1024, 256) == {"bow": 1024, "vlad": 4, "fv": 2}
    assert ch02.codebook_sizes(16384, 2048) == {"bow": 16384, "vlad": 8, "fv": 4}
    with pytest.raises(ParameterError, match="aggregation_dim.*at least 512"):
        ch02.codebook_sizes(500, 256)


def test_claims_are_not_supported_when_the_ordering_is_reversed():
    def reversed_(p, w, m):
        return 40.0 - SETUP[m] - POOLING[p] - (8.0 if w == "pca" else 0.0)

    def reversed_aggregation(method, m):
        return 30.0 + SETUP[m] - AGGREGATION[method]

    found = verdicts(runs(reversed_, aggregation=reversed_aggregation, diffusion_gain=-5.0,
                          pq_loss=-4.0, passes_gain=-4.0, finetune_gain=-3.0, depth_gain=-3.0,
                          hash_gain=-3.0, dim_gain=-3.0, netvlad_gain=-3.0))
    assert set(found.values()) == {"not supported"}


def test_one_broken_pooling_breaks_only_the_pooling_claim():
    def crow_below_spoc(p, w, m):
        return thesis_like(p, w, m) - (10.0 if p == "crow" else 0.0)

    found = verdicts(runs(crow_below_spoc))
    assert found["weighted_pooling_claim"] == "not supported"
    assert found["whitening_claim"] == found["hard_is_harder_claim"] == "supported"
    claim = ch02.weighted_pooling_claim(runs(crow_below_spoc), ch02._evidence(
        runs(crow_below_spoc)))
    by_label = {c["label"]: c for c in claim.comparisons}
    assert by_label["crow − spoc, mean mAP"]["difference"] == pytest.approx(-6.0)
    assert by_label["gem − spoc, mean mAP"]["difference"] == pytest.approx(6.0)


def test_claims_a_run_cannot_test_are_none():
    found = verdicts(runs(thesis_like, whitenings=("none",), poolings=("mac", "gem")))
    assert found == {"whitening_claim": None, "weighted_pooling_claim": None,
                     "hard_is_harder_claim": "supported", "vlad_fv_beat_bow_claim": None,
                     "netvlad_claim": None, "diffusion_claim": None, "pq_tradeoff_claim": None,
                     "multiple_passes_claim": None, "finetuned_claim": None,
                     "depth_claim": None, "hashing_claim": None, "dimension_claim": None}
    results = {0: ch02.OffTheShelfRun({}, {k: v for k, v in scores_of(thesis_like).items()
                                           if k[0] != "roxford5k"})}
    assert verdicts(results)["hard_is_harder_claim"] is None
    assert verdicts(results)["whitening_claim"] == "supported"


def test_claim_ids_are_those_of_the_claim_functions():
    results = runs(thesis_like, aggregation=thesis_like_aggregation, diffusion_gain=5.0,
                   pq_loss=4.0, passes_gain=4.0, finetune_gain=3.0, depth_gain=2.0,
                   hash_gain=1.0, dim_gain=1.0, netvlad_gain=1.0)
    found = {check(results, ch02._evidence(results)).id for check in ch02.CLAIMS}
    assert found == set(ch02.CLAIM_IDS)


# --- labels, benchmarks, protocol ------------------------------------------------------------

def test_result_labels_use_the_medium_setup_and_junk():
    bench, _, _ = revisited()
    assert ch02.result_labels(bench, 0, [3, 1, 2, 0]) == ["positive", "junk", "negative",
                                                           "positive"]
    holidays = benchmark("holidays", [{"ok": np.array([1, 2]), "junk": np.array([0])}], 6, 1)
    assert ch02.result_labels(holidays, 0, [2, 0, 5]) == ["positive", "junk", "negative"]
    uk, _ = ukbench()
    assert ch02.result_labels(uk, 5, [4, 7, 0]) == ["positive", "positive", "negative"]


def test_gallery_rows_drop_the_query_from_its_own_results(tmp_path):
    bench, db = ukbench()
    for i, path in enumerate(bench.db_paths):
        Image.new("RGB", (4, 4), (30 * i, 0, 0)).save(tmp_path / path.name)
    bench.db_paths = bench.query_paths = [tmp_path / p.name for p in bench.db_paths]
    found = ch02.BenchmarkDescriptors(bench, {"mac": db}, {"mac": db})
    rows = ch02.gallery_rows(found, "mac", [3, 7], k=3)
    assert [[im.getpixel((0, 0))[0] // 30 for im in row.result_images] for row in rows] == [
        [0, 1, 2], [0, 1, 2]]
    assert rows[1].labels == ["negative"] * 3
    assert ch02.gallery_rows(found, "mac", [], k=3) == []


def test_benchmarks_needed_add_the_whitening_companions():
    assert ch02.benchmarks_needed("roxford5k", "none") == ["roxford5k"]
    assert ch02.benchmarks_needed("roxford5k", "pca") == ["roxford5k", "rparis6k"]
    assert ch02.benchmarks_needed("holidays", "both") == ["holidays", "rparis6k"]
    assert ch02.benchmarks_needed("all", "pca") == ["roxford5k", "rparis6k", "holidays",
                                                    "ukbench"]


@pytest.mark.parametrize("profile", ["smoke", "demo", "full"])
def test_protocol_table_explains_every_deviation(profile):
    params = ch02.CHAPTER.resolve(profile)
    table = ch02.protocol_table(params)
    assert table["item"].tolist() == ["data", "backbone", "image size", "whitening",
                                      "Oxford/Paris version", "distractors", "metric",
                                      "local-feature embedding", "NetVLAD", "re-ranking",
                                      "extraction schemes", "fine-tuning",
                                      "network depth", "deep hashing", "feature dimension",
                                      "search"]
    deviating = table[table["deviation"] != ""]
    assert (deviating["this run"] != deviating["thesis"]).all()
    assert ("Oxford/Paris version" in set(deviating["item"])) == (
        params["oxford_version"] == "revisited")
    assert ("data" in set(deviating["item"])) == params["synthetic"]
    assert ("image size" in set(deviating["item"])) == (params["image_size"] != 1024)


def test_protocol_values_follow_the_parameters():
    params = {**ch02.CHAPTER.resolve("full", {"pretrained": False}), "whitening": "none"}
    values = ch02.protocol_values(params)
    assert values["whitening"] == "none" and values["backbone"] == "resnet101, random weights"
    table = ch02.protocol_table(params).set_index("item")
    assert table.loc["whitening", "deviation"] == ch02.DEVIATION_REASONS["whitening"]
    smallcnn = ch02.protocol_values({**params, "backbone": "smallcnn", "pretrained": False})
    assert smallcnn["backbone"] == "smallcnn, random weights"
    assert "ImageNet stand-in" in ch02.protocol_values(ch02.CHAPTER.resolve("smoke"))["backbone"]


def test_the_diffusion_claim_compares_diffusion_with_the_plain_ranking():
    results = runs(thesis_like)
    for seed, result in results.items():
        for bench, gain in (("roxford5k", 4.0), ("rparis6k", -3.0)):
            for method, level in (("none", 30.0), ("diffusion", 30.0 + gain)):
                result.reranked[(bench, f"rerank/{method}", "pca", "mAP H")] = (
                    level + seed + OFFSETS)
    claim = ch02.diffusion_claim(results, ch02._evidence(results))
    by_label = {c["label"]: c["difference"] for c in claim.comparisons}
    assert by_label == pytest.approx({"diffusion − plain kNN, mAP H, roxford5k": 4.0,
                                      "diffusion − plain kNN, mAP H, rparis6k": -3.0})
    assert claim.verdict == "not supported"
    assert ch02.diffusion_claim(runs(thesis_like), ch02._evidence(runs(thesis_like))) is None


def test_rerankings_keep_a_full_ranking_and_plain_is_rank_all():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(30, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    query = db[:4] + 0.05
    plain = ch02.rerank_rankings(query, db, "none")
    np.testing.assert_array_equal(plain, np.argsort(-(query @ db.T), axis=1, kind="stable"))
    for method in ch02.RERANKERS:
        ranking = ch02.rerank_rankings(query, db, method, ch02.diffusion_graph(db, k=5))
        assert ranking.shape == (4, 30)
        assert all(sorted(row) == list(range(30)) for row in ranking.tolist())
    with pytest.raises(ValueError, match="method must be one of"):
        ch02.rerank_rankings(query, db, "dfs")


def test_the_pq_claim_needs_both_lower_map_and_lower_time():
    results = runs(thesis_like, pq_loss=10.0)
    claim = ch02.pq_tradeoff_claim(results, ch02._evidence(results))
    by_label = {c["label"]: c["difference"] for c in claim.comparisons}
    assert by_label == pytest.approx({"exact − IVF-PQ, mAP@100": 10.0,
                                      "exact − IVF-PQ, ms per query": 0.25})
    assert claim.verdict == "supported"
    faster_and_better = runs(thesis_like, pq_loss=-10.0)  # not a trade
    assert ch02.pq_tradeoff_claim(faster_and_better, ch02._evidence(
        faster_and_better)).verdict == "not supported"
    assert ch02.pq_tradeoff_claim(runs(thesis_like), ch02._evidence(runs(thesis_like))) is None


def test_the_passes_claim_compares_grid_and_pyramid_with_one_pass():
    results = runs(thesis_like, passes_gain=-6.0)
    claim = ch02.multiple_passes_claim(results, ch02._evidence(results))
    by_label = {c["label"]: c["difference"] for c in claim.comparisons}
    assert by_label == pytest.approx({
        "patches: rigid grid 2×2 − single pass, mean mAP": -6.0,
        "patches: spatial pyramid 1 + 2×2 − single pass, mean mAP": -3.0})
    assert claim.verdict == "not supported"


def test_scheme_descriptors_of_a_tiny_network():
    import torch

    from irbook.models import gem, l2n, make_backbone

    net = make_backbone("smallcnn", pretrained=False, seed=0).eval()
    head = (torch.randn(5, net.out_channels, generator=torch.Generator().manual_seed(0)),
            torch.zeros(5))
    images = [torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(i))
              for i in range(3)]
    found, seconds = ch02.scheme_descriptors(net, head, images, "cpu")
    assert set(found) == set(ch02.SCHEMES) == set(seconds)
    with torch.no_grad():
        single = torch.cat([l2n(gem(net(im.unsqueeze(0)))) for im in images]).numpy()
        scores = torch.stack([net(im.unsqueeze(0)).mean(dim=(2, 3))[0] @ head[0].T
                              for im in images])
    np.testing.assert_allclose(found["single"], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["fc"], (scores / scores.norm(dim=1, keepdim=True))
                               .numpy(), rtol=1e-4, atol=1e-6)
    assert found["fc"].shape == (3, 5) and found["fusion"].shape == (3, net.out_channels + 5)
    for name, rows in found.items():
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5, err_msg=name)


def test_the_original_protocol_and_distractors_replace_the_revisited_benchmarks(tmp_path):
    params = {**ch02.CHAPTER.resolve("smoke"), "oxford_version": "original"}
    assert ch02.evaluated_benchmarks(params) == ["oxford5k", "paris6k", "holidays", "ukbench"]
    assert ch02.benchmarks_needed("holidays", "pca", "original") == ["holidays", "paris6k"]
    assert ch02.companion("oxford5k", "original") == "paris6k"
    found = ch02.open_benchmarks(["oxford5k", "holidays"], synthetic=True, root=tmp_path,
                                 seed=0, scale="smoke", distractors=12)
    plain = ch02.open_benchmarks(["oxford5k"], synthetic=True, root=tmp_path, seed=0,
                                 scale="smoke")["oxford5k"]
    oxford = found["oxford5k"]
    assert oxford.protocol == "oxford" and set(oxford.gnd[0]) == {"ok", "junk"}
    assert oxford.db_paths[:plain.n_db] == plain.db_paths and oxford.n_db == plain.n_db + 12
    assert all("revisitop1m" in str(p) for p in oxford.db_paths[plain.n_db:])
    assert found["holidays"].n_db == ch02.open_benchmarks(
        ["holidays"], synthetic=True, root=tmp_path, seed=0, scale="smoke")["holidays"].n_db
    rng = np.random.default_rng(0)
    q = rng.normal(size=(oxford.n_queries, 8)).astype(np.float32)
    d = rng.normal(size=(oxford.n_db, 8)).astype(np.float32)
    assert set(ch02.evaluate_per_query(oxford, q, d)) == {"mAP"}


# --- fine-tuning, depth, hashing and dimension claims and helpers ----------------------------

def test_the_finetuning_claim_compares_with_off_the_shelf_gem_raw():
    for gain, verdict in ((3.0, "supported"), (-3.0, "not supported")):
        results = runs(thesis_like, finetune_gain=gain)
        claim = ch02.finetuned_claim(results, ch02._evidence(results))
        assert [c["difference"] for c in claim.comparisons] == [pytest.approx(gain)]
        assert claim.verdict == verdict
    assert ch02.finetuned_claim(runs(thesis_like), None) is None


def test_the_depth_claim_compares_the_deepest_with_the_shallowest_fine_tuned_network():
    results = runs(thesis_like, depth_gain=-4.0)
    claim = ch02.depth_claim(results, ch02._evidence(results))
    (comparison,) = claim.comparisons
    assert comparison["label"].startswith("c − a, fine-tuned")
    assert comparison["difference"] == pytest.approx(-4.0) and claim.verdict == "not supported"


def test_the_hashing_claim_compares_deep_codes_with_lsh_at_every_length():
    results = runs(thesis_like, hash_gain=2.0)
    claim = ch02.hashing_claim(results, ch02._evidence(results))
    by_label = {c["label"]: c["difference"] for c in claim.comparisons}
    assert by_label == pytest.approx({"deep − LSH, 16 bits, mean mAP": 2.0,
                                      "deep − LSH, 32 bits, mean mAP": 4.0})
    assert claim.verdict == "supported"


def test_the_dimension_claim_compares_the_longest_with_the_shortest():
    results = runs(thesis_like, dim_gain=-1.0)
    claim = ch02.dimension_claim(results, ch02._evidence(results))
    assert [c["label"] for c in claim.comparisons] == ["128-d − 32-d, mean mAP"]
    assert claim.comparisons[0]["difference"] == pytest.approx(-1.0)
    assert claim.verdict == "not supported"


def test_code_lengths_and_dimensions_follow_their_parameters():
    assert ch02.hash_bit_counts({"hash_bits": 64}) == [16, 32, 64]
    assert ch02.hash_bit_counts({"hash_bits": 0}) == []
    assert ch02.dimensions_of({"dims_max": 256}) == [32, 64, 128, 256]
    assert ch02.dimensions_of({"dims_max": 0}) == []
    params = ch02.CHAPTER.resolve("demo")
    assert ch02.depth_networks(params) == []
    assert ch02.depth_networks(dict(params, depths="all")) == [
        "smallcnn-3", "smallcnn-4", "smallcnn-5"]
    assert ch02.depth_networks(dict(params, depths="all", backbone="resnet50")) == list(
        ch02.DEPTH_TORCHVISION)
    with pytest.raises(ParameterError, match="hash_bits"):
        ch02.CHAPTER.resolve("demo", {"hash_bits": 48})
    with pytest.raises(ParameterError, match="finetune_lr"):
        ch02.CHAPTER.resolve("demo", {"finetune_lr": float("nan")})


def test_the_chapter_offers_every_fine_tuning_loss_of_the_library():
    from irbook.instance import LOSSES

    assert ch02.FINETUNE_LOSS_NAMES == LOSSES
    assert ch02.finetune_losses_of({"finetune_loss": "all"}) == list(LOSSES)
    assert ch02.finetune_losses_of({"finetune_loss": "triplet"}) == ["triplet"]
    assert ch02.finetune_losses_of({"finetune_loss": "none"}) == []


def test_lsh_and_pca_codes_are_signs_of_standardised_projections():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(50, 6)) * np.arange(1, 7) + 3.0
    queries = rng.normal(size=(4, 6))
    z = (queries - train.mean(0)) / (train.std(0) + 1e-8)
    projection = np.random.default_rng(7).standard_normal((6, 5))
    lsh = ch02.binary_codes("lsh", train, 5, 7, np.zeros(50, np.int64))(queries)
    np.testing.assert_array_equal(lsh, (z @ projection >= 0).astype(np.uint8))
    pca = ch02.binary_codes("pca_sign", train, 2, 0, np.zeros(50, np.int64))(queries)
    zt = (train - train.mean(0)) / (train.std(0) + 1e-8)
    vectors = np.linalg.eigh(np.cov(zt.T))[1][:, ::-1][:, :2]
    expected = (z - zt.mean(0)) @ vectors
    same = (pca == (expected >= 0)).all(axis=0) | (pca == (expected < 0)).all(axis=0)
    assert pca.shape == (4, 2) and same.all()  # each component up to its sign


def test_hamming_rankings_are_scored_like_descriptor_rankings():
    bench, db = ukbench()
    rankings = np.argsort(-(db @ db.T), axis=1, kind="stable")
    np.testing.assert_allclose(ch02.scores_of_rankings(bench, rankings)["N-S"],
                               ch02.evaluate_per_query(bench, db, db)["N-S"])
    bench, queries, db = revisited()
    rankings = np.argsort(-(queries @ db.T), axis=1, kind="stable")
    for metric, values in ch02.evaluate_per_query(bench, queries, db).items():
        np.testing.assert_allclose(ch02.scores_of_rankings(bench, rankings)[metric], values)


def test_netvlad_trains_on_as_many_maps_as_the_budget_holds(monkeypatch):
    from types import SimpleNamespace

    from irbook.data.sfm import SfmSplit
    from irbook.models import make_backbone

    clusters = np.repeat(np.arange(6), 4)
    split = SfmSplit("train", [Path(f"{i}.png") for i in range(24)], [str(i) for i in range(24)],
                     clusters, np.arange(24), (np.arange(24) // 4) * 4 + (np.arange(24) + 1) % 4)
    run = SimpleNamespace(params={"image_size": 32, "seed": 0}, state={"head_split": split},
                          device="cpu")
    backbone = make_backbone("smallcnn", seed=0)
    per_image = backbone(torch.zeros(1, 3, 32, 32)).numel() * 4
    assert ch02.map_split(run, backbone) is split
    monkeypatch.setattr(ch02, "MAP_BUDGET_BYTES", 9 * per_image)
    assert ch02.map_split(run, backbone).n_images == 8  # two whole clusters of four


def test_the_netvlad_layer_starts_from_kmeans_on_the_maps():
    maps = torch.cat([torch.randn(6, 8, 3, 3) + 4 * torch.eye(8)[c][None, :, None, None]
                      for c in (0, 3)])  # local features around two directions
    layer = ch02.netvlad_layer(maps, clusters=2, seed=0)
    assert layer.centroids.shape == (2, 8) and 0 < layer.alpha < float("inf")
    nearest = layer.centroids.detach().argmax(dim=1).sort().values
    assert nearest.tolist() == [0, 3]  # one centroid per direction
    out = layer(maps)
    assert out.shape == (12, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(12))
