"""`kagglemlc train`: every model kind through one Accelerate loop (`engine.loop`), fold by fold, resumable.

    kagglemlc train configs/demo.yaml --fold 0
    torchrun --nproc_per_node 2 -m kagglemlc train configs/demo.yaml --fold 0

Per fold: train on the other folds' rows, evaluate on this fold's rows with the competition metric
(every epoch or every `train.eval_every` steps), keep the best model in fold{k}/model/ and its
validation probabilities in fold{k}/oof.parquet, stop early without improvement, then predict the
test set with the best model. Resumable state (model, optimiser, scheduler, RNG, position in the
epoch) is saved to fold{k}/checkpoint/ every `train.checkpoint_every` steps and at every evaluation,
so the same command after a crash continues where the run stopped and ends with the same predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import set_seed

from kagglemlc.config import Config, load_config
from kagglemlc.core.console import info, is_main_process
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import experiment_lock, write_json
from kagglemlc.core.paths import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FOLDS_FILE,
    FULL_DIR,
    FULL_LOCK,
    METRICS_FILE,
    MODEL_DIR,
    OOF_FILE,
    TEST_FILE,
    fold_dir,
    fold_lock_name,
    seed_dirs,
)
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.experiment import guard_trained, record_settings, test_digest, trained_commit
from kagglemlc.data.folds import ensure_folds, fold_of_rows
from kagglemlc.data.predictions import (
    TEST_DIGEST,
    average_files,
    combine_folds,
    fold_complete,
    read_probs,
    write_predictions,
)
from kagglemlc.data.spans import combine_span_folds, write_spans
from kagglemlc.data.teachers import LabelledRows, Teaching, teaching, unlabelled_texts
from kagglemlc.engine.accelerator import make_accelerator, peak_memory_mb, reset_peak_memory
from kagglemlc.engine.checkpoints import (
    load_checkpoint,
    remove_resume_state,
    save_best,
    save_checkpoint,
    trainable_only,
)
from kagglemlc.engine.loop import FoldState, train_step, train_while_improving
from kagglemlc.engine.optim import Schedule, build_optimizer
from kagglemlc.engine.tracking import start_run
from kagglemlc.models.build import (
    build_model,
    build_tokenizer,
    count_parameters,
    load_trained,
    resolve_model_path,
)
from kagglemlc.models.defaults import apply_defaults, resolve_defaults
from kagglemlc.models.precision import resolve_precision
from kagglemlc.scoring.metrics import score
from kagglemlc.tasks import make_task, predict_test
from kagglemlc.tasks.base import Predictions
from kagglemlc.tasks.classify import tuned_metric

OnEvaluate = Callable[[int, dict[str, Any]], None]
"""Called with (fold, history entry) after every evaluation."""

HISTORY_KEYS = ("step", "epoch", "train_loss", "metric", "metric_at_0.5", "lr")
"""What every evaluation records; a task's summary (`Task.summary`) adds its own keys beside these."""


def start_at_the_mean(model: torch.nn.Module, y_train: np.ndarray) -> None:
    """Regression: the output layer's bias starts at the training targets' mean (its weights near zero already), so
    the first steps learn the texts, not the targets' offset (an essay score of 3 from an output of 0)."""
    n = y_train.shape[1]
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n]
    with torch.no_grad():
        for head in heads[-2:]:  # the head, and peft's trainable copy of it
            if head.bias is not None:
                head.bias.copy_(torch.as_tensor(y_train.mean(axis=0), dtype=head.bias.dtype))


