"""`kagglemlc predict`: test probabilities from the saved fold models, after the test file changed or for another one.

    kagglemlc predict configs/demo.yaml --fold 0     # → fold0/test.parquet, then test.parquet when all folds exist

Training already predicts the test set with every fold's best model; this re-predicts without retraining. The
prediction itself is the task's (`kagglemlc.tasks.predict_test`), the same code training runs.
"""

from __future__ import annotations

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import MODEL_DIR, TEST_FILE, fold_dir
from kagglemlc.data.competition import load_competition
from kagglemlc.data.experiment import content_digest, guard_trained, record_settings
from kagglemlc.data.folds import read_folds
from kagglemlc.data.predictions import (
    combine_folds,
    note_test_digest,
    test_is_current,
)
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.models.build import build_tokenizer, load_trained
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.tasks import make_task, predict_test


def predict(cfg: Config, fold: int | None = None, only_stale: bool = False) -> None:
    """Test probabilities from the saved model of one fold (or every fold): after the test file changed, or with
    overrides pointing at another one (`competition.test=... competition.sample_submission=...`).

    With `only_stale` (what `run` does), folds whose test predictions already come from this test file are kept.
    """
    data = load_competition(cfg.competition)
    if data.test_texts is None:
        raise KaggleMLCError("competition.test is not set: there is nothing to predict")
    read_folds(cfg.run_dir)
    apply_defaults(cfg, data.train_texts)  # the `auto` settings as training chose them
    if is_main_process():
        guard_trained(cfg)  # the saved models must be the config's: the same text column, max_length, ...
        record_settings(cfg)  # the test file these predictions come from
    digest = content_digest(cfg.competition.test)
    folds = [fold] if fold is not None else range(cfg.cv.folds)
    folds = [k for k in folds if not (only_stale and test_is_current(cfg, k, digest))]
    accelerator = make_accelerator(cfg) if folds else None
    for k in folds:
        model_dir = fold_dir(cfg.run_dir, k) / MODEL_DIR
        if not model_dir.is_dir():
            raise KaggleMLCError(f"{model_dir} not found; run `kagglemlc train --fold {k}` first")
        tokenizer = build_tokenizer(cfg, str(model_dir))
        model = accelerator.prepare_model(load_trained(cfg, model_dir, data), evaluation_mode=True)
        predict_test(make_task(cfg, tokenizer, data), model, cfg, data, accelerator, k)
        if accelerator.is_main_process:
            note_test_digest(cfg, k, digest)
        info(f"fold {k}: test predictions → {fold_dir(cfg.run_dir, k) / TEST_FILE}")
    if is_main_process() and (folds or not (cfg.run_dir / TEST_FILE).is_file()):  # else: nothing new to combine
        combine_folds(cfg, data)
