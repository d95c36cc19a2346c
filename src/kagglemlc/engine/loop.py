"""The training loop, for every model kind: steps until an evaluation is due, then hands control to the caller.

    for point in train_while_improving(accelerator, model, optimizer, scheduler, loss_of, lengths, rows, state, ...):
        if point.evaluate:
            stop = evaluate(point.train_loss)     # the caller scores, keeps the best model, checkpoints
        else:
            save_checkpoint()
        if stop:
            break

As spaCy's `train_while_improving`, the loop yields evaluation points and the caller decides what to keep and when
to stop; the loss of a micro-batch comes from a function (torchtune's isolated loss step), so nothing here knows
the model kind. Batches are length-grouped with a seed per epoch, and `state` (where training stands) is all a
resumed run needs to continue with exactly the batches it would have seen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from kagglemlc.config import TrainConfig
from kagglemlc.core.console import stderr
from kagglemlc.engine.batching import length_grouped_batches
from kagglemlc.engine.tracking import ProgressLog, StepLog

LossOf = Callable[[np.ndarray], torch.Tensor]
"""The mean loss of one micro-batch of training rows (the model's forward pass included)."""


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

    def record(self, entry: dict, patience: int | None) -> bool:
        """Adds an evaluation (`entry["metric"]`, higher is better) to the history; returns whether it is the best
        so far. After `patience` evaluations in a row without improvement, `stopped_early` is set."""
        self.history.append(entry)
        improved = entry["metric"] > self.best_metric
        if improved:
            self.best_metric, self.best_step, self.bad_evals = entry["metric"], self.step, 0
        else:
            self.bad_evals += 1
        self.stopped_early = patience is not None and self.bad_evals >= patience
        return improved


@dataclass
class Point:
    """Where the loop hands control back: an evaluation (with the mean training loss since the last one) or a
    checkpoint between evaluations."""

    evaluate: bool
    train_loss: float = math.nan


def train_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_of: LossOf,
    micro_batches: list[np.ndarray],
    max_grad_norm: float | None,
) -> float:
    """One optimiser step over `micro_batches` (gradient accumulation; gradients sync on the last one only),
    each process taking its share of every micro-batch. Returns the step's loss on this process."""
    rank, world = accelerator.process_index, accelerator.num_processes
    model.train()
    total = 0.0
    for i, rows in enumerate(micro_batches):
        sync = i == len(micro_batches) - 1
        with accelerator.autocast(), torch.enable_grad() if sync else accelerator.no_sync(model):
            loss = loss_of(rows[rank::world]) / len(micro_batches)
            accelerator.backward(loss)
        total += loss.item()
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def epoch_groups(
    lengths: np.ndarray, rows: np.ndarray, t: TrainConfig, world: int, seed: int, epoch: int
) -> list[list[np.ndarray]]:
    """The optimiser steps of one epoch: length-grouped batches of the global batch size (`rows` indices), in
    groups of `grad_accum` micro-batches. A last batch smaller than the world is dropped (every process needs rows)."""
    batches = length_grouped_batches(lengths[rows], t.batch_size * world, seed, epoch, t.group_by_length)
    batches = [rows[b] for b in batches if len(b) >= world]
    return [batches[i : i + t.grad_accum] for i in range(0, len(batches), t.grad_accum)]


def train_while_improving(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_of: LossOf,
    lengths: np.ndarray,
    rows: np.ndarray,
    state: FoldState,
    t: TrainConfig,
    total_steps: int,
    seed: int,
    name: str,
) -> Iterator[Point]:
    """Trains from where `state` stands, updating it, and yields a `Point` at every evaluation (each epoch's end, or
    every `t.eval_every` steps, and the last step) and every `t.checkpoint_every` steps between them. Stops after
    `total_steps` or `t.epochs`, or when the caller stops iterating.

    Args:
        lengths: the token count of every training-file row; rows: the rows this fold trains on.
        seed: the batches' shuffling seed; name: what the progress bar and log lines call the run ("fold 0").
    """
    world = accelerator.num_processes
    bar = Progress(
        TextColumn(name),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=stderr,
        disable=not (accelerator.is_main_process and stderr.is_terminal),
    )
    # without a terminal (a notebook cell, a log file) the bar is off: plain lines instead
    lines = ProgressLog(
        name, total_steps, state.step, t.log_every_seconds, accelerator.is_main_process and not stderr.is_terminal
    )
    tracked = StepLog(accelerator, t.log_every)
    if state.stopped_early or state.step >= total_steps:
        return
    with bar:
        task = bar.add_task("train", total=total_steps, completed=state.step, status="")
        running_loss, n_loss = 0.0, 0
        while state.epoch < t.epochs:
            groups = epoch_groups(lengths, rows, t, world, seed, state.epoch)
            for micro_batches in groups[state.step_in_epoch :]:
                start = time.perf_counter()
                loss = train_step(accelerator, model, optimizer, scheduler, loss_of, micro_batches, t.max_grad_norm)
                running_loss, n_loss = running_loss + loss, n_loss + 1
                state.train_seconds += time.perf_counter() - start
                state.samples += sum(len(b) for b in micro_batches)
                state.step += 1
                state.step_in_epoch += 1
                last_in_epoch = state.step_in_epoch == len(groups)
                if last_in_epoch:
                    state.epoch, state.step_in_epoch = state.epoch + 1, 0
                finished = state.step >= total_steps or (last_in_epoch and state.epoch >= t.epochs)
                due = (state.step % t.eval_every == 0) if t.eval_every else last_in_epoch
                rate = state.samples / max(state.train_seconds, 1e-9)
                bar.update(task, completed=state.step, status=f"loss {running_loss / n_loss:.4f} {rate:.0f} samples/s")
                lines.maybe_log(state.step, running_loss / n_loss, rate)
                tracked.add(state.step, loss, scheduler.get_last_lr()[0], rate)
                if due or finished:
                    yield Point(True, running_loss / n_loss)
                    running_loss, n_loss = 0.0, 0
                elif state.step % t.checkpoint_every == 0:
                    yield Point(False)
                if finished or state.stopped_early:
                    return
