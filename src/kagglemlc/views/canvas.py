"""What every picture shares: a figure saved as a small PNG (100 dpi) atomically, and value labels on bars.

    fig = Figure(figsize=(6, 4), layout="constrained")     # matplotlib.figure.Figure: the Agg canvas, no pyplot
    ...
    save_png(fig, path)

Pictures take plain data and the PNG's path and return the path; nothing here holds state between pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from kagglemlc.core.files import atomic_path
from kagglemlc.views.formats import short

DPI = 100
MUTED = "#8a8f98"  # the grey of missing cells, failed runs and reference lines


def save_png(fig: Figure, path: str | Path) -> Path:
    """Writes the figure as a PNG (written to a temporary file, then renamed into place); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def label_bars(
    ax: Axes,
    bars: BarContainer,
    values: Sequence[float | None],
    text: Callable[[float | None], str] = short,
    absent: Sequence[str] | None = None,
) -> None:
    """Writes each bar's value at its end; a missing value is written at the axis' base as `absent[i]`
    (default "—"), so a failed or unmeasured run reads as such instead of as a zero."""
    horizontal = bars.orientation == "horizontal"
    for i, (bar, value) in enumerate(zip(bars, values, strict=True)):
        if value is None:  # at the base of the value axis, which is 0 on a linear scale and a log scale's bottom
            label = absent[i] if absent else text(None)
            if horizontal:
                at, where = (0, bar.get_y() + bar.get_height() / 2), ("axes fraction", "data")
                ax.annotate(f" {label}", at, xycoords=where, va="center", ha="left", fontsize=8, color=MUTED)
            else:
                at, where = (bar.get_x() + bar.get_width() / 2, 0), ("data", "axes fraction")
                ax.annotate(label, at, xycoords=where, xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=8, color=MUTED)  # fmt: skip
        elif horizontal:
            ax.annotate(f" {text(value)}", (value, bar.get_y() + bar.get_height() / 2), va="center",
                        ha="left" if value >= 0 else "right", fontsize=8)  # fmt: skip
        else:
            up = value >= 0
            ax.annotate(text(value), (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2 if up else -2),
                        textcoords="offset points", ha="center", va="bottom" if up else "top", fontsize=8)  # fmt: skip
