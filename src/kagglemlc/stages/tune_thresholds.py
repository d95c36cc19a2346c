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
from kagglemlc.core.paths import OOF_FILE
from kagglemlc.data.competition import CompetitionData, cached_competition
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.thresholds import threshold_report, write_thresholds


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
    if data is None:
        with cached_competition(cfg.competition, cfg.run_dir, with_test=False, texts=False) as data:
            return tune_thresholds(cfg, data)
    ids = data.ids("train")
    probs = read_probs(cfg.run_dir / OOF_FILE, ids, data.label_names, "run `kagglemlc train` first", unique=True)
    return write_thresholds(cfg, threshold_report(cfg, data, probs, fold_of_rows(cfg.run_dir, ids)))
