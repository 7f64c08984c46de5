"""Checking the thesis' claims against a run's measurements, with uncertainty.

A chapter collects what one run measured in an :class:`Evidence` per seed (per-query values of a
query set, or scalars), states each claim as one or more :class:`Comparison` (a difference of
means that must exceed a threshold) and calls :func:`evaluate_claim`. The uncertainty of a
difference is a hierarchical percentile bootstrap: seeds are resampled with replacement, and
within each drawn seed the queries of every query set (the same indices for every array of that
set, i.e. a paired bootstrap). A comparison whose interval lies above its threshold is
*supported*, one whose interval lies at or below it is *not supported*, and one whose interval
straddles it is *inconclusive*. The resulting :class:`Claim` is what ``results.json`` stores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

VERDICTS = ("supported", "not supported", "inconclusive")
_HOLDS = {"supported": True, "not supported": False, "inconclusive": None}
_ID = re.compile(r"ch\d{2}\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_MINUS = "\u2212"


class Evidence:
    """Measured values of ONE seed.

    Each measurement is either per-query values (a 1-D array whose mean is the measurement,
    belonging to a named query set) or a scalar. Arrays of one query set have the same length
    and are resampled with the same indices (paired bootstrap).
    """

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self._seed = int(seed)
        self._values: dict[str, np.ndarray] = {}
        self._sets: dict[str, str | None] = {}
        self._sizes: dict[str, int] = {}

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the measurements, in the order they were added."""
        return tuple(self._values)

    @property
    def query_sets(self) -> dict[str, int]:
        """Query set → number of queries."""
        return dict(self._sizes)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        return f"Evidence(seed={self._seed}, names={list(self._values)})"

    def add(self, name: str, values: Any, query_set: str | None = None) -> None:
        """Record a measurement: per-query values (``query_set`` required) or a scalar."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a measurement needs a non-empty name, got {name!r}")
        if name in self._values:
            raise ValueError(f"measurement {name!r} was already added to seed {self._seed}")
        try:
            array = np.array(values, dtype=float)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name!r} (seed {self._seed}) is not numeric: {error}") from None
        bad = int(np.size(array) - np.isfinite(array).sum())
        if bad:
            raise ValueError(f"{name!r} (seed {self._seed}) holds {bad} non-finite value(s)")
        if array.ndim == 0:
            if query_set is not None:
                raise ValueError(f"{name!r} is a scalar: it belongs to no query set")
        elif array.ndim == 1:
            self._check_query_set(name, array.size, query_set)
        else:
            raise ValueError(f"{name!r} must be a scalar or 1-D per-query values, "
                             f"got shape {array.shape}")
        array.setflags(write=False)
        self._values[name] = array
        self._sets[name] = query_set

    def _check_query_set(self, name: str, size: int, query_set: str | None) -> None:
        if not isinstance(query_set, str) or not query_set:
            raise ValueError(f"{name!r} holds per-query values: give its query_set")
        if size == 0:
            raise ValueError(f"{name!r} holds no values")
        expected = self._sizes.setdefault(query_set, size)
        if expected != size:
            raise ValueError(f"{name!r} has {size} values but query set {query_set!r} "
                             f"has {expected} queries (seed {self._seed})")

    def values(self, name: str) -> np.ndarray:
        """The stored (read-only) values: 1-D per query, or 0-d for a scalar."""
        return self._values[self._known(name)]

    def query_set(self, name: str) -> str | None:
        """The query set of a per-query measurement; None for a scalar."""
        return self._sets[self._known(name)]

    def mean(self, name: str) -> float:
        """The measurement: the mean over queries, or the scalar itself."""
        return float(self.values(name).mean())

    def _known(self, name: str) -> str:
        if name not in self._values:
            raise KeyError(f"unknown measurement {name!r}; seed {self._seed} holds: "
                           f"{', '.join(self._values) or 'nothing'}")
        return name


@dataclass(frozen=True)
class Comparison:
    """The claim needs ``difference > threshold``.

    ``difference`` is the mean of the ``plus`` measurements minus the mean of the ``minus``
    measurements, or ``statistic(means)`` when given: ``means`` maps every name of ``plus`` and
    ``minus`` to an array of shape ``(B,)`` (bootstrap replicates) or ``()`` (the point value),
    so the statistic must be vectorised numpy (e.g. ``np.maximum``, not ``max``).
    """

    label: str
    plus: tuple[str, ...] = ()
    minus: tuple[str, ...] = ()
    threshold: float = 0.0
    statistic: Callable[[Mapping[str, np.ndarray]], Any] | None = None
    unit: str = "points"

    def __post_init__(self) -> None:
        for side in ("plus", "minus"):
            names = getattr(self, side)
            object.__setattr__(self, side, (names,) if isinstance(names, str) else tuple(names))
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError("a comparison needs a label")
        if self.statistic is None and not self.plus:
            raise ValueError(f"comparison {self.label!r} needs a `plus` measurement")
        if not self.names:
            raise ValueError(f"comparison {self.label!r} names no measurement")
        both = sorted(set(self.plus) & set(self.minus))
        if both:
            raise ValueError(f"comparison {self.label!r} has {both} on both sides")
        if not math.isfinite(float(self.threshold)):
            raise ValueError(f"comparison {self.label!r} needs a finite threshold")
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def names(self) -> tuple[str, ...]:
        """Every measurement the comparison uses, ``plus`` first."""
        return tuple(dict.fromkeys(self.plus + self.minus))

    def difference(self, means: Mapping[str, np.ndarray],
                   shape: tuple[int, ...] = ()) -> np.ndarray:
        """The compared difference for means of the given shape (``()`` or ``(B,)``)."""
        if self.statistic is not None:
            value = np.asarray(self.statistic(dict(means)), dtype=float)
        else:
            value = np.mean([means[n] for n in self.plus], axis=0)
            if self.minus:
                value = value - np.mean([means[n] for n in self.minus], axis=0)
        if value.shape != shape:
            raise ValueError(f"the statistic of {self.label!r} returned shape {value.shape} for "
                             f"means of shape {shape}: it must be vectorised numpy")
        if not np.isfinite(value).all():
            raise ValueError(f"the difference of {self.label!r} is not finite")
        return value


@dataclass(frozen=True)
class ComparisonResult:
    """One comparison evaluated: point difference (mean over seeds), interval and verdict."""

    label: str
    difference: float
    interval: tuple[float, float] | None
    threshold: float
    verdict: str
    per_seed: list[float]
    unit: str = "points"

    def to_dict(self) -> dict[str, Any]:
        return json_safe({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Claim:
    """A statement of the thesis checked by a run: what ``results.json`` stores."""

    id: str
    claim: str
    source: str
    verdict: str
    holds: bool | None
    compared: dict[str, float]
    interval: list[float] | None
    threshold: str
    seeds: list[dict]
    detail: str
    comparisons: list[dict]

    def __post_init__(self) -> None:
        check_claim_id(self.id)
        for name in ("claim", "source"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"claim {self.id!r} needs a non-empty {name}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.holds is not _HOLDS[self.verdict]:
            raise ValueError(f"holds={self.holds!r} contradicts the verdict {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """The claim as plain JSON-safe data (non-finite numbers become None)."""
        return json_safe({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`to_dict` output (e.g. read back from results.json)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def deciding_comparison(self) -> dict[str, Any]:
        """The comparison closest to failing: smallest ``low − threshold``."""
        return self.comparisons[deciding_index(self.comparisons)]


def check_claim_id(claim_id: str) -> str:
    """Refuse an id that is not ``chNN.`` followed by snake_case (e.g. ``ch05.ours_keeps_old``)."""
    if not isinstance(claim_id, str) or not _ID.fullmatch(claim_id):
        raise ValueError(f"claim id {claim_id!r} must look like 'ch05.ours_keeps_old' "
                         "('chNN.' then snake_case)")
    return claim_id


def deciding_index(results: Sequence[Mapping[str, Any] | ComparisonResult]) -> int:
    """Index of the comparison that decides the claim's verdict: among the comparisons that are
    not supported (if any) the one furthest below its threshold (smallest interval high, else
    difference, minus threshold); otherwise the one closest to failing (smallest interval low,
    else difference, minus threshold)."""
    def get(result: Any, key: str) -> Any:
        return result[key] if isinstance(result, Mapping) else getattr(result, key)

    def margin(result: Any, end: int) -> float:
        interval = get(result, "interval")
        edge = interval[end] if interval is not None else get(result, "difference")
        return float(edge) - float(get(result, "threshold"))

    failing = [i for i, r in enumerate(results) if get(r, "verdict") == "not supported"]
    if failing:
        return min(failing, key=lambda i: margin(results[i], 1))
    return min(range(len(results)), key=lambda i: margin(results[i], 0))


def comparison_verdict(difference: float, interval: Sequence[float] | None,
                       threshold: float) -> str:
    """Supported when the interval lies above the threshold, not supported when at or below it,
    inconclusive otherwise; without an interval, by the point difference."""
    if interval is None:
        return "supported" if difference > threshold else "not supported"
    if interval[0] > threshold:
        return "supported"
    if interval[1] <= threshold:
        return "not supported"
    return "inconclusive"


def claim_verdict(verdicts: Sequence[str]) -> str:
    """Any comparison not supported → not supported; all supported → supported; else
    inconclusive."""
    if "not supported" in verdicts:
        return "not supported"
    return "supported" if all(v == "supported" for v in verdicts) else "inconclusive"


def bootstrap_differences(comparison: Comparison, evidence: Sequence[Evidence], resamples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``(resamples,)`` replicate differences of a hierarchical bootstrap.

    Each replicate draws ``n`` seeds with replacement (with one seed: that seed), resamples the
    queries of every query set within each drawn seed (paired within a set), computes the
    difference per drawn seed and averages over the drawn seeds.
    """
    evidence = _as_list(evidence)
    n = len(evidence)
    total = np.zeros(resamples)
    for _ in range(n):
        drawn = np.zeros(resamples, dtype=int) if n == 1 else rng.integers(0, n, resamples)
        for j in np.unique(drawn):
            rows = np.flatnonzero(drawn == j)
            total[rows] += _within_seed(comparison, evidence[j], rows.size, rng)
    return total / n


