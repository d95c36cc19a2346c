"""`kagglemlc predict`: test probabilities from the saved fold models, after the test file changed or for another one.

    kagglemlc predict configs/demo.yaml --fold 0     # → fold0/test.parquet, then test.parquet when all folds exist
    kagglemlc predict teacher.yaml --train-rows      # → fold{k}/train_rows.parquet: what a student distils from
    kagglemlc predict bundle/minilm/config.yaml --out /kaggle/working/minilm competition.test=/kaggle/input/c/test.csv

Training already predicts the test set with every fold's best model; this re-predicts without retraining. The
prediction itself is the task's (`kagglemlc.tasks.predict_test`), the same code training runs. With `--out` the
run folder is only read (a Kaggle dataset is read-only) and needs no folds.parquet: every file goes under the
output folder, laid out as in the run folder (fold{k}/test.parquet, test.parquet, full/test.parquet), so `submit`'s
code reads it like an experiment. `torchrun --nproc_per_node N -m kagglemlc predict ...` (or `accelerate launch`)
puts one copy of each model on every GPU, each predicting its share of the length-sorted batches.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import FULL_DIR, METRICS_FILE, MODEL_DIR, TEST_FILE, TRAIN_ROWS_FILE, fold_dir, seed_dirs
from kagglemlc.data.competition import load_competition
from kagglemlc.data.experiment import guard_trained, record_settings, test_digest, trained_commit
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import (
    average_files,
    combine_fold_tests,
    combine_folds,
    note_test_digest,
    test_is_current,
    write_probabilities,
)
from kagglemlc.data.spans import average_span_files, combine_span_folds, write_spans
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.engine.inference import RowProgress, reporting
from kagglemlc.models.build import build_tokenizer, load_trained, resolve_model_path
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.tasks import make_task, predict_test


def _model_folders(cfg: Config, fold: int | None, train_rows: bool, needs_full: bool) -> list[Path]:
    """The folders whose models predict: one fold or every fold, and the full fit (test rows, every fold)."""
    folders = [fold_dir(cfg.run_dir, k) for k in ([fold] if fold is not None else range(cfg.cv.folds))]
    if fold is None and not train_rows and needs_full:
        folders.append(cfg.run_dir / FULL_DIR)
    return folders


def predict(
    cfg: Config, fold: int | None = None, only_stale: bool = False, train_rows: bool = False, out: Path | None = None
) -> None:
    """Test probabilities from the saved model of one fold (or every fold, and the full fit): after the test file
    changed, or with overrides pointing at another one (`competition.test=... competition.sample_submission=...`).

    With `only_stale` (what `run` does), folds whose test predictions already come from this test file are kept.
    With `train_rows`, each fold's models predict that fold's own training rows instead → fold{k}/train_rows.parquet:
    the targets a student distils from (`train.distill`), from models that never saw fold k's validation rows.
    With `out`, nothing is written into the run folder (it may be read-only) and folds.parquet is not read: the
    predictions go to `out`/fold{k}/, `out`/test.parquet (the folds' mean) and `out`/full/ (a full fit's).
    """
    if out is not None and train_rows:
        raise KaggleMLCError("predict --out writes test predictions: drop --train-rows (it writes into the run folder)")
    if train_rows and cfg.competition.task == "span":
        raise KaggleMLCError("predict --train-rows: distillation targets are label probabilities, not task span's")
    data = load_competition(cfg.competition)
    if data.test_texts is None and not train_rows:
        raise KaggleMLCError("competition.test is not set: there is nothing to predict")
    fold_of_row = fold_of_rows(cfg.run_dir, data.train_ids) if train_rows else None
    resolve_model_path(cfg, trained_commit(cfg))  # a hub id: the commit the folds were trained on
    apply_defaults(cfg, data.train_texts)  # the `auto` settings as training chose them
    if is_main_process():
        guard_trained(cfg)  # the saved models must be the config's: the same text column, max_length, ...
        if out is None:
            record_settings(cfg)  # the test file these predictions come from
    digest = test_digest(cfg)  # the test file's content and the predict settings
    folders = _model_folders(cfg, fold, train_rows, (cfg.run_dir / FULL_DIR / METRICS_FILE).is_file())
    if only_stale and not train_rows:
        folders = [f for f in folders if not test_is_current(f, digest)]
    target = cfg.run_dir if out is None else Path(out)
    n_rows = len(data.train_texts) if train_rows else len(data.test_texts)
    n_models = sum(len(seed_dirs(f, cfg.train.seeds)) for f in folders)
    accelerator = make_accelerator(cfg) if folders else None
    with reporting(RowProgress("predict", n_rows * n_models)) as progress:
        for folder in folders:
            units = seed_dirs(folder, cfg.train.seeds)
            k = None if folder.name == FULL_DIR else int(folder.name.removeprefix("fold"))
            written = target / folder.relative_to(cfg.run_dir)
            for unit in units:
                model_dir = unit / MODEL_DIR
                if not model_dir.is_dir():
                    raise KaggleMLCError(f"{model_dir} not found; run `kagglemlc train --fold {k}` first")
                tokenizer = build_tokenizer(cfg, str(model_dir))
                model = accelerator.prepare_model(load_trained(cfg, model_dir, data), evaluation_mode=True)
                task = make_task(cfg, tokenizer, data)
                unit_out = target / unit.relative_to(cfg.run_dir)
                started = time.perf_counter()
                if train_rows:
                    rows = np.flatnonzero(fold_of_row != k)
                    predicted = task.predict(model, "train", rows, accelerator, cfg.train.eval_batch_size)
                    if accelerator.is_main_process:
                        made_by = {"models": [str(unit.relative_to(cfg.run_dir))], "fold": k}
                        ids = data.train_ids[rows]
                        write_probabilities(unit / TRAIN_ROWS_FILE, ids, predicted.probs, data.label_names, made_by)
                    n_done = len(rows)
                else:
                    if accelerator.is_main_process:
                        unit_out.mkdir(parents=True, exist_ok=True)
                    predict_test(task, model, cfg, data, accelerator, unit_out)
                    if accelerator.is_main_process and out is None:
                        note_test_digest(unit, digest)
                    n_done = n_rows
                progress.model_done(str(unit.relative_to(cfg.run_dir)), n_done, time.perf_counter() - started)
                del model
            name = TRAIN_ROWS_FILE if train_rows else TEST_FILE
            if accelerator.is_main_process and len(units) > 1:
                made_by = {"models": [str(u.relative_to(cfg.run_dir)) for u in units], "fold": k}
                average_files([target / u.relative_to(cfg.run_dir) / name for u in units], written / name, made_by)
                if not train_rows and out is None:
                    note_test_digest(folder, digest)
            info(f"{folder.name}: {'training-row' if train_rows else 'test'} predictions → {written / name}")
    if not is_main_process() or train_rows:
        return
    if data.task == "span":  # the folds' logits averaged, decoded again
        if out is None and (folders or not (cfg.run_dir / TEST_FILE).is_file()):
            combine_span_folds(cfg, data)
        elif out is not None and fold is None:
            paths = [fold_dir(target, k) / TEST_FILE for k in range(cfg.cv.folds)]
            decoded, logits = average_span_files(paths, data.test_ids, data.test_texts, cfg)
            write_spans(target, "test", data.test_ids, decoded, logits)
            info(f"all {cfg.cv.folds} folds → {target / TEST_FILE}")
        return
    if out is not None:
        if fold is None:  # the folds' mean, as combine_folds makes it in a run folder
            test = combine_fold_tests(target, cfg.cv.folds)
            names = list(test.columns[1:])
            write_probabilities(target / TEST_FILE, test["id"].to_numpy(), test[names].to_numpy(), names)
            info(f"all {cfg.cv.folds} folds → {target / TEST_FILE}")
    elif folders or not (cfg.run_dir / TEST_FILE).is_file():
        combine_folds(cfg, data)  # else: nothing new to combine
