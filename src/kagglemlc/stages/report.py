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
    FULL_DIR,
    METRICS_FILE,
    OOF_FILE,
    REPORT_FILE,
    REPORT_HTML,
    THRESHOLDS_FILE,
    ZERO_SHOT_DIR,
    fold_dir,
)
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.submissions import read_log
from kagglemlc.data.thresholds import read_thresholds
from kagglemlc.scoring.cuts import apply_cuts, evaluate, fit_cuts, untuned
from kagglemlc.scoring.metrics import f1_counts, score
from kagglemlc.tasks.answers import answers_cv
from kagglemlc.views.formats import number
from kagglemlc.views.html import write_html
from kagglemlc.views.report_page import draw_plots, render_markdown, report_sections

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
    """The OOF probabilities (None before training, and for task span: its CV is thresholds.json's)."""
    path = cfg.run_dir / OOF_FILE
    if data.task == "span":
        return None
    return read_probs(path, data.ids("train"), data.label_names, "rerun `kagglemlc train`") if path.is_file() else None


def _labels(
    cfg: Config, data: CompetitionData, tuned: dict | None, probs: np.ndarray | None
) -> tuple[list[dict[str, Any]], float | None]:
    """Per-label precision/recall/F1 of the OOF decided with the tuned cuts, and the untuned CV."""
    if probs is None:
        return [], None
    at_half = untuned(data.task, len(data.label_names))
    if data.task == "regression":  # no labels to decide: the CV of the scores (qwk: rounded)
        return [], number(evaluate(data.y, probs, data.task, cfg.competition.metric, at_half))
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


def _seeds(cfg: Config, data: CompetitionData) -> list[dict[str, Any]] | None:
    """With `train.seeds`: each seed's CV (its models' out-of-fold probabilities pooled over the folds, at 0.5 and
    with thresholds tuned as `tune-thresholds` tunes them); None without seeds or before every fold is trained."""
    if cfg.train.seeds is None:
        return None
    th, ids = cfg.thresholds, data.train_ids
    fold = fold_of_rows(cfg.run_dir, ids)
    rows = []
    for seed in cfg.train.seeds:
        paths = [fold_dir(cfg.run_dir, k) / f"seed{seed}" / OOF_FILE for k in range(cfg.cv.folds)]
        if not all(p.is_file() for p in paths):
            return None
        probs = np.empty(data.y.shape, dtype=np.float32)
        for k, path in enumerate(paths):
            probs[fold == k] = read_probs(path, ids[fold == k], data.label_names, "rerun `kagglemlc train`")
        at_half = evaluate(data.y, probs, data.task, cfg.competition.metric, untuned(data.task, data.y.shape[1]))
        tuned = fit_cuts(data.y, probs, data.task, cfg.competition.metric, th.strategy, th.value, th.multiclass_bias)
        rows.append({"seed": seed, "at_0.5": number(at_half), "tuned": number(tuned[1])})
    return rows


def _full_fit(cfg: Config) -> dict[str, Any] | None:
    """The full fit's rows, steps and how they were chosen (full/metrics.json); None without one."""
    metrics = _read_json(cfg.run_dir / FULL_DIR / METRICS_FILE)
    if metrics is None:
        return None
    keys = ("train_rows", "steps", "chosen", "wall_seconds")
    return {key: metrics.get(key) for key in keys} | {"submission_use": cfg.submission.use}


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
        # generative: the parsed answers' CV, what submission.from: answers submits
        "cv_answers": number(answers_cv(cfg.run_dir, cfg.cv.folds, data, cfg.competition.metric))
        if cfg.model.kind == "generative" and probs is not None
        else None,
        "submission_from": cfg.submission.from_,
        "public_score": _public_score(cfg),
        **_folds(cfg, list(_fold_metrics(cfg).values())),
        "labels": labels,
        "seeds": _seeds(cfg, data),
        "full_fit": _full_fit(cfg),
    }
    return summary | {"zero_shot": _zero_shot(cfg, data, probs, summary)}


# ---- tables (report.md and report.html) ----------------------------------------------------------


# ---- pictures ------------------------------------------------------------------------------------


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
    plots = draw_plots(result["experiments"], scored_submissions(cfgs, result["experiments"]), folder, path.stem)
    write_text(path, render_markdown(result, plots, folder))
    title = f"Report: {', '.join(e['name'] for e in result['experiments'])}"
    histories = [{f"fold {k}": m.get("history") or [] for k, m in _fold_metrics(cfg).items()} for cfg in cfgs]
    sections = report_sections(result, histories, plots, folder, path.stem)
    page = write_html(path.with_suffix(Path(REPORT_HTML).suffix), title, sections)
    info(f"report of {len(cfgs)} experiment(s), {len(plots)} plot(s) → {path} and {page.name}")
    return path
