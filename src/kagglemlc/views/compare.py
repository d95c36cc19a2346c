"""Settings compared: a metric over a grid of two settings (a heatmap per value of a third), and methods side by side
(one bar chart per measure: metric, trainable parameters, train time, peak memory).

    rows = pd.read_csv("runs/sweep/sweep.csv")          # one row per cell: its settings, results and "error"
    heatmap(rows, "heatmap.png", x="data.train_rows", y="data.labels", value="tuned", facet="model.name")
    method_bars(rows, "methods.png", method="adapter.method", panels=method_panels("f1_macro"))

Rows are a DataFrame or a list of dicts. A row whose `error` column is a non-empty string is a failed run: its cell
or bar reads "failed"; a value that is missing (None, NaN, "") reads "—" ("x" for a heatmap cell no row fills).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from kagglemlc.views.canvas import MUTED, label_bars, save_png
from kagglemlc.views.formats import count, duration, megabytes, number, short

Rows = pd.DataFrame | Sequence[Mapping[str, Any]]


def _frame(rows: Rows, needed: Sequence[str]) -> pd.DataFrame:
    frame = rows.reset_index(drop=True) if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise ValueError(f"no column {', '.join(map(repr, absent))} in the rows (columns: {list(frame.columns)})")
    return frame


def _failed(row: pd.Series, error: str) -> bool:
    value = row.get(error)
    return isinstance(value, str) and value.strip() != ""


def _tick(value: Any) -> str:
    """An axis value as a tick label: 800, 1e-05, "joy+anger" for a list of label names."""
    if isinstance(value, list | tuple):
        return "+".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _axis(values: pd.Series) -> list[str]:
    """An axis' tick labels: in numeric order when every value is a number, else in order of appearance."""
    labels = list(dict.fromkeys(_tick(v) for v in values))
    numbers = [number(label) for label in labels]
    if all(n is not None for n in numbers):
        labels = [label for _, label in sorted(zip(numbers, labels, strict=True))]
    return labels


# ---- heatmap -------------------------------------------------------------------------------------