class FoldTrainer:
    """One fold's run with one seed: the model, its task (`kagglemlc.tasks`), optimiser and schedule; `fit()` trains
    it with the engine's loop, keeping the best model by the task's selection metric, then `finish()` predicts the
    test set. Its files go to `folder` (default fold{k}/; with `train.seeds`, fold{k}/seed{s}/)."""

    def __init__(
        self,
        cfg: Config,
        data: CompetitionData,
        fold_of_row: np.ndarray,
        fold: int,
        on_evaluate: OnEvaluate | None = None,
        seed: int | None = None,
        folder: Path | None = None,
    ):
        train_rows, val_rows = np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)
        seed = cfg.train.seed if seed is None else seed
        name = f"fold {fold}" + ("" if cfg.train.seeds is None else f" seed {seed}")
        self.fold = fold
        taught = teaching(cfg, data, fold_of_row, fold, train_rows, pseudo_rows(cfg, data, fold))
        self.setup(cfg, data, train_rows, val_rows, folder or fold_dir(cfg.run_dir, fold), name, seed + fold, taught)
        self.on_evaluate = on_evaluate

    def setup(
        self,
        cfg: Config,
        data: CompetitionData,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        folder: Path,
        name: str,
        seed: int,
        taught: Teaching | None = None,
        stop_at: int | None = None,
    ) -> None:
        """Builds the run: `train_rows` (indices into the training file; a teacher's extra rows come after it) are
        learned, `val_rows` scored; `seed` seeds initialisation, dropout and shuffling; training stops after
        `stop_at` steps (default: the schedule's end)."""
        self.cfg, self.data, self.dir, self.name, self.seed, self.on_evaluate = cfg, data, folder, name, seed, None
        self.taught = taught
        reset_peak_memory()  # metrics.json's peak memory is this run's
        self.accelerator = make_accelerator(cfg)
        set_seed(seed)
        self.tokenizer = build_tokenizer(cfg)
        resolve_defaults(cfg, data.train_texts, self.tokenizer)  # a no-op after `train` chose them
        self.model = build_model(cfg, data.label_names, data.task)
        if data.task == "regression":
            start_at_the_mean(self.model, data.y[train_rows])
        extra = np.arange(len(data.y), len(data.y) + (0 if taught is None else len(taught.texts)))
        self.train_rows, self.val_rows = np.concatenate([train_rows, extra]), val_rows
        self.task = make_task(cfg, self.tokenizer, data, self.train_rows, self.model.config.num_labels, taught)
        self.enc = self.task.train_encodings()
        world, t = self.accelerator.num_processes, cfg.train
        self.steps_per_epoch = math.ceil(len(self.train_rows) / (t.batch_size * world) / t.grad_accum)
        epochs_steps = self.steps_per_epoch * t.epochs
        self.total_steps = epochs_steps if t.max_steps is None else min(t.max_steps, epochs_steps)
        self.schedule = Schedule(t.scheduler, int(t.warmup_ratio * self.total_steps), self.total_steps)
        self.stop_at = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        self.trainable, self.total_params = count_parameters(self.model)
        optimizer = build_optimizer(t, self.model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        # accelerate holds all three: it checkpoints them and wraps them for sharded (FSDP, DeepSpeed) launches
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.accelerator.register_save_state_pre_hook(trainable_only)
        self.progress = FoldState()

    @property
    def retrain(self) -> str:
        """The command that trains this run again from scratch."""
        return f"kagglemlc train --fold {self.fold} --restart"

    def save_checkpoint(self) -> None:
        save_checkpoint(self.accelerator, self.dir / CHECKPOINT_DIR, asdict(self.progress))

    def maybe_resume(self) -> None:
        progress = load_checkpoint(self.accelerator, self.dir, self.retrain)
        if progress is not None:
            self.progress = FoldState(**progress)
            info(f"{self.name}: resuming at step {self.progress.step} (epoch {self.progress.epoch})")

    def loss_of(self, rows: np.ndarray) -> torch.Tensor:
        pad = 8 if self.accelerator.device.type == "cuda" else None
        return self.task.loss(self.model, rows, self.accelerator.device, pad)

    def train_step(self, micro_batches: list[np.ndarray]) -> float:
        acc, t = self.accelerator, self.cfg.train
        return train_step(acc, self.model, self.optimizer, self.scheduler, self.loss_of, micro_batches, t.max_grad_norm)

    def evaluate(self, train_loss: float) -> bool:
        """Scores the fold's validation rows, records them, keeps the model when it is the best so far and
        checkpoints; returns True when training should stop early."""
        t, p = self.cfg.train, self.progress
        predicted = self.task.predict(self.model, "train", self.val_rows, self.accelerator, t.eval_batch_size)
        entry = self.score(predicted, train_loss)
        improved = p.record(entry, t.early_stopping_patience)
        if improved:
            self.save_best(predicted)
        self.schedule.evaluated(improved)
        self.save_checkpoint()
        self.report(entry)
        if self.on_evaluate is not None:  # a search's pruner: may stop the run by raising, after the checkpoint
            self.on_evaluate(self.fold, entry)
        return p.stopped_early

    def score(self, predicted: Predictions, train_loss: float) -> dict[str, Any]:
        """An evaluation's entry in the history: the selection metric, the metric of the probabilities at 0.5, the
        task's own summary."""
        y_val = self.data.y[self.val_rows][:, : predicted.probs.shape[1]]
        return {
            "step": self.progress.step,
            "epoch": round(self.progress.step / self.steps_per_epoch, 3),
            "train_loss": round(train_loss, 6),
            "metric": (metric := self.task.selection_metric(y_val, predicted)),
            "metric_at_0.5": metric
            if self.data.task == "span"
            else score(self.cfg.competition.metric, y_val, predicted.probs, self.data.task),
            "lr": self.scheduler.get_last_lr()[0],
            **self.task.summary(predicted),
        }

    def report(self, entry: dict[str, Any]) -> None:
        """An evaluation to the trackers and the console."""
        p, name = self.progress, self.cfg.competition.metric
        logged = {f"eval/{name}": entry["metric"], f"eval/{name}_at_0.5": entry["metric_at_0.5"]}
        self.accelerator.log({**logged, f"eval/best_{name}": p.best_metric}, step=p.step)
        rate = p.samples / max(p.train_seconds, 1e-9)
        task = self.data.task
        untuned = "untuned" if task == "regression" else "probabilities at 0.5"
        beside = "" if task == "span" else f"/ {entry['metric_at_0.5']:.4f} {untuned} "  # span: nothing untuned
        info(
            f"{self.name} step {p.step}/{self.total_steps} epoch {entry['epoch']:.2f}: "
            f"loss {entry['train_loss']:.4f} {name} {entry['metric']:.4f} {self.task.describe(entry)} {beside}"
            f"(best {p.best_metric:.4f} @ {p.best_step}) {rate:.0f} samples/s"
        )

    def save_best(self, predicted: Predictions) -> None:
        save_best(self.accelerator, self.cfg, self.model, self.tokenizer, self.dir / MODEL_DIR)
        if self.accelerator.is_main_process:
            ids = self.data.train_ids[self.val_rows]
            if self.data.task == "span":
                write_spans(self.dir, "oof", ids, predicted.decided.frame, predicted.decided.logits)
            else:
                write_predictions(self.dir, "oof", ids, predicted.probs, self.data.label_names, predicted.answers)

    def fit(self) -> None:
        self.maybe_resume()
        t, acc = self.cfg.train, self.accelerator
        for point in train_while_improving(
            acc, self.model, self.optimizer, self.scheduler, self.loss_of, self.enc.lengths, self.train_rows,
            self.progress, t, self.stop_at, self.seed, self.name,
        ):  # fmt: skip
            if not point.evaluate:
                self.save_checkpoint()
            elif self.evaluate(point.train_loss):
                break
        self.finish()

    def finish(self) -> None:
        """Best model → test predictions, metrics.json (the fold's completion mark), checkpoint removed."""
        acc, p = self.accelerator, self.progress
        acc.wait_for_everyone()
        start = time.perf_counter()
        best = acc.prepare_model(load_trained(self.cfg, self.dir / MODEL_DIR, self.data), evaluation_mode=True)
        loaded = time.perf_counter()
        test_summary = predict_test(self.task, best, self.cfg, self.data, acc, self.dir)
        predict_seconds, reload_seconds = time.perf_counter() - loaded, loaded - start
        if acc.is_main_process:
            n_test = 0 if self.data.test_texts is None else len(self.data.test_texts)
            chosen = next((h for h in reversed(p.history) if h["step"] == p.best_step), {})
            oof_summary = {k: v for k, v in chosen.items() if k not in HISTORY_KEYS}  # the task's summary
            summaries = {
                key: {"oof": oof_summary.get(key), "test": test_summary.get(key)}
                for key in {**oof_summary, **test_summary}
            }
            write_json(
                self.dir / METRICS_FILE,
                {
                    "fold": self.fold if len(self.val_rows) else FULL_DIR,
                    "seed": self.seed - self.fold,
                    "metric_name": self.cfg.competition.metric,
                    "selection": self.task.selection,
                    "best_metric": p.best_metric if math.isfinite(p.best_metric) else None,
                    "best_step": p.best_step,
                    "stopped_early": p.stopped_early,
                    "steps": p.step,
                    "history": p.history,
                    "trainable_params": self.trainable,
                    "total_params": self.total_params,
                    "train_rows": len(self.train_rows),
                    "val_rows": len(self.val_rows),
                    "wall_seconds": round(p.train_seconds + reload_seconds + predict_seconds, 2),
                    "train_seconds": round(p.train_seconds, 2),
                    "samples_per_second": round(p.samples / max(p.train_seconds, 1e-9), 2),
                    # tokenising, predicting and writing the test rows; reloading the best model is apart
                    "predict_seconds": round(predict_seconds, 2),
                    "predict_samples_per_second": round(n_test / max(predict_seconds, 1e-9), 2),
                    "reload_seconds": round(reload_seconds, 2),
                    TEST_DIGEST: test_digest(self.cfg),
                    "precision": resolve_precision(self.cfg.train.precision),
                    "processes": acc.num_processes,
                    "peak_memory_mb": peak_memory_mb(acc.device),
                    **({} if self.taught is None else {"taught_by": self.taught.made_by}),
                    **summaries,
                },
            )
            remove_resume_state(self.dir)
        acc.wait_for_everyone()
        for tracker in acc.trackers:  # not end_training(): it destroys the process group the next fold needs
            tracker.finish()


def fold_assignment(cfg: Config, data: CompetitionData) -> np.ndarray:
    """The fold of every train row (in train-file order), from folds.parquet, which must hold exactly cv.folds folds."""
    fold = fold_of_rows(cfg.run_dir, data.train_ids)
    found = np.unique(fold)
    if not np.array_equal(found, np.arange(cfg.cv.folds)):
        raise KaggleMLCError(
            f"{cfg.run_dir / FOLDS_FILE} has {len(found)} folds but cv.folds is {cfg.cv.folds}; "
            f"run `kagglemlc prepare` to split again (or train with --restart), or set cv.folds={len(found)}"
        )
    return fold


def train(
    cfg: Config,
    fold: int | None = None,
    restart: bool = False,
    on_evaluate: OnEvaluate | None = None,
    full_fit: bool = True,
) -> None:
    """Trains one fold (or every fold in turn, then the full fit when `train.full_fit` and `full_fit`), and combines
    the folds when all are complete.

    The folds are made first when folds.parquet is absent, as `prepare` makes them. When the folds on disk were
    trained with other settings, it stops with one line naming them; `restart` discards them instead. With
    `restart`, the fold's (every fold's) checkpoint, model and predictions are discarded and it trains from
    scratch: the way out of a corrupted checkpoint, or a retrain of a complete fold. `on_evaluate(fold, entry)` is
    called after every evaluation (what a search prunes on). With `train.seeds`, every fold trains once per seed.
    """
    if fold is not None and not 0 <= fold < cfg.cv.folds:
        raise KaggleMLCError(f"--fold {fold}: cv.folds is {cfg.cv.folds}, so folds are 0..{cfg.cv.folds - 1}")
    data = load_competition(cfg.competition)
    # a hub id is downloaded now (the commit the trained folds used, if any), its commit recorded in config.yaml
    resolve_model_path(cfg, None if restart else trained_commit(cfg))
    apply_defaults(cfg, data.train_texts)  # every process: the settings must be the same on every rank
    if is_main_process():
        discarded = guard_trained(cfg, restart)
        ensure_folds(cfg, remake=discarded or (restart and fold is None))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the other ranks of a torchrun launch wait for the folds
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
    fold_of_row = fold_assignment(cfg, data)
    if is_main_process():
        record_settings(cfg)  # after the guard: it describes the models on disk
    for k in [fold] if fold is not None else range(cfg.cv.folds):
        # one lock per fold: two machines may train two folds of one experiment on a shared disk; only the main
        # process holds it (the other ranks of a torchrun launch are the same run)
        lock = experiment_lock(cfg.run_dir, "train", fold_lock_name(k)) if is_main_process() else None
        with lock or contextlib.nullcontext():
            _train_fold(cfg, data, fold_of_row, k, restart, on_evaluate)
    if is_main_process():
        (combine_span_folds if data.task == "span" else combine_folds)(cfg, data)
    if full_fit and fold is None and cfg.train.full_fit:
        _train_full(cfg, data, restart)


def _train_fold(
    cfg: Config, data: CompetitionData, fold_of_row: np.ndarray, k: int, restart: bool, on_evaluate: OnEvaluate | None
) -> None:
    folder = fold_dir(cfg.run_dir, k)
    if restart:
        if is_main_process():
            remove_resume_state(folder, everything=True)
            for combined in (OOF_FILE, TEST_FILE):  # they held the discarded fold: `run` retrains
                (cfg.run_dir / combined).unlink(missing_ok=True)
        info(f"fold {k}: --restart: its checkpoint, model and predictions are discarded; training from scratch")
    elif fold_complete(cfg, k):
        if is_main_process():
            remove_resume_state(folder)  # a kill after metrics.json may have left it behind
        info(
            f"fold {k}: already complete ({folder / METRICS_FILE}), skipped; "
            f"`kagglemlc train --fold {k} --restart` trains it again"
        )
        return
    seeds = cfg.train.seeds or [cfg.train.seed]
    for seed, unit in zip(seeds, seed_dirs(folder, cfg.train.seeds), strict=True):
        if unit != folder and (unit / METRICS_FILE).is_file():
            info(f"fold {k} seed {seed}: already complete ({unit / METRICS_FILE}), skipped")
            continue
        _fit(FoldTrainer(cfg, data, fold_of_row, k, on_evaluate, seed, unit), cfg, k)
    if cfg.train.seeds is not None and is_main_process():
        combine_seeds(cfg, data, folder, np.flatnonzero(fold_of_row == k))


def _fit(trainer: FoldTrainer, cfg: Config, k: int) -> None:
    if cfg.train.report_to != "none":
        start_run(trainer.accelerator, cfg, k)
    trainer.fit()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def combine_seeds(cfg: Config, data: CompetitionData, folder: Path, val_rows: np.ndarray | None) -> None:
    """The seeds' models of one fold (or the full fit, `val_rows` None) → their mean oof/test probabilities in
    `folder`, and `folder/metrics.json` (the completion mark): the first seed's record, the averaged model's
    selection metric as `best_metric` and every seed's own result under `seeds`."""
    units = seed_dirs(folder, cfg.train.seeds)
    made_by = {"models": [str(u.relative_to(cfg.run_dir)) for u in units]}
    if val_rows is not None:
        average_files([u / OOF_FILE for u in units], folder / OOF_FILE, made_by)
    if data.test_ids is not None:
        average_files([u / TEST_FILE for u in units], folder / TEST_FILE, made_by)
    runs = [json.loads((u / METRICS_FILE).read_text(encoding="utf-8")) for u in units]
    keys = ("seed", "best_metric", "best_step", "steps", "stopped_early", "wall_seconds")
    summary = {
        **{k: v for k, v in runs[0].items() if k != "seed"},
        "seeds": [{key: r.get(key) for key in keys} for r in runs],
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
        "train_seconds": round(sum(r["train_seconds"] for r in runs), 2),
        "predict_seconds": round(sum(r["predict_seconds"] for r in runs), 2),
    }
    if val_rows is not None:
        probs = read_probs(folder / OOF_FILE, data.train_ids[val_rows], data.label_names, "rerun `kagglemlc train`")
        summary["best_metric"] = tuned_metric(cfg, data.task, data.y[val_rows], probs)
        info(
            f"{folder.name}: {len(units)} seeds {[round(r['best_metric'], 4) for r in runs]} → "
            f"{summary['best_metric']:.4f} averaged"
        )
    write_json(folder / METRICS_FILE, summary)


def pseudo_rows(cfg: Config, data: CompetitionData, fold: int) -> LabelledRows | None:
    """`train.pseudo_labels.rows` a file: its texts with the probabilities of the source's fold `fold` models
    (the mean over its seeds), predicted here with the source's own settings; None otherwise."""
    pseudo = cfg.train.pseudo_labels
    if pseudo is None or not isinstance(pseudo.rows, Path):
        return None
    texts = unlabelled_texts(cfg)
    source = load_config(pseudo.source / CONFIG_FILE)
    rows_data = dataclasses.replace(data, test_texts=texts, test_ids=np.arange(len(texts)).astype(str))
    accelerator = make_accelerator(source)
    units = seed_dirs(fold_dir(pseudo.source, fold), source.train.seeds)
    probs = []
    for unit in units:
        if not (unit / MODEL_DIR).is_dir():
            raise KaggleMLCError(f"train.pseudo_labels.source: {unit / MODEL_DIR} not found; train the source first")
        model = accelerator.prepare_model(load_trained(source, unit / MODEL_DIR, data), evaluation_mode=True)
        task = make_task(source, build_tokenizer(source, str(unit / MODEL_DIR)), rows_data)
        rows = np.arange(len(texts))
        probs.append(task.predict(model, "test", rows, accelerator, source.train.eval_batch_size).probs)
        del model
    info(f"fold {fold}: {len(texts)} rows of {pseudo.rows.name} labelled by {pseudo.source.name}'s fold {fold}")
    return LabelledRows(texts, np.mean(probs, axis=0), [str(u.relative_to(pseudo.source)) for u in units])


class FullFitTrainer(FoldTrainer):
    """`train.full_fit`: one model on every training row for `steps` optimiser steps, on the schedule CV used
    (scaled to the larger set) and without validation; its test predictions go to full/ (full/seed{s}/)."""

    def __init__(self, cfg: Config, data: CompetitionData, seed: int, folder: Path, steps: int):
        self.fold = cfg.cv.folds  # its seed offset: apart from every fold's
        name = "full fit" + ("" if cfg.train.seeds is None else f" seed {seed}")
        rows = np.arange(len(data.y))
        self.setup(cfg, data, rows, rows[:0], folder, name, seed + self.fold, stop_at=steps)

    @property
    def retrain(self) -> str:
        return "kagglemlc train --full --restart"

    def evaluate(self, train_loss: float) -> bool:
        """No validation rows: the model after the last step is the one kept (saved before the checkpoint, so a
        run killed between the two resumes with its model in place)."""
        if self.progress.step >= self.stop_at:
            save_best(self.accelerator, self.cfg, self.model, self.tokenizer, self.dir / MODEL_DIR)
        self.progress.best_step = self.progress.step
        self.save_checkpoint()
        return False


def full_fit_steps(cfg: Config, n_rows: int) -> tuple[int, dict[str, Any]]:
    """The full fit's optimiser steps: the median best step of the folds' models (every seed's), scaled by
    all training rows / a fold's training rows. Returns the steps and how they were chosen (for metrics.json)."""
    runs = []
    for k in range(cfg.cv.folds):
        path = fold_dir(cfg.run_dir, k) / METRICS_FILE
        if not path.is_file():
            raise KaggleMLCError(
                f"train.full_fit: fold {k} is not complete ({path} not found): the full fit takes its number of "
                "steps from the folds; run `kagglemlc train` first"
            )
        runs.append(json.loads(path.read_text(encoding="utf-8")))
    best = [s["best_step"] for m in runs for s in m.get("seeds", [m])]
    fold_rows = float(np.mean([m["train_rows"] for m in runs]))
    steps = max(1, round(float(np.median(best)) * n_rows / fold_rows))
    return steps, {"fold_best_steps": best, "median": float(np.median(best)), "scale": n_rows / fold_rows}


def train_full(cfg: Config, restart: bool = False) -> None:
    """`train.full_fit` after CV: every training row, the steps CV chose (`full_fit_steps`), one model per seed;
    nothing to do when `train.full_fit` is off. Needs every fold complete."""
    if not cfg.train.full_fit:
        return
    data = load_competition(cfg.competition)
    apply_defaults(cfg, data.train_texts)
    if is_main_process():
        guard_trained(cfg)  # the folds the steps come from are the config's
    _train_full(cfg, data, restart)


def _train_full(cfg: Config, data: CompetitionData, restart: bool) -> None:
    folder = cfg.run_dir / FULL_DIR
    lock = experiment_lock(cfg.run_dir, "train --full", FULL_LOCK) if is_main_process() else None
    with lock or contextlib.nullcontext():
        if restart and is_main_process():
            remove_resume_state(folder, everything=True)
        if (folder / METRICS_FILE).is_file():
            info(f"full fit: already complete ({folder / METRICS_FILE}), skipped; `kagglemlc train --full --restart`")
            return
        steps, chosen = full_fit_steps(cfg, len(data.y))
        info(f"full fit: {len(data.y)} rows, {steps} steps (the folds' median best step × {chosen['scale']:.3f})")
        seeds = cfg.train.seeds or [cfg.train.seed]
        for seed, unit in zip(seeds, seed_dirs(folder, cfg.train.seeds), strict=True):
            if unit != folder and (unit / METRICS_FILE).is_file():
                continue
            _fit(FullFitTrainer(cfg, data, seed, unit, steps), cfg, cfg.cv.folds)
            if is_main_process():
                write_json(unit / METRICS_FILE, {**json.loads((unit / METRICS_FILE).read_text()), "chosen": chosen})
        if cfg.train.seeds is not None and is_main_process():
            combine_seeds(cfg, data, folder, None)
