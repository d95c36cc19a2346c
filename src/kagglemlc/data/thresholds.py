"""thresholds.json: the decision tuned on an experiment's OOF (`scoring.nested.cut_report` with the experiment's
settings, and a fingerprint of what it was tuned on), written and read here.

    write_thresholds(cfg, threshold_report(cfg, data, oof, fold))      # → <output_dir>/thresholds.json
    cuts = read_thresholds(cfg.run_dir, data.label_names)              # thresholds, or the multiclass bias
    tuned = json.loads((run_dir / THRESHOLDS_FILE).read_text())
    tuned["cv_at_0.5"], tuned["cv_tuned"], tuned["cv_nested"]          # before, after, honest estimate
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_json
from kagglemlc.core.paths import THRESHOLDS_FILE
from kagglemlc.data.competition import CompetitionData
from kagglemlc.scoring.cuts import evaluate, fit_cuts, untuned
from kagglemlc.scoring.metrics import PROB_METRICS
from kagglemlc.scoring.nested import cut_report


def tuning(cfg: Config) -> dict[str, Any]:
    """`fit_cuts`' strategy, value and tune_bias from the config's `thresholds` section."""
    th = cfg.thresholds
    return {"strategy": th.strategy, "value": th.value, "tune_bias": th.multiclass_bias}


def fingerprint(cfg: Config, data: CompetitionData, probs: np.ndarray) -> str:
    """sha256 of what `cv_at_0.5` and `cv_tuned` depend on: the OOF probabilities, the truth and the settings."""
    settings = [data.task, cfg.competition.metric, tuning(cfg), probs.shape, str(probs.dtype), str(data.y.dtype)]
    digest = hashlib.sha256(json.dumps(settings).encode())
    digest.update(np.ascontiguousarray(probs.T))  # label-major: no copy for what `read_probs` returns
    digest.update(np.ascontiguousarray(data.y))
    return digest.hexdigest()


def threshold_report(cfg: Config, data: CompetitionData, probs: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """What thresholds.json holds for OOF `probs` (rows in `data.train_ids` order, `fold` of each row)."""
    report = cut_report(data.y, probs, fold, data.label_names, data.task, cfg.competition.metric, **tuning(cfg))
    return {**report, "fingerprint": fingerprint(cfg, data, probs)}


def cv_before_after(cfg: Config, data: CompetitionData, probs: np.ndarray, run_dir: Path) -> tuple[float, float]:
    """(CV at 0.5, CV tuned) of OOF `probs` for `cfg`'s metric and tuning settings.

    Taken from `run_dir`'s thresholds.json when it was tuned on these very probabilities, truth and
    settings (its fingerprint matches), else computed.
    """
    path = run_dir / THRESHOLDS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint(cfg, data, probs):
            return float(saved["cv_at_0.5"]), float(saved["cv_tuned"])
    metric = cfg.competition.metric
    cuts, _ = fit_cuts(data.y, probs, data.task, metric, **tuning(cfg))
    at_half = untuned(data.task, len(data.label_names))
    return evaluate(data.y, probs, data.task, metric, at_half), evaluate(data.y, probs, data.task, metric, cuts)


def write_thresholds(cfg: Config, report: dict[str, Any]) -> Path:
    """Writes `threshold_report`'s result to `<output_dir>/thresholds.json` and says what tuning gained."""
    path = write_json(cfg.run_dir / THRESHOLDS_FILE, report)
    metric = report["metric"]
    if report.get("note"):
        info(f"{report['note']}; CV {report['cv_tuned']:.4f} → {path}")
    elif metric in PROB_METRICS:
        cv = report["cv_tuned"]
        info(f"{metric} scores probabilities, so thresholds cannot change it: 0.5 written; CV {cv:.4f} → {path}")
    else:
        info(
            f"thresholds ({report['strategy']}, {metric}): CV {report['cv_at_0.5']:.4f} untuned → "
            f"{report['cv_tuned']:.4f} tuned, {report['cv_nested']:.4f} nested (tuned on the other folds) → {path}"
        )
    return path


def read_thresholds(run_dir: Path, label_names: list[str]) -> np.ndarray:
    """The tuned cuts of thresholds.json in label order: thresholds, or the bias for multiclass."""
    path = run_dir / THRESHOLDS_FILE
    if not path.is_file():
        raise KaggleMLCError(f"{path} not found; run `kagglemlc tune-thresholds` first")
    tuned = json.loads(path.read_text(encoding="utf-8"))
    if tuned["task"] == "regression":  # qwk's grade cuts, or none
        return np.array(tuned.get("grade_cuts", []), dtype=np.float64)
    key = "bias" if tuned["task"] == "multiclass" else "thresholds"
    values = tuned[key]
    missing = [n for n in label_names if n not in values]
    if missing:
        raise KaggleMLCError(f"{path}: no {key} for label '{missing[0]}'; rerun `kagglemlc tune-thresholds`")
    return np.array([values[n] for n in label_names], dtype=np.float64)


def tuned_cv(run_dir: Path) -> float | None:
    """thresholds.json's `cv_tuned`, or None before `tune-thresholds` has run."""
    path = run_dir / THRESHOLDS_FILE
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("cv_tuned")
    return None if value is None else float(value)
