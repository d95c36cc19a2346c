"""The `tune-thresholds` command: decision thresholds tuned on the out-of-fold probabilities, for the competition
metric.

    kagglemlc tune-thresholds configs/demo.yaml      # oof.parquet → thresholds.json

    tuned = json.loads((run_dir / "thresholds.json").read_text())
    tuned["cv_at_0.5"], tuned["cv_tuned"], tuned["cv_nested"]   # before, after, honest estimate

The searches (exact over every distinct OOF score) are `scoring.cuts`; the nested estimate (tuned on K−1
folds, scored on the held-out one) is `scoring.nested`; the file is `data.thresholds`.
"""

from __future__ import annotations

from pathlib import Path

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.files import write_json
from kagglemlc.core.paths import OOF_FILE, THRESHOLDS_FILE
from kagglemlc.data.competition import CompetitionData, cached_competition
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.spans import answer_texts, read_spans
from kagglemlc.data.thresholds import threshold_report, write_thresholds
from kagglemlc.scoring.spans import span_cv


def tune_thresholds(cfg: Config, data: CompetitionData | None = None) -> Path:
    """Tunes thresholds on `oof.parquet` and writes `thresholds.json` (with CV before, after and nested).

    Args:
        cfg: the experiment config (`thresholds.strategy`, `.value`, `.multiclass_bias`, `competition.metric`).
        data: the competition when the caller has loaded it already; default: loaded here (through the
            experiment's competition cache).

    Returns:
        The path of thresholds.json.

    Raises:
        KaggleMLCError: oof.parquet or folds.parquet missing or not matching the training file.
    """
    span = cfg.competition.task == "span"
    if data is None:
        with cached_competition(cfg.competition, cfg.run_dir, with_test=False, texts=span) as data:
            return tune_thresholds(cfg, data)
    if span:
        return write_json(cfg.run_dir / THRESHOLDS_FILE, span_cv_file(cfg, data))
    ids = data.ids("train")
    probs = read_probs(cfg.run_dir / OOF_FILE, ids, data.label_names, "run `kagglemlc train` first", unique=True)
    return write_thresholds(cfg, threshold_report(cfg, data, probs, fold_of_rows(cfg.run_dir, ids)))


def span_cv_file(cfg: Config, data: CompetitionData) -> dict:
    """task span has nothing to tune: thresholds.json records the CV of the decoded out-of-fold spans."""
    frame, _ = read_spans(cfg.run_dir / OOF_FILE, data.train_ids)
    fold = fold_of_rows(cfg.run_dir, data.ids("train"))
    report = span_cv(cfg.competition.metric, frame["text"].tolist(), answer_texts(data), fold, cfg.cv.folds)
    folds = ", ".join(f"{v:.4f}" for v in report["per_fold"])
    info(f"{report['metric']} of the out-of-fold spans: {report['cv_tuned']:.4f} (folds: {folds})")
    return report
