"""The thesis result tables as pandas DataFrames.

The CSV files live in ``data/thesis_tables/`` at the repository root, one per thesis table
(``table_2_2.csv`` holds Table 2.2). Empty cells, where the thesis prints "-", load as NaN;
percentages are plain numbers. See ``data/thesis_tables/README.md`` for the column meanings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

TABLES_DIR = Path(__file__).resolve().parents[2] / "data" / "thesis_tables"

_NAME = re.compile(r"^\d+\.\d+$")
_FILE = re.compile(r"^table_(\d+)_(\d+)\.csv$")


def available_tables() -> list[str]:
    """Names of the tables present, such as ``["2.1", "2.2", "2.3"]``, in thesis order."""
    if not TABLES_DIR.is_dir():
        return []
    found = [_FILE.match(path.name) for path in TABLES_DIR.iterdir()]
    keys = sorted((int(m[1]), int(m[2])) for m in found if m)
    return [f"{chapter}.{number}" for chapter, number in keys]


def load_thesis_table(table: str) -> pd.DataFrame:
    """Read one thesis table, e.g. ``load_thesis_table("2.2")`` for Table 2.2.

    Text columns stay strings; every other column is numeric (float, NaN where the thesis
    reports no result), except the integer bibliography number ``ref`` and the incremental
    ``step`` of chapters 5-6 (nullable integer, ``<NA>`` for a jointly trained reference model).
    """
    if not isinstance(table, str) or not _NAME.match(table):
        raise ValueError(
            f"parameter 'table' got {table!r}; expected 'CHAPTER.NUMBER' such as '2.2'; "
            f"available: {', '.join(available_tables()) or 'none'}"
        )
    path = TABLES_DIR / f"table_{table.replace('.', '_')}.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"no thesis table {table!r}: {path} does not exist; "
            f"available: {', '.join(available_tables()) or 'none'} (in {TABLES_DIR})"
        )
    frame = pd.read_csv(path, encoding="utf-8", keep_default_na=False, na_values=[""])
    if "ref" in frame.columns:
        frame["ref"] = frame["ref"].astype(int)
    if "step" in frame.columns:
        frame["step"] = frame["step"].astype("Int64")
    return frame


_FIGURE = re.compile(r"^figure_(\d+)_(\d+)\.csv$")


def available_figures() -> list[str]:
    """Names of the thesis figures stored as data (``["8.4", "8.5"]``), in thesis order."""
    if not TABLES_DIR.is_dir():
        return []
    found = [_FIGURE.match(path.name) for path in TABLES_DIR.iterdir()]
    return [f"{c}.{n}" for c, n in sorted((int(m[1]), int(m[2])) for m in found if m)]


def load_figure_data(figure: str) -> pd.DataFrame:
    """The numbers behind a thesis figure, e.g. ``load_figure_data("8.4")`` (see the README of
    ``data/thesis_tables`` for where each figure's numbers come from)."""
    if not isinstance(figure, str) or not _NAME.match(figure):
        raise ValueError(f"parameter 'figure' got {figure!r}; expected 'CHAPTER.NUMBER' such "
                         f"as '8.4'; available: {', '.join(available_figures()) or 'none'}")
    path = TABLES_DIR / f"figure_{figure.replace('.', '_')}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no data for thesis figure {figure!r}: {path} does not exist; "
                                f"available: {', '.join(available_figures()) or 'none'}")
    frame = pd.read_csv(path, encoding="utf-8", keep_default_na=False, na_values=[""])
    return frame.astype({"ref": int, "year": int})


def beside(source: str, thesis: pd.DataFrame, ours: pd.DataFrame, profile: str,
           report=None, layout: str = "columns", decimals: int = 1) -> pd.DataFrame:
    """One table for a thesis table set beside the run: ``Table <source> (thesis)``, ``this
    run (<profile>)`` and ``difference`` (this run − thesis) for every cell both have, aligned
    on the rows and columns of both (the thesis's order first). ``layout="rows"`` stacks the
    three parts vertically (for wide tables) and leaves out difference rows without a value.
    With a ``report`` the table is recorded for the reproduction scoreboard."""
    if layout not in ("columns", "rows"):
        raise ValueError(f"layout must be 'columns' or 'rows'; got {layout!r}")
    rows = thesis.index.append(ours.index).unique()
    columns = thesis.columns.append(ours.columns).unique()
    thesis = thesis.reindex(index=rows, columns=columns)
    ours = ours.reindex(index=rows, columns=columns)
    parts = {f"Table {source} (thesis)": thesis, f"this run ({profile})": ours,
             "difference": ours - thesis}
    if layout == "rows":
        parts["difference"] = parts["difference"].dropna(how="all")
    table = pd.concat(parts, axis=1 if layout == "columns" else 0).round(decimals)
    if report is not None:
        report.thesis_table(source, table)
    return table
