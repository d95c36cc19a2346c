"""Experiments side by side: CV untuned / tuned / nested, per-label P/R/F1, size, time, memory, public score.

    kagglemlc report configs/minilm.yaml configs/deberta.yaml    # → runs/minilm/report.md + report-*.png
    kagglemlc report configs/minilm.yaml --json                   # the same numbers as JSON on stdout

    data = report(["configs/demo.yaml"], as_json=True)
    data["experiments"][0]["labels"][0]    # {'label': 'admiration', 'threshold': 0.31, 'precision': ..., 'f1': ...}

Everything is read from the experiments' files: thresholds.json, oof.parquet, fold{k}/metrics.json and
submissions/log.csv (public scores). A missing file leaves its cells empty, so a report works at any
stage. Per-label numbers are the OOF predictions decided with the tuned thresholds, i.e. what the
submission does. Plots are drawn on matplotlib's Agg canvas: no display, no pyplot state.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kagglemlc.config import Config, load_config
from kagglemlc.core.console import info, warn
from kagglemlc.core.files import atomic_path, write_text
from kagglemlc.core.paths import METRICS_FILE, OOF_FILE, REPORT_FILE, THRESHOLDS_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.submissions import read_log
from kagglemlc.data.thresholds import read_thresholds
from kagglemlc.scoring.cuts import apply_cuts, evaluate, untuned
from kagglemlc.scoring.metrics import PROB_METRICS, f1_counts

# ---- collecting ----------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """A float for JSON and tables; None for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        warn(f"{path}: not valid JSON; left out of the report")
        return None


def _labels(cfg: Config, data: CompetitionData, tuned: dict | None) -> tuple[list[dict[str, Any]], float | None]:
    """Per-label precision/recall/F1 of the OOF decided with the tuned cuts, and the untuned CV."""
    path = cfg.run_dir / OOF_FILE
    if not path.is_file():
        return [], None
    probs = read_probs(path, data.ids("train"), data.label_names, "rerun `kagglemlc train`")
    at_half = untuned(data.task, len(data.label_names))
    cuts = read_thresholds(cfg.run_dir, data.label_names) if tuned else at_half
    hard = apply_cuts(probs, data.task, cuts).astype(np.int64)
    y = data.y.astype(np.int64)
    tp, predicted, support = (hard * y).sum(axis=0), hard.sum(axis=0), y.sum(axis=0)
    f1 = f1_counts(tp, predicted, support)
    rows = []
    for j, name in enumerate(data.label_names):
        rows.append(
            {
                "label": name,
                "threshold": float(cuts[j]),
                "precision": float(tp[j] / predicted[j]) if predicted[j] else 0.0,
                "recall": float(tp[j] / support[j]) if support[j] else 0.0,
                "f1": float(f1[j]),
                "support": int(support[j]),
                "predicted": int(predicted[j]),
                "frequency": float(support[j] / len(y)),
            }
        )
    return rows, _finite(evaluate(data.y, probs, data.task, cfg.competition.metric, at_half))