def _within_seed(comparison: Comparison, evidence: Evidence, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``size`` replicate differences of one seed, resampling each query set once."""
    by_set: dict[str | None, list[str]] = {}
    for name in comparison.names:
        by_set.setdefault(evidence.query_set(name), []).append(name)
    means: dict[str, np.ndarray] = {}
    for query_set, names in by_set.items():
        if query_set is None:
            means.update({n: np.full(size, evidence.mean(n)) for n in names})
            continue
        counts = _resample_counts(evidence.query_sets[query_set], size, rng)
        stacked = np.stack([evidence.values(n) for n in names], axis=1)
        replicated = counts @ stacked / stacked.shape[0]
        means.update({n: replicated[:, i] for i, n in enumerate(names)})
    return comparison.difference(means, (size,))


def _resample_counts(n_queries: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n_queries)``: how often each query is drawn in each resample."""
    indices = rng.integers(0, n_queries, size=(size, n_queries))
    indices += np.arange(size)[:, None] * n_queries
    counts = np.bincount(indices.ravel(), minlength=size * n_queries)
    return counts.reshape(size, n_queries).astype(float)


def evaluate_claim(id: str, claim: str, source: str, comparisons: Sequence[Comparison],
                   evidence: Sequence[Evidence] | Evidence, *, resamples: int = 1000,
                   level: float = 0.95, random_state: int = 0) -> Claim:
    """Evaluate every comparison on the evidence of one or several seeds and combine the
    verdicts; deterministic for a given ``random_state``."""
    check_claim_id(id)
    comparisons = tuple(comparisons)
    evidence = _as_list(evidence)
    _check_inputs(comparisons, evidence)
    if int(resamples) < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples ≥ 1 and 0 < level < 1, got {resamples}, {level}")
    streams = np.random.SeedSequence(random_state).spawn(len(comparisons))
    results = [_compare(c, evidence, int(resamples), level, np.random.default_rng(s))
               for c, s in zip(comparisons, streams, strict=True)]
    return _assemble(id, claim, source, comparisons, results, evidence)


def _compare(comparison: Comparison, evidence: list[Evidence], resamples: int, level: float,
             rng: np.random.Generator) -> ComparisonResult:
    per_seed = [float(comparison.difference({n: np.asarray(ev.mean(n)) for n in comparison.names}))
                for ev in evidence]
    difference = float(np.mean(per_seed))
    scalars = all(evidence[0].query_set(n) is None for n in comparison.names)
    interval = None
    if len(evidence) > 1 or not scalars:
        replicates = bootstrap_differences(comparison, evidence, resamples, rng)
        tail = 50 * (1 - level)
        low, high = np.percentile(replicates, [tail, 100 - tail])
        interval = (float(low), float(high))
    verdict = comparison_verdict(difference, interval, comparison.threshold)
    return ComparisonResult(comparison.label, difference, interval, comparison.threshold,
                            verdict, per_seed, comparison.unit)


def _assemble(id: str, claim: str, source: str, comparisons: tuple[Comparison, ...],
              results: list[ComparisonResult], evidence: list[Evidence]) -> Claim:
    names = list(dict.fromkeys(n for c in comparisons for n in c.names))
    compared = {n: float(np.mean([ev.mean(n) for ev in evidence])) for n in names}
    compared.update({r.label: r.difference for r in results})
    seeds = [{"seed": ev.seed,
              "compared": {**{n: ev.mean(n) for n in names},
                           **{r.label: r.per_seed[i] for r in results}}}
             for i, ev in enumerate(evidence)]
    verdict = claim_verdict([r.verdict for r in results])
    deciding = results[deciding_index(results)]
    return Claim(
        id=id, claim=claim, source=source, verdict=verdict, holds=_HOLDS[verdict],
        compared=compared,
        interval=list(deciding.interval) if deciding.interval is not None else None,
        threshold=_threshold_text(results), seeds=seeds,
        detail=" ".join(_sentence(r) for r in results),
        comparisons=[r.to_dict() for r in results],
    )


def _as_list(evidence: Sequence[Evidence] | Evidence) -> list[Evidence]:
    evidence = [evidence] if isinstance(evidence, Evidence) else list(evidence)
    if not evidence:
        raise ValueError("no evidence: give the Evidence of at least one seed")
    if not all(isinstance(ev, Evidence) for ev in evidence):
        raise TypeError("evidence must be Evidence objects, one per seed")
    return evidence


def _check_inputs(comparisons: tuple[Comparison, ...], evidence: list[Evidence]) -> None:
    if not comparisons:
        raise ValueError("a claim needs at least one comparison")
    first = evidence[0]
    seeds = [ev.seed for ev in evidence]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the evidence repeats a seed: {seeds}")
    for ev in evidence[1:]:
        if set(ev.names) != set(first.names):
            raise ValueError(f"seeds must hold the same names: seed {ev.seed} differs from seed "
                             f"{first.seed} in {sorted(set(ev.names) ^ set(first.names))}")
        moved = [n for n in first.names if ev.query_set(n) != first.query_set(n)]
        if moved:
            raise ValueError(f"{moved} change query set between seeds {first.seed} and {ev.seed}")
    labels = [c.label for c in comparisons]
    if len(set(labels)) != len(labels):
        raise ValueError(f"comparison labels must be unique: {labels}")
    for comparison in comparisons:
        unknown = [n for n in comparison.names if n not in first]
        if unknown:
            raise ValueError(f"comparison {comparison.label!r} names unknown measurement(s) "
                             f"{unknown}; known: {', '.join(first.names) or 'nothing'}")
    clashes = set(labels) & set(first.names)
    if clashes:
        raise ValueError(f"labels {sorted(clashes)} are also measurement names")


def signed(value: float, decimals: int) -> str:
    """``+3.2`` / ``−1.1`` (typographic minus)."""
    return f"{value:+.{decimals}f}".replace("-", _MINUS)


def _decimals(*values: float) -> int:
    largest = max(abs(v) for v in values)
    return 1 if largest == 0 else min(4, max(1, 1 - math.floor(math.log10(largest))))


def format_difference(result: Mapping[str, Any] | ComparisonResult) -> str:
    """``+3.2 [−1.1, +7.5]`` (or ``+3.2`` without an interval)."""
    get = result.get if isinstance(result, Mapping) else lambda k: getattr(result, k)
    difference, interval = get("difference"), get("interval")
    if interval is None:
        return signed(difference, _decimals(difference))
    places = _decimals(difference, *interval)
    low, high = (signed(v, places) for v in interval)
    return f"{signed(difference, places)} [{low}, {high}]"


def _number(value: float) -> str:
    return f"{value:g}".replace("-", _MINUS)


def _threshold_text(results: list[ComparisonResult]) -> str:
    if len({(r.threshold, r.unit) for r in results}) == 1:
        return f"difference > {_number(results[0].threshold)} {results[0].unit}".rstrip()
    return "; ".join(f"{r.label}: difference > {_number(r.threshold)} {r.unit}".rstrip()
                     for r in results)


def _sentence(result: ComparisonResult) -> str:
    spread = ""
    if len(result.per_seed) > 1:
        places = _decimals(*result.per_seed)
        spread = (f"; {len(result.per_seed)} seeds from {signed(min(result.per_seed), places)} "
                  f"to {signed(max(result.per_seed), places)}")
    values = format_difference(result) + ("" if result.interval else " (no interval)")
    return (f"{result.label}: {values}, needs > {_number(result.threshold)} "
            f"({result.verdict}{spread}).")


def json_safe(value: Any) -> Any:
    """Plain JSON data: numpy/torch values unwrapped, tuples as lists, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy, torch
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
