"""Probabilities from a model: length-sorted batches, inference mode, sharded over processes.

    kagglemlc predict configs/demo.yaml --fold 0     # → fold0/test.parquet, then test.parquet when all folds exist

`predict_probs` is what training uses for validation too, so OOF and test predictions come from
one code path. Rows are sorted by length for speed and every probability is put back in its row's
place, so ids never get permuted.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import probability_frame, write_json, write_parquet
from kagglemlc.core.paths import METRICS_FILE, MODEL_DIR, OOF_FILE, TEST_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.experiment import content_digest, guard_trained, record_settings
from kagglemlc.data.folds import read_folds
from kagglemlc.engine.batching import Encodings, collate, sorted_batches, tokenize
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.stages.ensemble import combine_fold_tests


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass, sigmoid otherwise (multilabel, binary)."""
    return torch.softmax(logits.float(), dim=-1) if task == "multiclass" else torch.sigmoid(logits.float())


def process_batches(lengths: np.ndarray, batch_size: int, accelerator: Accelerator) -> list[np.ndarray]:
    """This process's share of the length-sorted inference batches: dealt round-robin, gathered back by position."""
    return sorted_batches(lengths, batch_size)[accelerator.process_index :: accelerator.num_processes]


def gather_results(results: list, accelerator: Accelerator) -> list:
    """Every process's results, on every process (the process's own list when there is one process)."""
    return gather_object(results) if accelerator.num_processes > 1 else results


def predict_probs(
    model: torch.nn.Module, enc: Encodings, rows: np.ndarray, accelerator: Accelerator, batch_size: int, task: str
) -> np.ndarray:
    """Probabilities for `rows` of `enc`, in the order of `rows`.

    Batches are dealt round-robin to the processes and gathered back by position, so with N
    processes every row is predicted exactly once, however uneven the last batch is.
    """
    mine = process_batches(enc.lengths[rows], batch_size, accelerator)
    pad = 8 if accelerator.device.type == "cuda" else None
    model.eval()
    results = []
    with torch.inference_mode(), accelerator.autocast():
        for positions in mine:
            batch = {k: v.to(accelerator.device) for k, v in collate(enc, rows[positions], pad).items()}
            results.append((positions, probabilities(model(**batch).logits, task).cpu().numpy()))
    results = gather_results(results, accelerator)
    n_out = results[0][1].shape[1] if results else 0
    out = np.full((len(rows), n_out), np.nan, dtype=np.float32)
    for positions, probs in results:
        out[positions] = probs
    return out


def fold_complete(cfg: Config, fold: int) -> bool:
    return (fold_dir(cfg.run_dir, fold) / METRICS_FILE).is_file()


def combine_folds(cfg: Config, data: CompetitionData) -> bool:
    """Writes the top-level oof.parquet and fold-averaged test.parquet once every fold is complete.

    Returns:
        True when both were written.
    """
    folds = range(cfg.cv.folds)
    if not all(fold_complete(cfg, k) for k in folds):
        return False
    oof = pd.concat([pd.read_parquet(fold_dir(cfg.run_dir, k) / OOF_FILE) for k in folds])
    oof = oof.set_index("id")
    train_ids = data.train_ids.astype(str)
    if len(oof) != len(train_ids) or oof.index.has_duplicates or not oof.index.isin(train_ids).all():
        raise KaggleMLCError(
            f"{cfg.run_dir}: the folds' oof.parquet files do not cover train exactly once; rerun train"
        )
    write_parquet(cfg.run_dir / OOF_FILE, oof.loc[train_ids].reset_index())
    if data.test_ids is not None:
        write_parquet(cfg.run_dir / TEST_FILE, combine_fold_tests(cfg.run_dir, cfg.cv.folds))
    info(f"all {cfg.cv.folds} folds complete → {cfg.run_dir / OOF_FILE}")
    return True


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


TEST_DIGEST = "test_sha256"  # in fold{k}/metrics.json: the content of the test file fold{k}/test.parquet predicts


def _test_is_current(cfg: Config, fold: int, digest: str) -> bool:
    folder = fold_dir(cfg.run_dir, fold)
    try:
        recorded = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8")).get(TEST_DIGEST)
    except (OSError, ValueError):
        return False
    return recorded == digest and (folder / TEST_FILE).is_file()


def _note_test_digest(cfg: Config, fold: int, digest: str) -> None:
    path = fold_dir(cfg.run_dir, fold) / METRICS_FILE
    if path.is_file():
        write_json(path, {**json.loads(path.read_text(encoding="utf-8")), TEST_DIGEST: digest})


def predict(cfg: Config, fold: int | None = None, only_stale: bool = False) -> None:
    """Test probabilities from the saved model of one fold (or every fold): after the test file changed, or with
    overrides pointing at another one (`competition.test=... competition.sample_submission=...`).

    With `only_stale` (what `run` does), folds whose test predictions already come from this test file are kept.
    """
    from kagglemlc.models.build import build_tokenizer, load_trained
    from kagglemlc.stages.train import make_accelerator

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
    folds = [k for k in folds if not (only_stale and _test_is_current(cfg, k, digest))]
    accelerator = make_accelerator(cfg) if folds else None
    for k in folds:
        model_dir = fold_dir(cfg.run_dir, k) / MODEL_DIR
        if not model_dir.is_dir():
            raise KaggleMLCError(f"{model_dir} not found; run `kagglemlc train --fold {k}` first")
        tokenizer = build_tokenizer(cfg, str(model_dir))
        model = accelerator.prepare_model(load_trained(cfg, model_dir, data), evaluation_mode=True)
        predict_test(model, tokenizer, cfg, data, accelerator, k)
        if accelerator.is_main_process:
            _note_test_digest(cfg, k, digest)
        info(f"fold {k}: test predictions → {fold_dir(cfg.run_dir, k) / 'test.parquet'}")
    if is_main_process() and (folds or not (cfg.run_dir / TEST_FILE).is_file()):  # else: nothing new to combine
        combine_folds(cfg, data)