def _folds(cfg: Config) -> dict[str, Any]:
    """Size, time and memory from the folds' metrics.json (folds not trained yet are skipped)."""
    found = [m for k in range(cfg.cv.folds) if (m := _read_json(fold_dir(cfg.run_dir, k) / METRICS_FILE)) is not None]
    memory = [m.get("peak_memory_mb") or {} for m in found]

    def largest(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return max(values) if values else None

    def answers(split: str) -> dict[str, int] | None:
        """Generative models: parse failures summed over the folds' answers (None for classifiers)."""
        parts = [a for m in found if (a := (m.get("answers") or {}).get(split))]
        if not parts:
            return None
        return {key: sum(a[key] for a in parts) for key in ("rows", "parse_failures", "unknown_words")}

    speeds = [m["samples_per_second"] for m in found if m.get("samples_per_second") is not None]
    seconds = [m["wall_seconds"] for m in found if m.get("wall_seconds") is not None]
    return {
        "folds_trained": len(found),
        "folds": cfg.cv.folds,
        "fold_best_metrics": [_finite(m.get("best_metric")) for m in found],
        "trainable_params": largest([m.get("trainable_params") for m in found]),
        "total_params": largest([m.get("total_params") for m in found]),
        "train_seconds": round(sum(seconds), 2) if seconds else None,
        "samples_per_second": round(float(np.mean(speeds)), 2) if speeds else None,
        "peak_memory_mb": {
            "cpu_rss": largest([m.get("cpu_rss") for m in memory]),
            "gpu_max_allocated": largest([m.get("gpu_max_allocated") for m in memory]),
        },
        "answers": {"oof": answers("oof"), "test": answers("test")} if answers("oof") or answers("test") else None,
    }


def _public_score(cfg: Config) -> float | None:
    """The latest public score logged for this experiment (`submit --refresh-scores` fills them)."""
    assert cfg.submission.dir is not None
    log = read_log(cfg.submission.dir)
    scored = log[(log["experiment"] == cfg.name) & (log["public_score"] != "")]
    if scored.empty:
        return None
    try:
        return _finite(scored["public_score"].iloc[-1])
    except ValueError:
        return None


def experiment_summary(cfg: Config) -> dict[str, Any]:
    """Everything the report shows about one experiment, as plain data (JSON-ready)."""
    data = load_competition(cfg.competition, with_test=False)
    tuned = _read_json(cfg.run_dir / THRESHOLDS_FILE)
    labels, cv_untuned = _labels(cfg, data, tuned)
    tuned = tuned or {}
    return {
        "name": cfg.name,
        "output_dir": str(cfg.run_dir),
        "task": data.task,
        "metric": cfg.competition.metric,
        "model": cfg.model.name,
        "adapter": cfg.adapter.method,
        "threshold_strategy": tuned.get("strategy"),
        "cv": {
            "at_0.5": _finite(tuned.get("cv_at_0.5", cv_untuned)),
            "tuned": _finite(tuned.get("cv_tuned")),
            "nested": _finite(tuned.get("cv_nested")),
        },
        "public_score": _public_score(cfg),
        **_folds(cfg),
        "labels": labels,
    }


# ---- plots ---------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_label_f1(experiments: list[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars: each label's OOF F1, one bar per experiment."""
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
    return _save(fig, path)


def plot_label_frequency(experiment: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: share of training rows carrying each label."""
    rows = experiment["labels"]
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ax.barh([r["label"] for r in rows], [100 * r["frequency"] for r in rows], color="tab:gray")
    for k, r in enumerate(rows):
        ax.annotate(f" {r['support']:,}", (100 * r["frequency"], k), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of training rows (count at the bar's end)")
    return _save(fig, path)


def plot_cv_vs_public(experiments: list[dict[str, Any]], path: Path) -> Path:
    """Scatter of each experiment's tuned CV against its public leaderboard score."""
    points = [(e["name"], e["cv"]["tuned"] or e["cv"]["at_0.5"], e["public_score"]) for e in experiments]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    ax.scatter(xs, ys)
    for name, x, y in points:
        ax.annotate(f" {name}", (x, y), fontsize=8)
    low, high = min(xs + ys), max(xs + ys)
    pad = max(high - low, 0.01) * 0.1
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="lightgray", linestyle="--", label="CV = public")
    ax.set_xlabel("CV (tuned thresholds)")
    ax.set_ylabel("public leaderboard score")
    ax.legend(loc="upper left")
    return _save(fig, path)


def _plots(experiments: list[dict[str, Any]], folder: Path, stem: str) -> dict[str, Path]:
    plots = {}
    if any(e["labels"] for e in experiments):
        plots["Per-label F1"] = plot_label_f1(experiments, folder / f"{stem}-f1.png")
        first = next(e for e in experiments if e["labels"])
        plots["Label frequency"] = plot_label_frequency(first, folder / f"{stem}-labels.png")
    if any(e["public_score"] is not None and (e["cv"]["tuned"] or e["cv"]["at_0.5"]) is not None for e in experiments):
        plots["CV vs public score"] = plot_cv_vs_public(experiments, folder / f"{stem}-cv-public.png")
    return plots


# ---- markdown ------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _megabytes(mb: float | None) -> str:
    return "—" if mb is None else f"{mb:,.0f} MB"


def _count(n: float | None) -> str:
    if n is None:
        return "—"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(line) + " |" for line in (header, rule, *rows)]


