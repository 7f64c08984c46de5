"""Chapter 3 module: profiles, protocol table, memo names and claims on planted evidence."""

from types import SimpleNamespace

import numpy as np
import pytest

from irbook.chapters import CHAPTERS, ch03
from irbook.claims import Evidence, evaluate_claim

N_QUERIES = 60


def fake_run(all_experiments=True, datasets=("mirflickr", "nuswide")):
    params = CHAPTERS["ch03"].resolve("demo", {"experiments": "all" if all_experiments
                                               else "main"})
    state = dict(data={d: None for d in datasets}, first=datasets[0], all=all_experiments)
    return SimpleNamespace(params=params, state=state, seeds=[0])


def planted(run, gap=5.0, broken=None, noise=1.0, seed=0):
    """AP per query (points): ours highest, SSAH next, DCMH lowest; baselines increasing; the
    common dimension 512 best; float search slower than binary. ``broken`` = one evidence name
    set far below its rivals."""
    rng = np.random.default_rng(seed)
    evidence = Evidence(0)
    level = {"dcmh": 50.0, "ssah": 50.0 + gap, "ours": 50.0 + 2 * gap, "baseline1": 50.0,
             "baseline2": 50.0 + gap, "baseline3": 50.0 + 2 * gap}
    for d in run.state["data"]:
        for direction in ch03.DIRECTIONS:
            names = {}
            for method, mean in level.items():
                for b in ch03.CODE_LENGTHS:
                    over = ch03._bits(run, b)
                    if method in ("dcmh", "ssah", "ours") or not over:
                        names[ch03.evidence_name(d, method, over, direction)] = mean
            names[ch03.evidence_name(d, "ours", {}, direction)] = level["baseline3"] + gap
            for dim in ch03.DIMENSIONS:
                if dim != 512:
                    names[ch03.evidence_name(d, "ours", {"common_dim": dim}, direction)] = 50.0
            for name, mean in names.items():
                value = mean - 40.0 if name == broken else mean
                evidence.add(name, value + noise * rng.standard_normal(N_QUERIES),
                             f"{d}/{direction}")
    evidence.add("search/float (inner product)", 10 + 0.1 * rng.standard_normal(7), "search")
    evidence.add("search/binary (Hamming)", 2 + 0.1 * rng.standard_normal(7), "search")
    return evidence


def verdicts(run, evidence):
    return {cid: evaluate_claim(cid, text, source, comparisons, evidence).verdict
            for cid, text, source, comparisons in ch03.claim_specs(run)}


def test_every_claim_is_supported_by_thesis_like_numbers():
    run = fake_run()
    assert set(verdicts(run, planted(run)).values()) == {"supported"}
    assert set(verdicts(run, planted(run))) == {"ch03.beats_dcmh", "ch03.beats_ssah",
                                                "ch03.components_add", "ch03.dim_512_best"}


@pytest.mark.parametrize("broken, claim", [
    ("nuswide/ours/n_bits=64/t2i", "ch03.beats_dcmh"),
    ("mirflickr/baseline2/base/i2t", "ch03.components_add"),
    ("mirflickr/ours/common_dim=1024/i2t", None),
])
def test_breaking_one_ordering_breaks_the_claims_that_read_it(broken, claim):
    run = fake_run()
    got = verdicts(run, planted(run, broken=broken))
    if claim is None:  # a weak rival only strengthens the claim that N = 512 is best
        assert set(got.values()) == {"supported"}
        return
    assert got[claim] == "not supported"
    assert all(v == "supported" for k, v in got.items() if k != claim
               and not (claim == "ch03.beats_dcmh" and k == "ch03.beats_ssah"))


def test_equal_methods_support_no_ordering():
    run = fake_run()
    got = verdicts(run, planted(run, gap=0.0, noise=5.0))
    assert got["ch03.beats_dcmh"] != "supported"
    assert got["ch03.components_add"] != "supported"


def test_main_experiments_skip_the_dimension_and_speed_claims():
    ids = {spec[0] for spec in ch03.claim_specs(fake_run(all_experiments=False))}
    assert ids == {"ch03.beats_dcmh", "ch03.beats_ssah", "ch03.components_add"}


@pytest.mark.parametrize("profile", ["smoke", "demo", "full"])
def test_protocol_table_explains_every_deviation(profile):
    table = ch03.protocol_table(CHAPTERS["ch03"].resolve(profile))
    assert (table["deviation"] != "").any()
    differing = table[table["this run"].str.lower() != table["thesis"].str.lower()]
    assert (differing["deviation"] != "").all()


def test_split_sizes_default_to_the_thesis_protocol():
    full = CHAPTERS["ch03"].resolve("full")
    assert ch03.split_sizes(full, "mirflickr") == (2000, 10000)
    assert ch03.split_sizes(full, "nuswide") == (2100, 10500)
    demo = CHAPTERS["ch03"].resolve("demo")
    assert ch03.split_sizes(demo, "nuswide") == (demo["n_query"], demo["n_train"])


def test_configuration_names_are_stable_and_short():
    assert ch03.tag_of({}) == "base"
    assert ch03.tag_of({"n_bits": 16, "alpha": 10.0}) == "alpha=10,n_bits=16"
    assert ch03.evidence_name("nuswide", "dcmh", {"n_bits": 64}, "t2i") == \
        "nuswide/dcmh/n_bits=64/t2i"
