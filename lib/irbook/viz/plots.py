"""Summary plots of results tables."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .theme import BOOK_WIDTH_IN, label_palette


def _check_columns(df: pd.DataFrame, columns: Iterable[tuple[str, str | None]]) -> None:
    for parameter, column in columns:
        if column is not None and column not in df.columns:
            raise ValueError(
                f"{parameter}={column!r} is not a column of df; columns are {list(df.columns)}"
            )


def plot_map_bars(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None,
    title: str,
    scale: float = 100.0,
    ylabel: str = "mAP (%)",
) -> Figure:
    """Grouped bars of ``df[y] * scale`` (long format) by ``x`` and ``hue``, values on the bars.

    With the default ``scale=100`` the ``y`` column holds fractions in [0, 1] (what
    :mod:`irbook.metrics` returns) and the bars show percent; pass ``scale=1`` for a column
    already in percent.
    """
    _check_columns(df, [("x", x), ("y", y), ("hue", hue)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    data = df.assign(**{ylabel: df[y].astype(float) * scale})
    fig = Figure(figsize=(BOOK_WIDTH_IN, BOOK_WIDTH_IN * 0.45))
    ax = fig.add_subplot()
    sns.barplot(data=data, x=x, y=ylabel, hue=hue, errorbar=None, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=7, padding=1)
    ax.set_ylim(0, float(data[ylabel].max()) * 1.15 or 1.0)
    ax.set_title(title)
    if hue is not None and ax.get_legend() is not None:
        ax.legend(title=hue, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_metric_panels(
    df: pd.DataFrame,
    panel: str,
    x: str,
    hue: str | None,
    y: str = "value",
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """One small bar chart per value of ``df[panel]`` (each with its own y scale).

    Suited to results on different scales side by side, e.g. mAP per benchmark and the
    UKBench N-S score: ``x`` along each panel, ``hue`` as bar colour, one shared legend.
    """
    _check_columns(df, [("panel", panel), ("x", x), ("y", y), ("hue", hue)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    panels = list(dict.fromkeys(df[panel]))
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 2.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    order = list(dict.fromkeys(df[x]))
    hue_order = list(dict.fromkeys(df[hue])) if hue is not None else None
    palette = label_palette([str(h) for h in hue_order]) if hue is not None else None
    if palette is not None:
        palette = {h: palette[str(h)] for h in hue_order}
    for ax, name in zip(axes, panels, strict=False):
        sns.barplot(data=df[df[panel] == name], x=x, y=y, hue=hue, order=order, ax=ax,
                    errorbar=None, palette=palette, hue_order=hue_order)
        ax.set_title(str(name), fontsize="medium")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if hue is not None:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, title=hue, loc="outside lower center",
                   ncols=len(labels))
    if title:
        fig.suptitle(title)
    return fig


def plot_scatter_panels(df: pd.DataFrame, panel: str, x: str, y: str, hue: str,
                        title: str | None = None) -> Figure:
    """Side-by-side scatter plots sharing axes, one per value of ``df[panel]`` (e.g. t-SNE)."""
    _check_columns(df, [("panel", panel), ("x", x), ("y", y), ("hue", hue)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    panels = list(dict.fromkeys(df[panel]))
    fig = Figure(figsize=(BOOK_WIDTH_IN, BOOK_WIDTH_IN / len(panels) + 0.9),
                 layout="constrained")
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False).ravel()
    hue_order = sorted(df[hue].unique(), key=str)
    for ax, name in zip(axes, panels, strict=True):
        sns.scatterplot(data=df[df[panel] == name], x=x, y=y, hue=hue, hue_order=hue_order,
                        s=14, ax=ax, legend=ax is axes[0])
        ax.set_title(str(name), fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    if axes[0].get_legend() is not None:
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        fig.legend(handles, labels, title=hue, loc="outside lower center",
                   ncols=min(len(labels), 8))
    if title:
        fig.suptitle(title)
    return fig


def plot_lines(df: pd.DataFrame, x: str, y: str, hue: str, panel: str | None = None,
               ylabel: str | None = None, title: str | None = None,
               xlabel: str | None = None) -> Figure:
    """One line per ``hue`` value over ``x``, one panel per ``panel`` value, side by side
    (forgetting curves, accuracy after every task, precision-recall curves).

    Markers and one tick per ``x`` value are drawn when there are at most 12 ``x`` values.
    """
    _check_columns(df, [("x", x), ("y", y), ("hue", hue), ("panel", panel)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    panels = list(dict.fromkeys(df[panel])) if panel else [None]
    few = df[x].nunique() <= 12
    hue_order = [str(v) for v in dict.fromkeys(df[hue])]
    df = df.assign(**{hue: df[hue].astype(str)})
    palette = label_palette(hue_order)
    fig = Figure(figsize=(BOOK_WIDTH_IN, 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels, strict=True):
        part = df if name is None else df[df[panel] == name]
        sns.lineplot(data=part, x=x, y=y, hue=hue, marker="o" if few else None, ax=ax,
                     hue_order=hue_order, palette=palette)
        if few:
            ax.set_xticks(sorted(part[x].unique()))
        ax.set_title("" if name is None else str(name), fontsize="medium")
        ax.set_ylabel((ylabel or y) if ax is axes[0] else "")
        ax.set_xlabel(xlabel or x)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6))
    if title:
        fig.suptitle(title)
    return fig


def pareto_frontier(df: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """The rows no other row beats on both ``cost`` (lower is better) and ``value`` (higher
    is better), sorted by cost."""
    _check_columns(df, [("cost", cost), ("value", value)])
    ordered = df.sort_values([cost, value], ascending=[True, False])
    best, keep = float("-inf"), []
    for index, row in ordered.iterrows():
        if row[value] > best:
            keep.append(index)
            best = row[value]
    return ordered.loc[keep]


def plot_tradeoff(df: pd.DataFrame, cost: str, value: str, hue: str,
                  title: str | None = None) -> Figure:
    """Accuracy against cost (log scale) per ``hue`` (e.g. search backend), with the Pareto
    frontier as a dashed line (Table 2.1's accuracy-speed trade-off)."""
    _check_columns(df, [("cost", cost), ("value", value), ("hue", hue)])
    if df.empty:
        raise ValueError("df must hold at least one row")
    hue_order = [str(v) for v in dict.fromkeys(df[hue])]
    df = df.assign(**{hue: df[hue].astype(str)})
    fig = Figure(figsize=(BOOK_WIDTH_IN, 3.4), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(data=df, x=cost, y=value, hue=hue, hue_order=hue_order, marker="o", ax=ax,
                 palette=label_palette(hue_order), sort=True)
    frontier = pareto_frontier(df, cost, value)
    ax.plot(frontier[cost], frontier[value], "k--", linewidth=1, label="frontier")
    ax.set_xscale("log")
    ax.legend(loc="lower right", fontsize="small")
    if title:
        ax.set_title(title)
    return fig
