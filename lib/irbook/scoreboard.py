"""The reproduction scoreboard: every chapter's latest run of each profile, its claims and where
its numbers came from, gathered from ``runs/<profile>/<chapter>/results.json``.

A run is *stale* when the library it ran (the ``inputs.library`` digest the runner stores, see
:mod:`irbook.buildcache`) is not the library of today's tree, or when it predates that record.
The page ``book/scoreboard.md`` holds the prose; the book build puts :func:`scoreboard_markdown`
in place of its marker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .claims import Claim, format_difference
from .paths import runs_dir

__all__ = ["MARKER", "RunRecord", "claim_counts", "claims_table", "collect_runs",
           "provenance_table", "scoreboard_markdown"]

MARKER = "<!-- scoreboard -->"
PROFILE_ORDER = ("smoke", "demo", "full")
VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class RunRecord:
    """One chapter run: its chapter, profile, folder and ``results.json``."""

    chapter: str
    profile: str
    path: Path
    results: dict[str, Any]

    def is_stale(self, library: str) -> bool:
        return self.results.get("inputs", {}).get("library") != library


def collect_runs(root: Path | None = None) -> list[RunRecord]:
    """Every ``<root>/<profile>/<chapter>/results.json`` that parses (failed and running
    folders skipped), ordered by chapter, then smoke, demo, full, then other profiles."""
    root = root or runs_dir()
    records = []
    for path in sorted(root.glob("*/*/results.json")):
        folder = path.parent
        if folder.name.startswith(".") or folder.name.endswith(".failed"):
            continue
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        records.append(RunRecord(results.get("chapter", folder.name),
                                 results.get("profile", folder.parent.name), folder, results))
    rank = {p: i for i, p in enumerate(PROFILE_ORDER)}
    return sorted(records, key=lambda r: (r.chapter, rank.get(r.profile, len(rank)), r.profile))


def claim_counts(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Claims per verdict (and not tested) for every chapter and profile, with a total row."""
    rows = []
    for record in records:
        verdicts = [c.get("verdict") for c in record.results.get("claims", [])]
        rows.append({"chapter": record.chapter, "profile": record.profile,
                     **{v: verdicts.count(v) for v in VERDICTS},
                     "not tested": len(record.results.get("claims_skipped", {}))})
    table = pd.DataFrame(rows, columns=["chapter", "profile", *VERDICTS, "not tested"])
    if not table.empty:
        total = table[[*VERDICTS, "not tested"]].sum()
        table.loc[len(table)] = {"chapter": "all", "profile": "", **total.to_dict()}
    return table


def claims_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per claim of every run: its verdict, deciding difference [95 % interval] and
    threshold; the claims a run did not test with the reason."""
    rows = []
    for record in records:
        for data in record.results.get("claims", []):
            claim = Claim.from_dict(data)
            rows.append({"chapter": record.chapter, "profile": record.profile, "id": claim.id,
                         "source": claim.source, "verdict": claim.verdict,
                         "difference": format_difference(claim.deciding_comparison()),
                         "threshold": claim.threshold})
        for claim_id, reason in record.results.get("claims_skipped", {}).items():
            rows.append({"chapter": record.chapter, "profile": record.profile, "id": claim_id,
                         "source": "", "verdict": f"not tested ({reason})",
                         "difference": "", "threshold": ""})
    return pd.DataFrame(rows, columns=["chapter", "profile", "id", "source", "verdict",
                                       "difference", "threshold"])


def changed_parameters(record: RunRecord) -> dict[str, Any]:
    """The run's parameters that differ from its profile's defaults (all of them when the
    chapter or profile is unknown here)."""
    from .chapters import CHAPTERS

    params = record.results.get("parameters", {})
    chapter = CHAPTERS.get(record.chapter)
    try:
        defaults = chapter.resolve(record.profile) if chapter else {}
    except Exception:  # noqa: BLE001 - an unknown profile: show every parameter
        defaults = {}
    return {k: v for k, v in params.items()
            if k != "profile" and (k not in defaults or defaults[k] != v)}


def seeds_text(results: Mapping[str, Any]) -> str:
    """The run's seeds as ``0, 1, 2`` (its one seed when it reports no list)."""
    seeds = results.get("seeds") or [results.get("seed")]
    return ", ".join(str(s) for s in seeds if s is not None)


def provenance_table(records: Iterable[RunRecord], library: str) -> pd.DataFrame:
    """Where each run's numbers came from: revision, parameters changed from the profile,
    seeds, device, data, library versions, wall time, and whether it is stale."""
    rows = []
    for record in records:
        r, inputs = record.results, record.results.get("inputs", {})
        packages = inputs.get("packages") or r.get("environment", {})
        changed = changed_parameters(record)
        rows.append({
            "chapter": record.chapter, "profile": record.profile,
            "revision": r.get("git_revision", "unknown"),
            "changed parameters": ", ".join(f"{k}={v}" for k, v in changed.items()) or "none",
            "seeds": seeds_text(r), "device": r.get("device", "unknown"),
            "data": _short(inputs.get("data", "unknown")),
            "versions": ", ".join(f"{name} {packages[name]}" for name in
                                  ("python", "torch", "faiss-cpu", "faiss", "numpy")
                                  if packages.get(name, "none") != "none"),
            "wall time (s)": r.get("wall_time_s"),
            "stale": "yes" if record.is_stale(library) else "no"})
    return pd.DataFrame(rows, columns=["chapter", "profile", "revision", "changed parameters",
                                       "seeds", "device", "data", "versions", "wall time (s)",
                                       "stale"])


def _short(fingerprint: str) -> str:
    return fingerprint[:12] if len(fingerprint) == 40 else fingerprint


def _markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "*(no runs yet)*\n"
    return table.to_markdown(index=False) + "\n"


def thesis_tables_markdown(records: Iterable[RunRecord]) -> str:
    """For every thesis table, in thesis order: each run's table of the thesis numbers, the
    run's and their difference (recorded by :func:`irbook.thesis_tables.beside`), latest run of
    each profile; the tables no run has set beside its numbers are listed at the end."""
    from .thesis_tables import available_tables

    records = list(records)
    parts, alone = [], []
    for source in available_tables():
        runs = [r for r in records if source in r.results.get("thesis_tables", {})]
        if not runs:
            alone.append(source)
            continue
        parts.append(f"\n### Table {source}\n")
        for record in runs:
            parts.append(f"\n{record.chapter}, {record.profile} profile:\n\n"
                         f"{record.results['thesis_tables'][source]}\n")
    if alone:
        parts.append(f"\nTables without a run beside them here (their numbers are on the "
                     f"chapter pages or in `data/thesis_tables/`): {', '.join(alone)}.\n")
    return "".join(parts) if parts else "*(no runs yet)*\n"


def scoreboard_markdown(root: Path | None = None, library: str | None = None) -> str:
    """The generated part of the scoreboard page: counts, claims and provenance."""
    from .buildcache import library_digest

    records = collect_runs(root)
    library = library or library_digest()
    stale = sum(r.is_stale(library) for r in records)
    parts = ["## The count\n", _markdown(claim_counts(records)),
             f"\n{len(records)} runs, {stale} of them stale (made with another version of the "
             "library than this page).\n",
             "\n## Every claim\n", _markdown(claims_table(records)),
             "\n## The thesis tables beside the runs\n", thesis_tables_markdown(records),
             "\n## Where the numbers came from\n", _markdown(provenance_table(records, library))]
    return "".join(parts)
