"""`kagglemlc predict`: test probabilities from the saved fold models, after the test file changed or for another one.

    kagglemlc predict configs/demo.yaml --fold 0     # → fold0/test.parquet, then test.parquet when all folds exist
    kagglemlc predict teacher.yaml --train-rows      # → fold{k}/train_rows.parquet: what a student distils from

Training already predicts the test set with every fold's best model; this re-predicts without retraining. The
prediction itself is the task's (`kagglemlc.tasks.predict_test`), the same code training runs.
"""

from __future__ import annotations

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import FULL_DIR, METRICS_FILE, MODEL_DIR, TEST_FILE, TRAIN_ROWS_FILE, fold_dir, seed_dirs
from kagglemlc.data.competition import load_competition
from kagglemlc.data.experiment import content_digest, guard_trained, record_settings, trained_commit
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import (
    average_files,
    combine_folds,
    note_test_digest,
    test_is_current,
    write_probabilities,
)
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.models.build import build_tokenizer, load_trained, resolve_model_path
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.tasks import make_task, predict_test


def predict(cfg: Config, fold: int | None = None, only_stale: bool = False, train_rows: bool = False) -> None:
    """Test probabilities from the saved model of one fold (or every fold, and the full fit): after the test file
    changed, or with overrides pointing at another one (`competition.test=... competition.sample_submission=...`).

    With `only_stale` (what `run` does), folds whose test predictions already come from this test file are kept.
    With `train_rows`, each fold's models predict that fold's own training rows instead → fold{k}/train_rows.parquet:
    the targets a student distils from (`train.distill`), from models that never saw fold k's validation rows.
    """
    data = load_competition(cfg.competition)
    if data.test_texts is None and not train_rows:
        raise KaggleMLCError("competition.test is not set: there is nothing to predict")
    fold_of_row = fold_of_rows(cfg.run_dir, data.train_ids)
    resolve_model_path(cfg, trained_commit(cfg))  # a hub id: the commit the folds were trained on
    apply_defaults(cfg, data.train_texts)  # the `auto` settings as training chose them
    if is_main_process():
        guard_trained(cfg)  # the saved models must be the config's: the same text column, max_length, ...
        record_settings(cfg)  # the test file these predictions come from
    digest = content_digest(cfg.competition.test)
    folders = [fold_dir(cfg.run_dir, k) for k in ([fold] if fold is not None else range(cfg.cv.folds))]
    if fold is None and not train_rows and (cfg.run_dir / FULL_DIR / METRICS_FILE).is_file():
        folders.append(cfg.run_dir / FULL_DIR)
    if only_stale and not train_rows:
        folders = [f for f in folders if not test_is_current(f, digest)]
    accelerator = make_accelerator(cfg) if folders else None
    for folder in folders:
        units = seed_dirs(folder, cfg.train.seeds)
        k = None if folder.name == FULL_DIR else int(folder.name.removeprefix("fold"))
        rows = np.flatnonzero(fold_of_row != k)
        for unit in units:
            model_dir = unit / MODEL_DIR
            if not model_dir.is_dir():
                raise KaggleMLCError(f"{model_dir} not found; run `kagglemlc train --fold {k}` first")
            tokenizer = build_tokenizer(cfg, str(model_dir))
            model = accelerator.prepare_model(load_trained(cfg, model_dir, data), evaluation_mode=True)
            task = make_task(cfg, tokenizer, data)
            if train_rows:
                predicted = task.predict(model, "train", rows, accelerator, cfg.train.eval_batch_size)
                if accelerator.is_main_process:
                    made_by = {"models": [str(unit.relative_to(cfg.run_dir))], "fold": k}
                    ids = data.train_ids[rows]
                    write_probabilities(unit / TRAIN_ROWS_FILE, ids, predicted.probs, data.label_names, made_by)
            else:
                predict_test(task, model, cfg, data, accelerator, unit)
                if accelerator.is_main_process:
                    note_test_digest(unit, digest)
        name = TRAIN_ROWS_FILE if train_rows else TEST_FILE
        if accelerator.is_main_process and len(units) > 1:
            made_by = {"models": [str(u.relative_to(cfg.run_dir)) for u in units], "fold": k}
            average_files([u / name for u in units], folder / name, made_by)
            if not train_rows:
                note_test_digest(folder, digest)
        info(f"{folder.name}: {'training-row' if train_rows else 'test'} predictions → {folder / name}")
    if is_main_process() and not train_rows and (folders or not (cfg.run_dir / TEST_FILE).is_file()):
        combine_folds(cfg, data)  # else: nothing new to combine
