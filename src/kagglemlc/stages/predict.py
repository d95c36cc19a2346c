"""Probabilities from a model: length-sorted batches, inference mode, sharded over processes.

    kagglemlc predict configs/demo.yaml --fold 0     # → fold0/test.parquet, then test.parquet when all folds exist

`predict_probs` is what training uses for validation too, so OOF and test predictions come from
one code path. Rows are sorted by length for speed and every probability is put back in its row's
place, so ids never get permuted.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_parquet
from kagglemlc.core.paths import MODEL_DIR, TEST_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.experiment import content_digest, guard_trained, record_settings
from kagglemlc.data.folds import read_folds
from kagglemlc.data.predictions import (
    combine_folds,
    note_test_digest,
    probability_frame,
    test_is_current,
)
from kagglemlc.engine.batching import tokenize
from kagglemlc.engine.inference import predict_probs
from kagglemlc.models.defaults import apply_defaults


def predict_test(
    model: torch.nn.Module, tokenizer, cfg: Config, data: CompetitionData, accelerator: Accelerator, fold: int
) -> dict | None:
    """Test probabilities of one fold's model → fold{k}/test.parquet (main process writes).

    Returns:
        for generative models, the parse summary of the test answers (kept in fold{k}/test_answers.parquet).
    """
    if data.test_texts is None:
        return None
    if cfg.model.kind == "generative":
        from kagglemlc.tasks.generate import predict_test_answers

        return predict_test_answers(model, tokenizer, cfg, data, accelerator, fold)
    enc = tokenize(tokenizer, data.test_texts, cfg.model.max_length)
    probs = predict_probs(
        model, enc, np.arange(len(data.test_texts)), accelerator, cfg.train.eval_batch_size, data.task
    )
    if accelerator.is_main_process:
        write_parquet(fold_dir(cfg.run_dir, fold) / TEST_FILE, probability_frame(data.test_ids, probs, data.label_names))
    return None



def predict(cfg: Config, fold: int | None = None, only_stale: bool = False) -> None:
    """Test probabilities from the saved model of one fold (or every fold): after the test file changed, or with
    overrides pointing at another one (`competition.test=... competition.sample_submission=...`).

    With `only_stale` (what `run` does), folds whose test predictions already come from this test file are kept.
    """
    from kagglemlc.engine.accelerator import make_accelerator
    from kagglemlc.models.build import build_tokenizer, load_trained

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
        predict_test(model, tokenizer, cfg, data, accelerator, k)
        if accelerator.is_main_process:
            note_test_digest(cfg, k, digest)
        info(f"fold {k}: test predictions → {fold_dir(cfg.run_dir, k) / 'test.parquet'}")
    if is_main_process() and (folds or not (cfg.run_dir / TEST_FILE).is_file()):  # else: nothing new to combine
        combine_folds(cfg, data)
