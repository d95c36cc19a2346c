"""Experiments side by side: CV untuned / tuned / nested, per-label P/R/F1, size, time, memory, public score.

    kagglemlc report configs/minilm.yaml configs/deberta.yaml    # → runs/minilm/report.md, report.html, report-*.png
    kagglemlc report configs/minilm.yaml --json                   # the same numbers as JSON on stdout

    data = report(["configs/demo.yaml"], as_json=True)
    data["experiments"][0]["labels"][0]    # {'label': 'admiration', 'threshold': 0.31, 'precision': ..., 'f1': ...}

Everything is read from the experiments' files: thresholds.json, oof.parquet, fold{k}/metrics.json,
zero-shot/metrics.json and submissions/log.csv (public scores). A missing file leaves its cells empty, so a
report works at any stage. Per-label numbers are the OOF predictions decided with the tuned thresholds, i.e.
what the submission does. report.html (beside report.md, one self-contained page) has report.md's tables and
more pictures: every fold's learning curves, per-label P/R/F1, CV vs public score per submission, zero-shot vs
fine-tuned, the experiments' bars side by side (drawn by `kagglemlc.views`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kagglemlc.config import Config, load_config
from kagglemlc.core.console import info, warn
from kagglemlc.core.files import write_text
from kagglemlc.core.paths import (
    METRICS_FILE,
    OOF_FILE,
    REPORT_FILE,
    REPORT_HTML,
    THRESHOLDS_FILE,
    ZERO_SHOT_DIR,
    fold_dir,
)
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.submissions import read_log
from kagglemlc.data.thresholds import read_thresholds
from kagglemlc.scoring.cuts import apply_cuts, evaluate, untuned
from kagglemlc.scoring.metrics import PROB_METRICS, f1_counts, score
from kagglemlc.views.compare import Panel, method_bars, method_panels
from kagglemlc.views.experiment import cv_vs_public, label_f1, label_frequency, label_scores, learning_curves
from kagglemlc.views.formats import count, duration, fmt, megabytes, number, percent
from kagglemlc.views.html import Section, write_html

# ---- collecting ----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        warn(f"{path}: not valid JSON; left out of the report")
        return None


def _oof(cfg: Config, data: CompetitionData) -> np.ndarray | None:
    path = cfg.run_dir / OOF_FILE
    return read_probs(path, data.ids("train"), data.label_names, "rerun `kagglemlc train`") if path.is_file() else None


def _labels(
    cfg: Config, data: CompetitionData, tuned: dict | None, probs: np.ndarray | None
) -> tuple[list[dict[str, Any]], float | None]:
    """Per-label precision/recall/F1 of the OOF decided with the tuned cuts, and the untuned CV."""
    if probs is None:
        return [], None
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
    return rows, number(evaluate(data.y, probs, data.task, cfg.competition.metric, at_half))


def _fold_metrics(cfg: Config) -> dict[int, dict[str, Any]]:
    """The trained folds' metrics.json (a fold still training has none)."""
    found = {k: _read_json(fold_dir(cfg.run_dir, k) / METRICS_FILE) for k in range(cfg.cv.folds)}
    return {k: m for k, m in found.items() if m is not None}


def _folds(cfg: Config, found: list[dict[str, Any]]) -> dict[str, Any]:
    """Size, time and memory from the folds' metrics.json."""
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
        "fold_best_metrics": [number(m.get("best_metric")) for m in found],
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


def _zero_shot(cfg: Config, data: CompetitionData, probs: np.ndarray | None, summary: dict) -> dict | None:
    """zero-shot/metrics.json beside the fine-tuned experiment: its CV (tuned, else at 0.5), the parse failures of
    its out-of-fold answers and the ROC AUC of its out-of-fold probabilities. None without a zero-shot result."""
    zero = _read_json(cfg.run_dir / ZERO_SHOT_DIR / METRICS_FILE)
    if zero is None:
        return None
    keys = ("metric", "parse_failure_rate", "probability_roc_auc")
    oof = (summary["answers"] or {}).get("oof")
    cv = summary["cv"]["tuned"] if summary["cv"]["tuned"] is not None else summary["cv"]["at_0.5"]
    return {
        "zero_shot": {"rows": zero.get("rows"), **{key: number(zero.get(key)) for key in keys}},
        "fine_tuned": {
            "metric": cv,
            "parse_failure_rate": oof["parse_failures"] / max(oof["rows"], 1) if oof else None,
            "probability_roc_auc": None if probs is None else number(score("roc_auc", data.y, probs, data.task)),
        },
    }


