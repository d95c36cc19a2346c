"""Pictures of experiments, from what their files hold: learning curves of the folds, per-label precision / recall /
F1, F1 per label across experiments, label frequency, CV against the public leaderboard.

    histories = {f"fold {k}": json.load(open(f"runs/demo/fold{k}/metrics.json"))["history"] for k in range(5)}
    learning_curves(histories, "curves.png", metric_name="f1_macro")
    label_scores(report(["configs/demo.yaml"], as_json=True)["experiments"][0]["labels"], "prf.png")

A per-label row is a dict with "label", "precision", "recall", "f1", "support" and "frequency" (what
`kagglemlc report --json` lists under "labels"); an experiment is a dict with "name" and "labels".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kagglemlc.views.canvas import MUTED, save_png
from kagglemlc.views.formats import number

Label = Mapping[str, Any]


def _points(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(number(h.get("step")), number(h.get(key))) for h in history]
    pairs = [(s, v) for s, v in pairs if s is not None and v is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    *,
    metric_name: str = "metric",
    title: str | None = None,
) -> Path:
    """Every fold's evaluations against the training step: above, the selection metric (solid) and the metric of the
    probabilities at 0.5 (dashed); below, the mean training loss since the previous evaluation. One colour per fold.

    Args:
        histories: fold name → its metrics.json "history" (entries with "step", "metric", "metric_at_0.5",
            "train_loss"; a key an entry lacks leaves a gap).
        path: the PNG to write.
        metric_name: the metric's name, for the axis label.
        title: above the panels.
    """
    fig = Figure(figsize=(8, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    colours = [f"C{i % 10}" for i in range(len(histories))]
    for colour, (fold, history) in zip(colours, histories.items(), strict=True):
        for key, style in (("metric", "-"), ("metric_at_0.5", "--")):
            steps, values = _points(history, key)
            top.plot(steps, values, style, color=colour, marker="o", markersize=3, linewidth=1.4)
        steps, losses = _points(history, "train_loss")
        bottom.plot(steps, losses, "-", color=colour, marker="o", markersize=3, linewidth=1.4, label=fold)
    styles = [Line2D([], [], color=MUTED, linestyle=s) for s in ("-", "--")]
    top.legend(styles, ["selection metric", "probabilities at 0.5"], fontsize=8, loc="lower right")
    top.set_ylabel(f"validation {metric_name}")
    top.grid(alpha=0.3)
    bottom.legend(fontsize=8, ncols=min(len(histories), 5), loc="upper right")
    bottom.set_ylabel("train loss")
    bottom.set_xlabel("optimizer step")
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def label_scores(labels: Sequence[Label], path: str | Path, *, title: str | None = None) -> Path:
    """Horizontal grouped bars: each label's precision, recall and F1 (its support in the tick label)."""
    names = [f"{r['label']} ({r['support']:,})" for r in labels]
    fig = Figure(figsize=(8, 1.4 + 0.42 * len(labels)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / 3
    for i, (key, colour) in enumerate((("precision", "C0"), ("recall", "C1"), ("f1", "C2"))):
        ax.barh(np.arange(len(labels)) + (i - 1) * height, [r[key] for r in labels], height, label=key, color=colour)
    ax.set_yticks(np.arange(len(labels)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("on out-of-fold predictions (support in brackets)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def label_f1(experiments: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Horizontal bars: each label's OOF F1, one bar per experiment (those with per-label rows)."""
    shown = [e for e in experiments if e["labels"]]
    names = [row["label"] for row in shown[0]["labels"]]
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(names) * max(1, len(shown) ** 0.5)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(shown)
    for i, exp in enumerate(shown):
        f1 = {row["label"]: row["f1"] for row in exp["labels"]}
        ax.barh(np.arange(len(names)) + i * height, [f1.get(n, 0.0) for n in names], height, label=exp["name"])
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 on out-of-fold predictions (tuned thresholds)")
    if len(shown) > 1:
        fig.legend(loc="outside upper center", ncols=min(len(shown), 4))
    return save_png(fig, path)


def label_frequency(labels: Sequence[Label], path: str | Path) -> Path:
    """Horizontal bars: share of training rows carrying each label, the count at the bar's end."""
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(labels)), layout="constrained")
    ax = fig.subplots()
    ax.barh([r["label"] for r in labels], [100 * r["frequency"] for r in labels], color="tab:gray")
    for k, r in enumerate(labels):
        ax.annotate(f" {r['support']:,}", (100 * r["frequency"], k), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of training rows (count at the bar's end)")
    return save_png(fig, path)


def cv_vs_public(submissions: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Scatter of CV against public leaderboard score, one point per scored submission, one colour per experiment.

    Args:
        submissions: dicts with "experiment", "cv" and "public" (numbers).
        path: the PNG to write.
    """
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    experiments = list(dict.fromkeys(s["experiment"] for s in submissions))
    for name in experiments:
        points = [s for s in submissions if s["experiment"] == name]
        ax.scatter([s["cv"] for s in points], [s["public"] for s in points], label=name, s=36)
    values = [s[k] for s in submissions for k in ("cv", "public")]
    low, high = min(values), max(values)
    pad = max(high - low, 0.01) * 0.1
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="lightgray", linestyle="--", label="CV = public")
    ax.set_xlabel("CV (when submitted)")
    ax.set_ylabel("public leaderboard score")
    ax.legend(loc="upper left", fontsize=8)
    return save_png(fig, path)