def heatmap(
    rows: Rows,
    path: str | Path,
    *,
    x: str,
    y: str,
    value: str,
    facet: str | None = None,
    title: str | None = None,
    value_label: str | None = None,
    error: str = "error",
) -> Path:
    """A metric over two settings, one panel per value of `facet`, every cell annotated with its value.

    Args:
        rows: one row per run, with columns `x`, `y`, `value` (and `facet`, `error` when given/present).
        path: the PNG to write.
        x, y: the settings on the horizontal and vertical axis (numbers in numeric order, others as they come).
        value: the column coloured and written in the cells; the colour scale is shared by every panel.
        facet: a third setting: one panel per value (None: a single panel).
        title: above the panels; value_label: the colour bar's label (default: `value`).
        error: the column saying a run failed (non-empty text): its cell reads "failed"; a cell no row fills
            reads "x". When several rows fill one cell, the last one is shown (a rerun's result).

    Returns:
        `path`.

    Raises:
        ValueError: a named column is not in the rows.
    """
    frame = _frame(rows, [c for c in (x, y, value, facet) if c is not None])
    xs, ys = _axis(frame[x]), _axis(frame[y])
    facets = _axis(frame[facet]) if facet is not None else [None]
    values = [number(v) for v in frame[value]]
    finite = [v for v in values if v is not None]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    norm = Normalize(low - 0.01, high + 0.01) if high - low < 1e-9 else Normalize(low, high)
    cmap = matplotlib.colormaps["viridis"]

    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    width, height = 1.5 + 0.95 * len(xs), 1.2 + 0.5 * len(ys)
    fig = Figure(figsize=(min(ncols * width + 1.2, 16), nrows * height + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(facets) :]:
        ax.set_visible(False)
    for ax, shown in zip(axes.flat, facets, strict=False):
        grid = np.full((len(ys), len(xs)), np.nan)
        notes = np.full((len(ys), len(xs)), "x", dtype=object)
        for k, row in frame.iterrows():
            if facet is not None and _tick(row[facet]) != shown:
                continue
            i, j = ys.index(_tick(row[y])), xs.index(_tick(row[x]))
            v = values[k]
            grid[i, j] = np.nan if v is None else v
            notes[i, j] = short(v) if v is not None else ("failed" if _failed(row, error) else "—")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), note in np.ndenumerate(notes):
            if np.isnan(grid[i, j]):
                colour = MUTED
            else:
                r, g, b, _ = cmap(norm(grid[i, j]))
                colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, note, ha="center", va="center", fontsize=9, color=colour)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xticks(np.arange(len(xs) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(ys) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)  # cell borders; blank (missing) cells stay visible
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        if facet is not None:
            ax.set_title(f"{facet} = {shown}", fontsize=10)
    fig.colorbar(image, ax=axes[:, -1].tolist(), label=value_label or value, shrink=0.9)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


# ---- bars per method -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One bar chart of `method_bars`."""

    label: str
    """The value axis' label."""
    columns: tuple[str, ...]
    """The columns drawn: one bar per method and column; several columns are grouped bars with a legend."""
    names: tuple[str, ...] | None = None
    """The legend's names for `columns` (default: the column names)."""
    log: bool = False
    """A log scale (parameter counts that span head-only to full fine-tuning)."""
    text: Callable[[float | None], str] = short
    """A bar's value label."""


def method_panels(metric: str = "metric") -> tuple[Panel, ...]:
    """The four charts of a method comparison, on the columns of a sweep's rows: the metric (`untuned`, `tuned`),
    `trainable_params`, `train_seconds`, peak memory (`peak_gpu_mb`, `peak_cpu_mb`)."""
    return (
        Panel(metric, ("untuned", "tuned"), ("at 0.5", "tuned")),
        Panel("trainable parameters", ("trainable_params",), log=True, text=count),
        Panel("train time", ("train_seconds",), text=duration),
        Panel("peak memory (MB)", ("peak_gpu_mb", "peak_cpu_mb"), ("GPU", "CPU"), text=megabytes),
    )


def method_bars(
    rows: Rows,
    path: str | Path,
    *,
    method: str = "method",
    panels: Sequence[Panel] | None = None,
    title: str | None = None,
    error: str = "error",
) -> Path:
    """Methods side by side: one bar chart per panel (up to three in a line, else two), one bar (group) per row,
    values written on top.

    Args:
        rows: one row per method, in the order to draw them.
        path: the PNG to write.
        method: the column naming each row's method (the bars' tick labels).
        panels: the charts (default `method_panels()`); a column absent from the rows is drawn as missing.
        title: above the charts.
        error: the column saying a run failed (non-empty text): its bars read "failed".

    Returns:
        `path`.

    Raises:
        ValueError: no `method` column in the rows.
    """
    frame = _frame(rows, [method])
    panels = method_panels() if panels is None else panels
    names = [_tick(v) for v in frame[method]]
    failed = [_failed(row, error) for _, row in frame.iterrows()]
    absent = ["failed" if f else "—" for f in failed]
    ncols = len(panels) if len(panels) <= 3 else 2
    nrows = math.ceil(len(panels) / ncols)
    width = max(3.6, 1.4 + 0.75 * len(names) * max(len(p.columns) for p in panels) ** 0.5)
    fig = Figure(figsize=(min(ncols * width, 16), nrows * 3.1 + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    positions = np.arange(len(names))
    for ax, panel in zip(axes.flat, panels, strict=False):
        step = 0.8 / len(panel.columns)
        measured = []
        for c, column in enumerate(panel.columns):
            values = [number(v) for v in frame[column]] if column in frame.columns else [None] * len(names)
            heights = [math.nan if v is None else v for v in values]
            offset = (c - (len(panel.columns) - 1) / 2) * step
            bars = ax.bar(positions + offset, heights, step, label=(panel.names or panel.columns)[c])
            label_bars(ax, bars, values, panel.text, absent)
            measured += [v for v in values if v is not None]
        if panel.log and measured and min(measured) > 0:
            ax.set_yscale("log")
        ax.margins(y=0.15)
        crowded = len(names) > 4
        ax.set_xticks(positions, names, rotation=20 if crowded else 0, ha="right" if crowded else "center")
        ax.set_title(panel.label, fontsize=10)
        ax.set_xlim(-0.6, len(names) - 0.4)  # a method without a value keeps its place (and its "—" / "failed")
        if len(panel.columns) > 1:
            ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
        if not measured:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color=MUTED)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