def _public_score(cfg: Config) -> float | None:
    """The latest public score logged for this experiment (`submit --refresh-scores` fills them)."""
    assert cfg.submission.dir is not None
    log = read_log(cfg.submission.dir)
    scored = log[(log["experiment"] == cfg.name) & (log["public_score"] != "")]
    return None if scored.empty else number(scored["public_score"].iloc[-1])


def scored_submissions(cfgs: Sequence[Config], experiments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every logged submission of these experiments with a public score: experiment, CV when it was submitted (the
    experiment's CV now when the log has none) and public score."""
    points, seen = [], set()
    for cfg, exp in zip(cfgs, experiments, strict=True):
        if cfg.name in seen:
            continue
        seen.add(cfg.name)
        assert cfg.submission.dir is not None
        log = read_log(cfg.submission.dir)
        now = exp["cv"]["tuned"] if exp["cv"]["tuned"] is not None else exp["cv"]["at_0.5"]
        for cv, public in log.loc[log["experiment"] == cfg.name, ["cv", "public_score"]].itertuples(index=False):
            cv = number(cv) if number(cv) is not None else now
            if cv is not None and number(public) is not None:
                points.append({"experiment": cfg.name, "cv": cv, "public": number(public)})
    return points


def experiment_summary(cfg: Config) -> dict[str, Any]:
    """Everything the report's tables show about one experiment, as plain data (JSON-ready)."""
    data = load_competition(cfg.competition, with_test=False)
    tuned = _read_json(cfg.run_dir / THRESHOLDS_FILE)
    probs = _oof(cfg, data)
    labels, cv_untuned = _labels(cfg, data, tuned, probs)
    tuned = tuned or {}
    summary = {
        "name": cfg.name,
        "output_dir": str(cfg.run_dir),
        "task": data.task,
        "metric": cfg.competition.metric,
        "model": cfg.model.name,
        "adapter": cfg.adapter.method,
        "threshold_strategy": tuned.get("strategy"),
        "cv": {
            "at_0.5": number(tuned.get("cv_at_0.5", cv_untuned)),
            "tuned": number(tuned.get("cv_tuned")),
            "nested": number(tuned.get("cv_nested")),
        },
        "public_score": _public_score(cfg),
        **_folds(cfg, list(_fold_metrics(cfg).values())),
        "labels": labels,
    }
    return summary | {"zero_shot": _zero_shot(cfg, data, probs, summary)}


# ---- tables (report.md and report.html) ----------------------------------------------------------


def _experiment_rows(experiments: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for e in experiments:
        memory = e["peak_memory_mb"]
        rows.append(
            {
                "experiment": e["name"],
                "metric": e["metric"],
                "CV @0.5": fmt(e["cv"]["at_0.5"]),
                "CV tuned": fmt(e["cv"]["tuned"]),
                "CV nested": fmt(e["cv"]["nested"]),
                "public": fmt(e["public_score"]),
                "model": e["model"],
                "adapter": e["adapter"],
                "trainable / total params": f"{count(e['trainable_params'])} / {count(e['total_params'])}",
                "train time": duration(e["train_seconds"]),
                "samples/s": fmt(e["samples_per_second"], ",.1f"),
                "peak CPU RSS": megabytes(memory["cpu_rss"]),
                "peak GPU": megabytes(memory["gpu_max_allocated"]),
                "folds": f"{e['folds_trained']}/{e['folds']}",
            }
        )
    return rows


def _cut(e: dict[str, Any]) -> str:
    return "bias" if e["task"] == "multiclass" else "threshold"


def _label_rows(e: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "label": r["label"],
            _cut(e): f"{r['threshold']:.3f}",
            "precision": f"{r['precision']:.3f}",
            "recall": f"{r['recall']:.3f}",
            "F1": f"{r['f1']:.3f}",
            "support": f"{r['support']:,}",
            "predicted": f"{r['predicted']:,}",
        }
        for r in e["labels"]
    ]


def _notes(e: dict[str, Any]) -> list[str]:
    """The paragraphs under an experiment's per-label table."""
    if not e["labels"]:
        return [f"No {OOF_FILE} in {e['output_dir']} yet: run `kagglemlc train`."]
    cut = _cut(e)
    decided = "tuned " + cut + "s" if e["cv"]["tuned"] is not None else "untuned " + cut + "s (no thresholds.json)"
    note = " (a probability metric: the cut only affects label submissions)" if e["metric"] in PROB_METRICS else ""
    notes = [f"Out-of-fold predictions decided with the {decided}{note}."]
    best = [b for b in e["fold_best_metrics"] if b is not None]
    if best:
        notes.append(f"Best validation {e['metric']} per fold: {', '.join(f'{b:.4f}' for b in best)}.")
    for split, parsed in (e.get("answers") or {}).items():
        if parsed:
            rate = parsed["parse_failures"] / max(parsed["rows"], 1)
            notes.append(
                f"Generated answers ({split}): {parsed['parse_failures']:,} of {parsed['rows']:,} could not be "
                f"parsed ({rate:.1%}); {parsed['unknown_words']:,} unknown words ignored."
            )
    return notes


def _markdown_table(rows: list[dict[str, str]], align: str) -> list[str]:
    """A markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(line) + " |" for line in (list(rows[0]), rule, *(list(r.values()) for r in rows))]


def render_markdown(result: dict[str, Any], plots: dict[str, Path], folder: Path) -> str:
    """The report page: a table of experiments, then each experiment's per-label table, then the plots."""
    experiments = result["experiments"]
    lines = [f"# Report: {', '.join(e['name'] for e in experiments)}", "", f"Generated {result['generated_at']}.", ""]
    lines += ["## Experiments", ""]
    lines += _markdown_table(_experiment_rows(experiments), "ll" + "r" * 4 + "ll" + "r" * 6) + [""]
    for e in experiments:
        lines += [f"## {e['name']}: per label", ""]
        notes = _notes(e)
        if e["labels"]:
            lines += [notes[0], ""] + _markdown_table(_label_rows(e), "l" + "r" * 6) + [""]
            notes = notes[1:]
        for note in notes:
            lines += [note, ""]
    for title, path in plots.items():
        lines += [f"## {title}", "", f"![{title}]({path.relative_to(folder).as_posix()})", ""]
    return "\n".join(lines)


# ---- pictures ------------------------------------------------------------------------------------


def _plots(
    experiments: list[dict[str, Any]], submissions: list[dict[str, Any]], folder: Path, stem: str
) -> dict[str, Path]:
    """report.md's plots (report.html shows them too)."""
    plots = {}
    if any(e["labels"] for e in experiments):
        plots["Per-label F1"] = label_f1(experiments, folder / f"{stem}-f1.png")
        first = next(e for e in experiments if e["labels"])
        plots["Label frequency"] = label_frequency(first["labels"], folder / f"{stem}-labels.png")
    if submissions:
        plots["CV vs public score"] = cv_vs_public(submissions, folder / f"{stem}-cv-public.png")
    return plots


def _side_by_side(experiments: list[dict[str, Any]], path: Path) -> Path:
    """The experiments' CV, public score, trainable parameters, train time and peak memory as bars."""
    rows = [
        {
            "experiment": e["name"],
            "@0.5": e["cv"]["at_0.5"],
            "tuned": e["cv"]["tuned"],
            "nested": e["cv"]["nested"],
            "public": e["public_score"],
            "trainable_params": e["trainable_params"],
            "train_seconds": e["train_seconds"],
            "peak_gpu_mb": e["peak_memory_mb"]["gpu_max_allocated"],
            "peak_cpu_mb": e["peak_memory_mb"]["cpu_rss"],
        }
        for e in experiments
    ]
    metrics = {e["metric"] for e in experiments}
    cv = Panel(f"CV {next(iter(metrics))}" if len(metrics) == 1 else "CV", ("@0.5", "tuned", "nested", "public"))
    return method_bars(rows, path, method="experiment", panels=(cv, *method_panels()[1:]))


def _zero_shot_section(e: dict[str, Any], path: Path) -> Section:
    both = e["zero_shot"]
    rows = [{"model": "zero-shot", **both["zero_shot"]}, {"model": "fine-tuned", **both["fine_tuned"]}]
    panels = (
        Panel(e["metric"], ("metric",)),
        Panel("parse failures", ("parse_failure_rate",), text=percent),
        Panel("probability ROC AUC", ("probability_roc_auc",)),
    )
    table = [
        {
            "": f"{r['model']} ({'parsed answers' if r['model'] == 'zero-shot' else 'CV'})",
            e["metric"]: fmt(r["metric"]),
            "parse failures": percent(r["parse_failure_rate"]),
            "probability ROC AUC": fmt(r["probability_roc_auc"]),
        }
        for r in rows
    ]
    rows_seen = both["zero_shot"]["rows"]
    text = (
        f"Zero-shot: the untrained model's parsed answers on {rows_seen:,} training rows (`kagglemlc zero-shot`). "
        if isinstance(rows_seen, int)
        else "Zero-shot: the untrained model's parsed answers (`kagglemlc zero-shot`). "
    ) + "Fine-tuned: this experiment's CV, its out-of-fold answers and probabilities."
    images = [method_bars(rows, path, method="model", panels=panels)]
    return Section(f"{e['name']}: zero-shot vs fine-tuned", paragraphs=[text], images=images, tables=[table])


def _sections(
    cfgs: Sequence[Config], result: dict[str, Any], plots: dict[str, Path], folder: Path, stem: str
) -> list[Section]:
    """report.html: report.md's tables and plots, each experiment's learning curves and P/R/F1 bars, zero-shot vs
    fine-tuned where a zero-shot result exists, and the experiments' bars side by side when there are several."""
    experiments = result["experiments"]
    side = [_side_by_side(experiments, folder / f"{stem}-experiments.png")] if len(experiments) > 1 else []
    generated = f"Generated {result['generated_at']}."
    sections = [Section("Experiments", paragraphs=[generated], images=side, tables=[_experiment_rows(experiments)])]
    if "CV vs public score" in plots:
        about = "One point per scored submission: the CV logged when it was submitted against its public score."
        sections.append(Section("CV vs public score", paragraphs=[about], images=[plots["CV vs public score"]]))
    if sum(bool(e["labels"]) for e in experiments) > 1:
        sections.append(Section("Per-label F1", images=[plots["Per-label F1"]]))
    if "Label frequency" in plots:
        sections.append(Section("Label frequency", images=[plots["Label frequency"]]))
    for i, (cfg, e) in enumerate(zip(cfgs, experiments, strict=True), 1):
        images = []
        if e["labels"]:
            images.append(label_scores(e["labels"], folder / f"{stem}-{i}-prf.png", title=f"{e['name']}: per label"))
        histories = {f"fold {k}": m.get("history") or [] for k, m in _fold_metrics(cfg).items()}
        if any(histories.values()):
            curves = folder / f"{stem}-{i}-curves.png"
            images.append(learning_curves(histories, curves, metric_name=e["metric"], title=f"{e['name']}: folds"))
        tables = [_label_rows(e)] if e["labels"] else []
        sections.append(Section(e["name"], paragraphs=_notes(e), images=images, tables=tables))
        if e["zero_shot"]:
            sections.append(_zero_shot_section(e, folder / f"{stem}-{i}-zero-shot.png"))
    return sections


# ---- the stage -----------------------------------------------------------------------------------


def report(
    config_paths: Sequence[str | Path | None], as_json: bool = False, output: str | Path | None = None
) -> Path | dict[str, Any]:
    """Summarises one or more experiments.

    Args:
        config_paths: each experiment's YAML or resolved `<output_dir>/config.yaml` (None: ./kagglemlc.yaml).
        as_json: return the numbers as a JSON-ready dict and write nothing.
        output: the markdown file to write; default `<first experiment's output_dir>/report.md`.
            The HTML page (same name, .html) and the PNG pictures are written next to it.

    Returns:
        The markdown report's path, or the dict with `as_json`.

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
    plots = _plots(result["experiments"], scored_submissions(cfgs, result["experiments"]), folder, path.stem)
    write_text(path, render_markdown(result, plots, folder))
    title = f"Report: {', '.join(e['name'] for e in result['experiments'])}"
    sections = _sections(cfgs, result, plots, folder, path.stem)
    page = write_html(path.with_suffix(Path(REPORT_HTML).suffix), title, sections)
    info(f"report of {len(cfgs)} experiment(s), {len(plots)} plot(s) → {path} and {page.name}")
    return path
