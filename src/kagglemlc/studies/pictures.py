"""A study's pictures and page: the metric over the settings that vary (a heatmap, faceted by a third setting), the
cells or trials side by side (metric, trainable parameters, train time, peak memory), and `<stem>.html` with them
and the table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kagglemlc.views.compare import heatmap, method_bars, method_panels
from kagglemlc.views.html import Section, write_html

# the columns of a study's table on its page, in this order (the settings come first)
PAGE_COLUMNS = (
    "status", "untuned", "tuned", "nested", "trainable_params", "total_params", "train_seconds",
    "samples_per_second", "peak_cpu_mb", "peak_gpu_mb", "error",
)  # fmt: skip


def study_pictures(frame: pd.DataFrame, axes: list[str], folder: Path, stem: str) -> list[Path]:
    """Draws what fits the study's settings into `folder` (`<stem>-heatmap.png` when two or more settings vary,
    `<stem>-bars.png` always) and returns the paths."""
    if frame.empty or "tuned" not in frame:
        return []
    columns = [f"setting:{axis}" for axis in axes if f"setting:{axis}" in frame]
    varying = [c for c in columns if frame[c].astype(str).nunique() > 1]
    metric = str(frame["metric"].dropna().iloc[0]) if "metric" in frame and frame["metric"].notna().any() else "metric"
    drawn = []
    if len(varying) >= 2:
        drawn.append(
            heatmap(
                frame.rename(columns=_name),
                folder / f"{stem}-heatmap.png",
                y=_name(varying[0]),
                x=_name(varying[1]),
                facet=_name(varying[2]) if len(varying) > 2 else None,
                value="tuned",
                value_label=f"{metric} (tuned)",
                title=f"{stem}: {metric} by {_name(varying[0])} × {_name(varying[1])}",
            )
        )
    named = frame.assign(label=[_label(row, varying) for _, row in frame.iterrows()])
    names = " · ".join(_name(c).split(".")[-1] for c in varying) or ("trial" if "trial" in frame else "cell")
    drawn.append(
        method_bars(
            named, folder / f"{stem}-bars.png", method="label", panels=method_panels(metric), title=f"{stem}: {names}"
        )
    )
    return drawn


def study_page(frame: pd.DataFrame, axes: list[str], folder: Path, stem: str, command: str) -> Path:
    """`<stem>.html`: the study's pictures and its table (one row per cell or trial), in one file."""
    pictures = study_pictures(frame, axes, folder, stem)
    settings = [c for c in frame.columns if c.startswith("setting:")]
    lead = [c for c in ("trial", "state", "value") if c in frame]
    shown = frame[[*lead, *settings, *[c for c in PAGE_COLUMNS if c in frame]]].rename(columns=_name)
    ok = int((frame.get("status", pd.Series(dtype=str)) == "ok").sum())
    summary = f"{len(frame)} cells ({ok} complete); made by `{command}`; every cell's folder is in `cells/`."
    sections = [
        Section(f"{stem}: the metric", paragraphs=[summary], images=pictures),
        Section("Cells", tables=[shown.astype(object).where(shown.notna(), None).to_dict("records")]),
    ]
    return write_html(folder / f"{stem}.html", f"kagglemlc {stem}", sections)


def _name(column: str) -> str:
    return column.removeprefix("setting:")


def _label(row: pd.Series, varying: list[str]) -> str:
    """A cell's bar label: the values of the settings that vary, in the title's order (a search: the trial)."""
    if "trial" in row:
        return str(row["trial"])
    return " · ".join(str(row[c]) for c in varying) or str(row.get("cell", ""))
