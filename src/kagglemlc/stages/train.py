"""One explicit Accelerate training loop, for every model kind, fold by fold, resumable.

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
import gc
import json
import math
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from kagglemlc.config import Config
from kagglemlc.core.console import info, is_main_process, stderr
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import experiment_lock, file_digest, write_json, write_parquet
from kagglemlc.core.paths import (
    ANSWERS_FILE,
    CHECKPOINT_DIR,
    CHECKSUMS_FILE,
    FOLDS_FILE,
    METRICS_FILE,
    MODEL_DIR,
    OOF_FILE,
    PROGRESS_FILE,
    TEST_FILE,
    fold_dir,
    fold_lock_name,
)
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.experiment import content_digest, guard_trained, record_settings
from kagglemlc.data.folds import ensure_folds, fold_of_rows
from kagglemlc.data.predictions import TEST_DIGEST, combine_folds, fold_complete, probability_frame
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.engine.batching import Encodings, collate, length_grouped_batches, tokenize
from kagglemlc.engine.inference import predict_probs
from kagglemlc.engine.optim import Schedule, build_optimizer
from kagglemlc.engine.tracking import ProgressLog, StepLog, start_run
from kagglemlc.models.build import (
    build_model,
    build_tokenizer,
    count_parameters,
    load_trained,
    save_trained,
)
from kagglemlc.models.defaults import apply_defaults, resolve_defaults
from kagglemlc.models.losses import build_loss
from kagglemlc.models.precision import resolve_precision
from kagglemlc.scoring.metrics import score
from kagglemlc.stages.predict import predict_test
from kagglemlc.stages.tune_thresholds import fit_cuts
from kagglemlc.tasks.generate import GenerativeTask, answer_summary


@dataclass
class FoldState:
    """Where a fold's training stands; saved with every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    best_metric: float = -math.inf
    best_step: int = -1
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swaps a fully written folder into place; the old one survives until the new one is there."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint folder: damage inside tensor data leaves headers intact and loads."""
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS_FILE}


class _Damaged(Exception):
    pass


def _verify_checksums(folder: Path) -> None:
    """Raises _Damaged naming the first file of a checkpoint whose bytes are not what was saved
    (checkpoints of kagglemlc versions before checksums have none to check)."""
    if not (folder / CHECKSUMS_FILE).is_file():
        return
    for name, digest in json.loads((folder / CHECKSUMS_FILE).read_text()).items():
        found = file_digest(folder / name)
        if found != digest:
            problem = "is missing" if found == "absent" else "does not match the checksum saved with it"
            raise _Damaged(f"{name} {problem}")


def _trainable_only(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
    """Checkpoints keep the weights that train: a frozen base (4-bit or not) is rebuilt from model.name on resume."""
    for model, state in zip(models, weights):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trainable]:
            del state[key]


def _peak_memory_mb(device: torch.device) -> dict[str, float | None]:
    cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"cpu_rss": round(cpu, 1), "gpu_max_allocated": None if gpu is None else round(gpu, 1)}


