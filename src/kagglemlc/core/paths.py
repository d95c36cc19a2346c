"""Every file and folder name of the on-disk contract, in one place (DESIGN.md "Output contract").

    <output_dir>/
      config.yaml  folds.parquet  oof.parquet  test.parquet  thresholds.json  report.md  report.html  stages.json
      competition.pkl                   the parsed competition files (a cache)
      fold{k}/  model/  checkpoint/  oof.parquet  test.parquet  metrics.json
                oof_answers.parquet  test_answers.parquet        (model.kind: generative)
                train_rows.parquet                               (`predict --train-rows`: for distillation)
                seed{s}/  model/ checkpoint/ oof.parquet ...     (train.seeds: one model per seed; the fold's
                                                                  files above are their mean)
      full/     model/  checkpoint/  test.parquet  metrics.json  (train.full_fit: one model on every row;
                seed{s}/ ...                                      with train.seeds, one per seed)
      zero-shot/  answers.parquet  metrics.json
    <submission.dir>/  log.csv  <name>-<time>.csv

Modules import these names; none spells a contract file itself.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG_FILE = "kagglemlc.yaml"  # the config `kagglemlc <command>` reads when none is named
CONFIG_FILE = "config.yaml"  # the resolved settings, with what each stage's outputs were made with
FOLDS_FILE = "folds.parquet"
OOF_FILE = "oof.parquet"  # out-of-fold probabilities: per fold in fold{k}/, all rows at the top
TEST_FILE = "test.parquet"  # test probabilities: per fold in fold{k}/, fold-averaged at the top
TRAIN_ROWS_FILE = "train_rows.parquet"  # a fold's models on that fold's own training rows (`predict --train-rows`)
FULL_DIR = "full"  # train.full_fit: the model(s) trained on every training row
THRESHOLDS_FILE = "thresholds.json"
REPORT_FILE = "report.md"
REPORT_HTML = "report.html"  # the same report as one page, pictures inlined, next to report.md
STAGES_FILE = "stages.json"  # `run`'s fingerprints of the stages it completed
CACHE_FILE = "competition.pkl"
METRICS_FILE = "metrics.json"  # a fold's completion mark and history; zero-shot's result
ANSWERS_FILE = "oof_answers.parquet"  # generative: the parsed validation answers beside oof.parquet
TEST_ANSWERS_FILE = "test_answers.parquet"
ZERO_SHOT_DIR = "zero-shot"
ZERO_SHOT_ANSWERS = "answers.parquet"
MODEL_DIR = "model"  # the best model of a fold
CHECKPOINT_DIR = "checkpoint"  # resumable state of a fold in training
PROGRESS_FILE = "progress.json"  # in checkpoint/: where the fold's training stands
CHECKSUMS_FILE = "checksums.json"  # in checkpoint/: sha256 of every file saved with it
LOG_FILE = "log.csv"  # in submission.dir: one row per submission
LOG_LOCK = ".log.lock"
PENDING = ".{file}.pending.json"  # a submission's log row, journaled until the row is in the log
FOLDS_LOCK = ".folds.lock"
EXPERIMENT_LOCK = ".lock"
BLEND_PREFIX = "blend-"  # `ensemble --name mix` → <first member's output_dir>/../blend-mix/
# studies (`kagglemlc sweep` / `search`): <output_dir>/ sweep.csv search.csv study.db best.yaml data/ cells/<cell>/
CELLS_DIR = "cells"  # one experiment folder per cell
CELL_FILE = "cell.json"  # in a cell's folder: its settings and result (written when the cell ends)
STUDY_DATA_DIR = "data"  # the training subsets of the data axes
SWEEP_FILE = "sweep.csv"
SEARCH_FILE = "search.csv"
SEARCH_DB = "study.db"  # Optuna's storage: a killed search resumes from it
BEST_CONFIG = "best.yaml"  # the best trial's config, ready for `kagglemlc run`
BEST_DIR = "best"  # best.yaml's output_dir, in the search's folder


# `kagglemlc export --out DIR`: DIR/dataset/ is the Kaggle dataset, DIR/kernel/ the notebook `kaggle kernels push` takes
#   dataset/  dataset-metadata.json  kagglemlc-bundle.json  inference.ipynb  inference.py  wheels/
#             <experiment>/ config.yaml thresholds.json <train file> fold{k}/[seed{s}/]model/ full/ [base/]
#             <blend>/ config.yaml thresholds.json
#   kernel/   kernel-metadata.json  inference.ipynb
BUNDLE_DATASET_DIR, BUNDLE_KERNEL_DIR = "dataset", "kernel"
BUNDLE_MANIFEST = "kagglemlc-bundle.json"  # what the bundle holds: experiments, blends, the competition's file names
BUNDLE_WHEELS_DIR = "wheels"  # kagglemlc and export.wheels, for an offline pip install
BUNDLE_BASE_DIR = "base"  # an experiment's base model, stored once when its folds keep an adapter or a head
NOTEBOOK_FILE, SCRIPT_FILE = "inference.ipynb", "inference.py"
DATASET_METADATA, KERNEL_METADATA = "dataset-metadata.json", "kernel-metadata.json"  # the kaggle client's names
KAGGLE_SUBMISSION = "submission.csv"  # what a code competition reads from /kaggle/working/
BUNDLE_WORK_DIR = "kagglemlc"  # under /kaggle/working/: each experiment's predictions, one folder each


def fold_dir(run_dir: Path, fold: int) -> Path:
    """The folder of one fold's outputs: model/, checkpoint/, oof.parquet, test.parquet, metrics.json."""
    return run_dir / f"fold{fold}"


def seed_dirs(folder: Path, seeds: list[int] | None) -> list[Path]:
    """The folders of a fold's (or the full fit's) models: the folder itself, or one `seed{s}/` per `train.seeds`."""
    return [folder] if seeds is None else [folder / f"seed{s}" for s in seeds]


def fold_lock_name(fold: int) -> str:
    """The lock file one fold's training holds: folds of one experiment may train on two machines at once."""
    return f".lock-fold{fold}"


FULL_LOCK = ".lock-full"  # the lock the full fit's training holds

# a folder is written as <name>.tmp and swapped in; <name>.old is the previous one until the swap is complete
CHECKPOINT_TMP, CHECKPOINT_OLD, MODEL_TMP = f"{CHECKPOINT_DIR}.tmp", f"{CHECKPOINT_DIR}.old", f"{MODEL_DIR}.tmp"
# what a killed run may leave half written in a fold folder
PARTIAL_DIRS = (CHECKPOINT_TMP, MODEL_TMP, CHECKPOINT_OLD)
# a fold folder holding any of these has a model trained with the recorded settings
TRAINED_MARKS = (CHECKPOINT_DIR, CHECKPOINT_OLD, MODEL_DIR, METRICS_FILE)
