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

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.files import write_json
from kagglemlc.core.paths import OOF_FILE, THRESHOLDS_FILE
from kagglemlc.data.competition import CompetitionData, cached_competition
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.spans import read_spans
from kagglemlc.data.thresholds import threshold_report, write_thresholds
from kagglemlc.scoring.spans import span_score


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
        return write_json(cfg.run_dir / THRESHOLDS_FILE, span_cv(cfg, data))
    ids = data.ids("train")
    probs = read_probs(cfg.run_dir / OOF_FILE, ids, data.label_names, "run `kagglemlc train` first", unique=True)
    return write_thresholds(cfg, threshold_report(cfg, data, probs, fold_of_rows(cfg.run_dir, ids)))


def span_cv(cfg: Config, data: CompetitionData) -> dict:
    """task span has nothing to tune: thresholds.json records the CV of the decoded out-of-fold spans (the same
    number untuned, tuned and nested) and each fold's."""
    frame, _ = read_spans(cfg.run_dir / OOF_FILE, data.train_ids)
    spans, metric = data.answer_spans, cfg.competition.metric
    truth = [context[a:b] for context, (a, b) in zip(data.train_texts, spans, strict=True)]
    predicted = frame["text"].tolist()
    fold = fold_of_rows(cfg.run_dir, data.ids("train"))
    per_fold = [span_score(metric, [predicted[i] for i in rows], [truth[i] for i in rows])
                for rows in (np.flatnonzero(fold == k) for k in range(cfg.cv.folds))]  # fmt: skip
    cv = span_score(metric, predicted, truth)
    info(f"{metric} of the out-of-fold spans: {cv:.4f} (folds: {', '.join(f'{v:.4f}' for v in per_fold)})")
    return {"metric": metric, "task": "span", "cv_at_0.5": cv, "cv_tuned": cv, "cv_nested": cv, "per_fold": per_fold}