class FoldTrainer:
    """The state of one fold's run; `fit()` is the loop."""

    def __init__(self, cfg: Config, data: CompetitionData, fold_of_row: np.ndarray, fold: int):
        self.cfg, self.data, self.fold = cfg, data, fold
        self.dir = fold_dir(cfg.run_dir, fold)
        self.accelerator = make_accelerator(cfg)
        set_seed(cfg.train.seed + fold)
        self.tokenizer = build_tokenizer(cfg)
        resolve_defaults(cfg, data.train_texts, self.tokenizer)  # a no-op after `train` chose them
        self.model = build_model(cfg, data.label_names, data.task)
        self.train_rows = np.flatnonzero(fold_of_row != fold)
        self.val_rows = np.flatnonzero(fold_of_row == fold)
        # what differs by kind: classifiers score logits against label targets; generative models learn
        # prompt → answer text (loss on the answer tokens) and are scored on their parsed answers
        self.gen = GenerativeTask(cfg, self.tokenizer, data) if cfg.model.kind == "generative" else None
        if self.gen is None:
            self.enc: Encodings = tokenize(self.tokenizer, data.train_texts, cfg.model.max_length)
            self.targets = torch.as_tensor(data.y[:, : self.model.config.num_labels], dtype=torch.float32)
            self.loss_fn = build_loss(cfg.train, data.task, data.y[self.train_rows])
        else:
            self.enc = self.gen.sft_encodings()
        world, t = self.accelerator.num_processes, cfg.train
        self.global_batch = t.batch_size * world
        self.steps_per_epoch = math.ceil(len(self.train_rows) / self.global_batch / t.grad_accum)
        total = (
            self.steps_per_epoch * t.epochs
            if t.max_steps is None
            else min(t.max_steps, self.steps_per_epoch * t.epochs)
        )
        self.total_steps = total
        self.schedule = Schedule(t.scheduler, int(t.warmup_ratio * total), total)
        self.trainable, self.total_params = count_parameters(self.model)
        optimizer = build_optimizer(t, self.model)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.accelerator.register_save_state_pre_hook(_trainable_only)
        self.progress = FoldState()

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tmp, final = self.dir / "checkpoint.tmp", self.dir / CHECKPOINT_DIR
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()  # every rank's RNG file is in tmp before it moves
        if self.accelerator.is_main_process:
            write_json(tmp / CHECKSUMS_FILE, _checksums(tmp))
            write_json(tmp / PROGRESS_FILE, asdict(self.progress))
            _replace_dir(tmp, final)
        self.accelerator.wait_for_everyone()

    def maybe_resume(self) -> None:
        self.accelerator.wait_for_everyone()  # no rank looks before the main one has removed what --restart drops
        ckpt = self.dir / CHECKPOINT_DIR
        if not (ckpt / PROGRESS_FILE).is_file():
            ckpt = self.dir / "checkpoint.old"  # killed between the two renames of _replace_dir
        if self.accelerator.is_main_process:  # what a killed run was writing (the experiment lock says it is gone)
            for name in ("checkpoint.tmp", "model.tmp", *(["checkpoint.old"] if ckpt.name == "checkpoint" else [])):
                shutil.rmtree(self.dir / name, ignore_errors=True)
        if not (ckpt / PROGRESS_FILE).is_file():
            return
        try:
            _verify_checksums(ckpt)
            self.accelerator.load_state(str(ckpt), strict=False)  # frozen weights are not in it
            self.progress = FoldState(**json.loads((ckpt / PROGRESS_FILE).read_text()))
        except Exception as exc:  # a truncated or corrupted checkpoint: safetensors, torch.load, json all land here
            raise KaggleMLCError(
                f"{ckpt}: checkpoint is unreadable ({exc if isinstance(exc, _Damaged) else type(exc).__name__}); "
                f"`kagglemlc train --fold {self.fold} --restart` trains fold {self.fold} again from scratch"
            ) from None
        info(f"fold {self.fold}: resuming at step {self.progress.step} (epoch {self.progress.epoch})")

    def save_best(self, val_probs: np.ndarray, answers: pd.DataFrame | None) -> None:
        if not self.accelerator.is_main_process:
            return
        tmp = self.dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_trained(self.cfg, self.accelerator.unwrap_model(self.model), tmp)
        self.tokenizer.save_pretrained(tmp)
        _replace_dir(tmp, self.dir / MODEL_DIR)
        ids = self.data.train_ids[self.val_rows]
        if answers is not None:  # generative: the parsed answers beside their probabilities
            write_parquet(self.dir / ANSWERS_FILE, answers.assign(id=ids.astype(str))[["id", *answers.columns]])
        write_parquet(self.dir / OOF_FILE, probability_frame(ids, val_probs, self.data.label_names))

    # --- the loop ----------------------------------------------------------------------------
    def train_step(self, micro_batches: list[np.ndarray]) -> float:
        acc, rank, world = self.accelerator, self.accelerator.process_index, self.accelerator.num_processes
        pad = 8 if acc.device.type == "cuda" else None
        self.model.train()
        total = 0.0
        for i, rows in enumerate(micro_batches):
            mine = rows[rank::world]
            batch = collate(self.enc, mine, pad)
            if self.gen is not None:
                batch["labels"] = self.gen.loss_labels(batch, mine)
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            sync = i == len(micro_batches) - 1
            with acc.autocast(), torch.enable_grad() if sync else acc.no_sync(self.model):
                out = self.model(**batch)
                loss = out.loss if self.gen is not None else self.loss_fn(out.logits, self.targets[mine].to(acc.device))
                loss = loss / len(micro_batches)
                acc.backward(loss)
            total += loss.item()
        if self.cfg.train.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def evaluate(self, train_loss: float) -> bool:
        """Scores the fold's validation rows; returns True when training should stop early."""
        t, p = self.cfg.train, self.progress
        answers = None
        if self.gen is None:
            probs = predict_probs(
                self.model, self.enc, self.val_rows, self.accelerator, t.eval_batch_size, self.data.task
            )
        else:
            probs, parsed, answers = self.gen.predict(
                self.model, "train", self.val_rows, self.accelerator, t.eval_batch_size
            )
        y_val, comp = self.data.y[self.val_rows][:, : probs.shape[1]], self.cfg.competition
        at_half = score(comp.metric, y_val, probs, self.data.task)
        # Select on the metric with thresholds tuned per label, as tune-thresholds does by default: at a fixed
        # 0.5 a young model scores 0 on every rare label and all early checkpoints tie. Per label whatever
        # `thresholds.strategy` says, so the checkpoint chosen depends on training alone and a thresholds edit
        # never retrains. Both numbers are kept in the history. Generative models are selected on their parsed
        # answers.
        if self.gen is None:
            metric = fit_cuts(y_val, probs, self.data.task, comp.metric, "per_label", 0.5, False)[1]
        else:
            metric = self.gen.selection_metric(y_val, probs, parsed)
        entry = {
            "step": p.step,
            "epoch": round(p.step / self.steps_per_epoch, 3),
            "train_loss": round(train_loss, 6),
            "metric": metric,
            "metric_at_0.5": at_half,
            "lr": self.scheduler.get_last_lr()[0],
            **({} if answers is None else {"answers": answer_summary(answers)}),
        }
        p.history.append(entry)
        if metric > p.best_metric:
            p.best_metric, p.best_step, p.bad_evals = metric, p.step, 0
            self.save_best(probs, answers)
        else:
            p.bad_evals += 1
            if t.scheduler == "reduce_on_plateau":
                self.schedule.plateau_scale *= 0.5
        p.stopped_early = t.early_stopping_patience is not None and p.bad_evals >= t.early_stopping_patience
        name = self.cfg.competition.metric
        self.accelerator.log(
            {f"eval/{name}": metric, f"eval/{name}_at_0.5": at_half, f"eval/best_{name}": p.best_metric}, step=p.step
        )
        self.save_checkpoint()
        rate = p.samples / max(p.train_seconds, 1e-9)
        how = "tuned" if self.gen is None else f"parsed ({entry['answers']['parse_failures']} parse failures)"
        info(
            f"fold {self.fold} step {p.step}/{self.total_steps} epoch {entry['epoch']:.2f}: loss {train_loss:.4f} "
            f"{self.cfg.competition.metric} {metric:.4f} {how} / {at_half:.4f} probabilities at 0.5 "
            f"(best {p.best_metric:.4f} @ {p.best_step}) {rate:.0f} samples/s"
        )
        return p.stopped_early

    def fit(self) -> None:
        self.maybe_resume()
        t, p, acc = self.cfg.train, self.progress, self.accelerator
        bar = Progress(
            TextColumn(f"fold {self.fold}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=stderr,
            disable=not (acc.is_main_process and stderr.is_terminal),
        )
        # without a terminal (a notebook cell, a log file) the bar is off: plain lines instead
        lines = ProgressLog(
            self.fold, self.total_steps, p.step, t.log_every_seconds, acc.is_main_process and not stderr.is_terminal
        )
        tracked = StepLog(acc, t.log_every)
        done = p.stopped_early or p.step >= self.total_steps
        with bar:
            task = bar.add_task("train", total=self.total_steps, completed=p.step, status="")
            running_loss, n_loss = 0.0, 0
            while not done and p.epoch < t.epochs:
                batches = length_grouped_batches(
                    self.enc.lengths[self.train_rows], self.global_batch, t.seed + self.fold, p.epoch, t.group_by_length
                )
                # every process needs rows in every batch: drop a last batch smaller than the world
                batches = [self.train_rows[b] for b in batches if len(b) >= acc.num_processes]
                groups = [batches[i : i + t.grad_accum] for i in range(0, len(batches), t.grad_accum)]
                for micro_batches in groups[p.step_in_epoch :]:
                    start = time.perf_counter()
                    loss = self.train_step(micro_batches)
                    running_loss += loss
                    n_loss += 1
                    p.train_seconds += time.perf_counter() - start
                    p.samples += sum(len(b) for b in micro_batches)
                    p.step += 1
                    p.step_in_epoch += 1
                    last_in_epoch = p.step_in_epoch == len(groups)
                    if last_in_epoch:
                        p.epoch, p.step_in_epoch = p.epoch + 1, 0
                    finished = p.step >= self.total_steps or (last_in_epoch and p.epoch >= t.epochs)
                    due = (p.step % t.eval_every == 0) if t.eval_every else last_in_epoch
                    rate = p.samples / max(p.train_seconds, 1e-9)
                    bar.update(task, completed=p.step, status=f"loss {running_loss / n_loss:.4f} {rate:.0f} samples/s")
                    lines.maybe_log(p.step, running_loss / n_loss, rate)
                    tracked.add(p.step, loss, self.scheduler.get_last_lr()[0], rate)
                    if due or finished:
                        done = self.evaluate(running_loss / n_loss) or finished
                        running_loss, n_loss = 0.0, 0
                    elif p.step % t.checkpoint_every == 0:
                        self.save_checkpoint()
                    if done:
                        break
        self.finish()

    def finish(self) -> None:
        """Best model → test predictions, metrics.json (the fold's completion mark), checkpoint removed."""
        acc, p = self.accelerator, self.progress
        acc.wait_for_everyone()
        start = time.perf_counter()
        best = acc.prepare_model(load_trained(self.cfg, self.dir / MODEL_DIR, self.data), evaluation_mode=True)
        loaded = time.perf_counter()
        test_answers = predict_test(best, self.tokenizer, self.cfg, self.data, acc, self.fold)
        predict_seconds, reload_seconds = time.perf_counter() - loaded, loaded - start
        if acc.is_main_process:
            n_test = 0 if self.data.test_texts is None else len(self.data.test_texts)
            write_json(
                self.dir / METRICS_FILE,
                {
                    "fold": self.fold,
                    "metric_name": self.cfg.competition.metric,
                    "selection": "metric with thresholds tuned on the validation rows (metric_at_0.5 beside it)"
                    if self.gen is None
                    else "metric of the parsed generated answers (metric_at_0.5: of the label probabilities)",
                    "best_metric": p.best_metric,
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
                    TEST_DIGEST: content_digest(self.cfg.competition.test),
                    "precision": resolve_precision(self.cfg.train.precision),
                    "processes": acc.num_processes,
                    "peak_memory_mb": _peak_memory_mb(acc.device),
                    **({} if self.gen is None else {"answers": {"oof": self._best_answers(), "test": test_answers}}),
                },
            )
            remove_resume_state(self.dir)
        acc.wait_for_everyone()
        for tracker in acc.trackers:  # not end_training(): it destroys the process group the next fold needs
            tracker.finish()

    def _best_answers(self) -> dict | None:
        best = [h for h in self.progress.history if h["step"] == self.progress.best_step]
        return best[-1].get("answers") if best else None


def remove_resume_state(folder: Path, everything: bool = False) -> None:
    """Drops a complete fold's resume state and half-written folders (they can be gigabytes); with
    `everything`, the whole fold folder (`train --restart`)."""
    for name in ["."] if everything else ["checkpoint", "checkpoint.old", "checkpoint.tmp", "model.tmp"]:
        shutil.rmtree(folder / name, ignore_errors=True)


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


def train(cfg: Config, fold: int | None = None, restart: bool = False) -> None:
    """Trains one fold (or every fold in turn), then combines the folds when all are complete.

    The folds are made first when folds.parquet is absent, as `prepare` makes them. When the folds on disk were
    trained with other settings, it stops with one line naming them; `restart` discards them instead. With
    `restart`, the fold's (every fold's) checkpoint, model and predictions are discarded and it trains from
    scratch: the way out of a corrupted checkpoint, or a retrain of a complete fold.
    """
    if fold is not None and not 0 <= fold < cfg.cv.folds:
        raise KaggleMLCError(f"--fold {fold}: cv.folds is {cfg.cv.folds}, so folds are 0..{cfg.cv.folds - 1}")
    data = load_competition(cfg.competition)
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
            _train_fold(cfg, data, fold_of_row, k, restart)
    if is_main_process():
        combine_folds(cfg, data)


def _train_fold(cfg: Config, data: CompetitionData, fold_of_row: np.ndarray, k: int, restart: bool) -> None:
    if restart:
        if is_main_process():
            remove_resume_state(fold_dir(cfg.run_dir, k), everything=True)
            for combined in (OOF_FILE, TEST_FILE):  # they held the discarded fold: `run` retrains
                (cfg.run_dir / combined).unlink(missing_ok=True)
        info(f"fold {k}: --restart: its checkpoint, model and predictions are discarded; training from scratch")
    elif fold_complete(cfg, k):
        if is_main_process():
            remove_resume_state(fold_dir(cfg.run_dir, k))  # a kill after metrics.json may have left it behind
        info(
            f"fold {k}: already complete ({fold_dir(cfg.run_dir, k) / METRICS_FILE}), skipped; "
            f"`kagglemlc train --fold {k} --restart` trains it again"
        )
        return
    trainer = FoldTrainer(cfg, data, fold_of_row, k)
    if cfg.train.report_to != "none":
        start_run(trainer.accelerator, cfg, k)
    trainer.fit()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
