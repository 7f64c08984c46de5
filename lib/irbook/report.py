"""What a chapter run reports: its metrics and its claim checks.

A notebook builds one :class:`Report`, records numbers with :meth:`Report.metric` (also glued
into the page with myst-nb, so the prose quotes the run) and the thesis claims it checked with
:meth:`Report.add_claim` (a :class:`~irbook.claims.Claim` from
:func:`~irbook.claims.evaluate_claim`; its verdict is glued under the claim's id) or
:meth:`Report.skip_claim`, then calls :meth:`Report.save`. :mod:`irbook.runner` merges the saved
file with the parameters, environment and timings into ``results.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .claims import Claim, check_claim_id, format_difference, json_safe
from .paths import runs_dir

NOTEBOOK_RESULTS = "notebook_results.json"
VERDICT_SYMBOLS = {"supported": "✓", "not supported": "✗", "inconclusive": "?"}
FRAME_COLUMNS = ("id", "claim", "source", "verdict", "difference", "threshold", "detail")


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
        self.claims: list[Claim] = []
        self.skipped: dict[str, str] = {}
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

    def thesis_table(self, source: str, table) -> str:
        """Record a thesis-beside-run table (:func:`irbook.thesis_tables.beside`) as markdown
        for the reproduction scoreboard (the last one recorded for ``source`` wins)."""
        flat = table.copy()
        flat.columns = [" · ".join(str(c) for c in col) if isinstance(col, tuple) else str(col)
                        for col in flat.columns]
        flat.index = [" · ".join(str(i) for i in row) if isinstance(row, tuple) else str(row)
                      for row in flat.index]
        text = flat.to_markdown()
        self.extra.setdefault("thesis_tables", {})[source] = text
        return text

    def add_claim(self, claim: Claim) -> Claim:
        """Record a checked claim and glue its verdict under its id, for
        ``{glue:text}`ch05.ours_keeps_old``` in the prose."""
        if not isinstance(claim, Claim):
            raise TypeError(f"add_claim takes a Claim (see irbook.claims.evaluate_claim), "
                            f"got {type(claim).__name__}")
        self._refuse_duplicate(claim.id)
        self.claims.append(claim)
        _glue(claim.id, claim.verdict)
        return claim

    def skip_claim(self, id: str, reason: str) -> str:
        """Glue "not tested (<reason>)" under the claim's id; the claim is not recorded."""
        check_claim_id(id)
        if not reason or not reason.strip():
            raise ValueError(f"say why claim {id!r} is not tested")
        self._refuse_duplicate(id)
        self.skipped[id] = reason
        text = f"not tested ({reason})"
        _glue(id, text)
        return text

    def _refuse_duplicate(self, claim_id: str) -> None:
        if claim_id in self.skipped or any(c.id == claim_id for c in self.claims):
            raise ValueError(f"claim {claim_id!r} was already reported in this run")

    def claims_frame(self):
        """The claim checks as a table for the page (difference of the deciding comparison)."""
        import pandas as pd

        rows = [{
            "id": c.id, "claim": c.claim, "source": c.source,
            "verdict": f"{VERDICT_SYMBOLS[c.verdict]} {c.verdict}",
            "difference": format_difference(c.deciding_comparison()),
            "threshold": c.threshold, "detail": c.detail,
        } for c in self.claims]
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))

    def save(self, path: Path | None = None) -> Path:
        """Write metrics, claims and extras as JSON next to the executed notebook."""
        target = path or run_dir(self.chapter) / NOTEBOOK_RESULTS
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "chapter": self.chapter,
            "params": self.params,
            "device": self.device,
            "metrics": self.metrics,
            "claims": [c.to_dict() for c in self.claims],
            "claims_skipped": self.skipped,
            **self.extra,
        }
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(json_safe(payload), indent=2, default=_jsonable,
                                  allow_nan=False))
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
