"""The table "protocol: thesis vs this run" that every chapter shows.

The thesis side is a file per chapter, ``data/thesis_protocols/<chapter>.csv`` (columns
``item, thesis, source``). The chapter module gives this run's value of every item and the
reason for each way a profile departs from the thesis; an item whose value differs without a
stated reason is an error, so no deviation goes unexplained. The deviations also go to
``results.json`` (``deviations``).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .paths import REPO_ROOT

PROTOCOLS_DIR = REPO_ROOT / "data" / "thesis_protocols"
COLUMNS = ["item", "thesis", "this run", "deviation"]


def load_thesis_protocol(chapter: str) -> pd.DataFrame:
    """The thesis' protocol of ``chapter`` (item, thesis, source), in file order."""
    path = PROTOCOLS_DIR / f"{chapter}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no thesis protocol for {chapter!r}: {path} does not exist")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _same(a: str, b: str) -> bool:
    return " ".join(str(a).lower().split()) == " ".join(str(b).lower().split())


def protocol_table(chapter: str, run: Mapping[str, str],
                   reasons: Mapping[str, str]) -> pd.DataFrame:
    """One row per protocol item: the thesis' value, this run's, and why they differ (empty
    when they agree). ``run`` must give every item of the thesis file; ``reasons`` must cover
    every item whose values differ."""
    thesis = load_thesis_protocol(chapter)
    missing = [item for item in thesis["item"] if item not in run]
    extra = sorted(set(run) - set(thesis["item"]))
    if missing or extra:
        raise ValueError(f"{chapter}: run protocol items do not match "
                         f"{PROTOCOLS_DIR / (chapter + '.csv')}: missing {missing}, "
                         f"unknown {extra}")
    rows = []
    for item, value in zip(thesis["item"], thesis["thesis"], strict=True):
        differs = not _same(run[item], value)
        if differs and not reasons.get(item):
            raise ValueError(f"{chapter}: protocol item {item!r} differs from the thesis "
                             f"({run[item]!r} vs {value!r}) and no reason is given")
        rows.append({"item": item, "thesis": value, "this run": run[item],
                     "deviation": reasons[item] if differs else ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def deviations(table: pd.DataFrame) -> list[dict[str, str]]:
    """The rows of a :func:`protocol_table` that depart from the thesis, for ``results.json``."""
    differing = table[table["deviation"] != ""]
    return [{"item": r["item"], "thesis": r["thesis"], "run": r["this run"],
             "reason": r["deviation"]} for _, r in differing.iterrows()]


def describe_seeds(params: Mapping[str, object]) -> str:
    """How many trainings a run repeats, in the words of the protocol tables."""
    first, n = params["seed"], params["seeds"]
    seeds = f"seed {first}" if n == 1 else f"seeds {first}-{first + n - 1}"
    return f"{n} training(s) ({seeds}); 95 % intervals from a bootstrap over test queries"
