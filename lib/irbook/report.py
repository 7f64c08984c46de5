"""What a chapter run reports: its metrics and its claim checks.

A notebook builds one :class:`Report`, records numbers with :meth:`Report.metric` (also glued
into the page with myst-nb, so the prose quotes the run) and thesis claims with
:meth:`Report.claim`, then calls :meth:`Report.save`. :mod:`irbook.runner` merges the saved
file with the parameters, environment and timings into ``results.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .paths import runs_dir

NOTEBOOK_RESULTS = "notebook_results.json"


@dataclass(frozen=True)
class ClaimCheck:
    """A statement of the thesis that a run tests, and whether the run supports it."""

    claim: str
    source: str
    holds: bool
    detail: str


def run_dir(chapter: str) -> Path:
    """Folder of the current run: set by the runner, else ``runs/interactive/<chapter>``."""
    given = os.environ.get("IRBOOK_RUN_DIR")
    return Path(given) if given else runs_dir() / "interactive" / chapter


class Report:
    """Collects a chapter's metrics and claim checks."""

    def __init__(self, chapter: str, params: dict[str, Any], device: str = "unknown"):
        self.chapter = chapter
        self.params = dict(params)
        self.device = device
        self.metrics: dict[str, Any] = {}
        self.claims: list[ClaimCheck] = []
        self.extra: dict[str, Any] = {}

    def metric(self, name: str, value: Any, glue: bool = True) -> Any:
        """Record a number (or short string) and glue it for the page's prose."""
        if hasattr(value, "item"):  # numpy / torch scalars print as np.float64(...) otherwise
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        self.metrics[name] = value
        if glue:
            _glue(name, value)
        return value

    def claim(self, claim: str, source: str, holds: bool, detail: str) -> ClaimCheck:
        """Record whether this run supports a statement of the thesis."""
        check = ClaimCheck(claim=claim, source=source, holds=bool(holds), detail=detail)
        self.claims.append(check)
        return check

    def check_claims(self, checks: dict[tuple[str, str], tuple[bool, str] | None]) -> None:
        """Record every tested claim ((claim, source) → (holds, detail)); None = not testable
        in this run. Glues ``claim1``… as "supported" / "not supported" for the prose."""
        for (claim, source), outcome in checks.items():
            if outcome is not None:
                self.claim(claim, source, *outcome)
        for i, check in enumerate(self.claims, 1):
            self.metric(f"claim{i}", "supported" if check.holds else "not supported")

    def claims_frame(self):
        """The claim checks as a table for the page."""
        import pandas as pd

        columns = list(ClaimCheck.__annotations__)
        frame = pd.DataFrame([asdict(c) for c in self.claims], columns=columns)
        frame["holds"] = frame["holds"].map({True: "✓ supported", False: "✗ not supported"})
        return frame

    def save(self, path: Path | None = None) -> Path:
        """Write metrics, claims and extras as JSON next to the executed notebook."""
        target = path or run_dir(self.chapter) / NOTEBOOK_RESULTS
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "chapter": self.chapter,
            "params": self.params,
            "device": self.device,
            "metrics": self.metrics,
            "claims": [asdict(c) for c in self.claims],
            **self.extra,
        }
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=_jsonable))
        tmp.replace(target)
        return target


def _glue(name: str, value: Any) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # pragma: no cover - myst-nb ships with jupyter-book
        return
    glue(name, value, display=False)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