def render_markdown(result: dict[str, Any], plots: dict[str, Path], folder: Path) -> str:
    """The report page: a table of experiments, then each experiment's per-label table, then the plots."""
    experiments = result["experiments"]
    lines = [f"# Report: {', '.join(e['name'] for e in experiments)}", "", f"Generated {result['generated_at']}.", ""]
    lines += ["## Experiments", ""]
    header = [
        "experiment",
        "metric",
        "CV @0.5",
        "CV tuned",
        "CV nested",
        "public",
        "model",
        "adapter",
        "trainable / total params",
        "train time",
        "samples/s",
        "peak CPU RSS",
        "peak GPU",
        "folds",
    ]
    rows = []
    for e in experiments:
        memory = e["peak_memory_mb"]
        rows.append(
            [
                e["name"],
                e["metric"],
                _fmt(e["cv"]["at_0.5"]),
                _fmt(e["cv"]["tuned"]),
                _fmt(e["cv"]["nested"]),
                _fmt(e["public_score"]),
                e["model"],
                e["adapter"],
                f"{_count(e['trainable_params'])} / {_count(e['total_params'])}",
                _duration(e["train_seconds"]),
                _fmt(e["samples_per_second"], ",.1f"),
                _megabytes(memory["cpu_rss"]),
                _megabytes(memory["gpu_max_allocated"]),
                f"{e['folds_trained']}/{e['folds']}",
            ]
        )
    lines += _table(header, rows, "ll" + "r" * 4 + "ll" + "r" * 6) + [""]
    for e in experiments:
        lines += [f"## {e['name']}: per label", ""]
        if not e["labels"]:
            lines += [f"No {OOF_FILE} in {e['output_dir']} yet: run `kagglemlc train`.", ""]
            continue
        cut = "bias" if e["task"] == "multiclass" else "threshold"
        decided = "tuned " + cut + "s" if e["cv"]["tuned"] is not None else "untuned " + cut + "s (no thresholds.json)"
        note = " (a probability metric: the cut only affects label submissions)" if e["metric"] in PROB_METRICS else ""
        lines += [f"Out-of-fold predictions decided with the {decided}{note}.", ""]
        header = ["label", cut, "precision", "recall", "F1", "support", "predicted"]
        rows = [
            [
                r["label"],
                f"{r['threshold']:.3f}",
                f"{r['precision']:.3f}",
                f"{r['recall']:.3f}",
                f"{r['f1']:.3f}",
                f"{r['support']:,}",
                f"{r['predicted']:,}",
            ]
            for r in e["labels"]
        ]
        lines += _table(header, rows, "l" + "r" * 6) + [""]
        best = [b for b in e["fold_best_metrics"] if b is not None]
        if best:
            lines += [f"Best validation {e['metric']} per fold: {', '.join(f'{b:.4f}' for b in best)}.", ""]
        for split, parsed in (e.get("answers") or {}).items():
            if parsed:
                rate = parsed["parse_failures"] / max(parsed["rows"], 1)
                lines += [
                    f"Generated answers ({split}): {parsed['parse_failures']:,} of {parsed['rows']:,} could not be "
                    f"parsed ({rate:.1%}); {parsed['unknown_words']:,} unknown words ignored.",
                    "",
                ]
    for title, path in plots.items():
        lines += [f"## {title}", "", f"![{title}]({path.relative_to(folder).as_posix()})", ""]
    return "\n".join(lines)


# ---- the stage -----------------------------------------------------------------------------------


def report(
    config_paths: Sequence[str | Path | None], as_json: bool = False, output: str | Path | None = None
) -> Path | dict[str, Any]:
    """Summarises one or more experiments.

    Args:
        config_paths: each experiment's YAML or resolved `<output_dir>/config.yaml` (None: ./kagglemlc.yaml).
        as_json: return the numbers as a JSON-ready dict and write nothing.
        output: the markdown file to write; default `<first experiment's output_dir>/report.md`.
            The PNG plots are written next to it.

    Returns:
        The report's path, or the dict with `as_json`.

    Raises:
        KaggleMLCError: a config or competition file that cannot be loaded, an oof.parquet that does not match.
    """
    cfgs: list[Config] = [load_config(p) for p in (config_paths or [None])]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result = {"generated_at": now, "experiments": [experiment_summary(cfg) for cfg in cfgs]}
    if as_json:
        return result
    path = Path(output) if output is not None else cfgs[0].run_dir / REPORT_FILE
    folder = path.parent.resolve()
    plots = _plots(result["experiments"], folder, path.stem)
    write_text(path, render_markdown(result, plots, folder))
    info(f"report of {len(cfgs)} experiment(s), {len(plots)} plot(s) → {path}")
    return path
