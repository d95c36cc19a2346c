"""Probabilities from a model: length-sorted batches, inference mode, sharded over processes.

`predict_probs` is what training uses for validation too, so OOF and test predictions come from
one code path. Rows are sorted by length for speed and every probability is put back in its row's
place, so ids never get permuted. Under `accelerate launch` / torchrun each process (one per GPU) holds
its own copy of the model and predicts every N-th of the length-sorted batches, so each gets a near-equal
share of the tokens; the results are gathered back by row.

    progress = RowProgress("predict", total_rows=3 * len(test_rows))
    with reporting(progress):             # rows/s and an ETA at most every 30 s while batches run
        for model in fold_models:
            ...predict_probs(...) / any task's predict...
            progress.model_done("fold0", len(test_rows))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from kagglemlc.core.console import info
from kagglemlc.engine.batching import Encodings, collate, sorted_batches
from kagglemlc.engine.tracking import _duration as duration  # training's ETA format


class RowProgress:
    """Rows predicted, rows/s and the time left, for a run over several models (a Kaggle notebook's budget is wall
    time): a line after each model, and one at most every `every_seconds` while a model's batches run."""

    def __init__(
        self, name: str, total_rows: int, every_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.name, self.total, self.every_seconds, self.clock = name, total_rows, every_seconds, clock
        self.started = self.last = clock()
        self.done = 0  # rows of the models finished
        self.running = 0  # rows of the model in progress

    def rate(self) -> float:
        return (self.done + self.running) / max(self.clock() - self.started, 1e-9)

    def _eta(self) -> str:
        return duration((self.total - self.done - self.running) / max(self.rate(), 1e-9))

    def advance(self, rows: int) -> None:
        """Rows of the current model predicted (all processes together)."""
        self.running += rows
        now = self.clock()
        if now - self.last >= self.every_seconds:
            self.last = now
            done = self.done + self.running
            info(f"{self.name}: {done:,}/{self.total:,} rows, {self.rate():,.0f} rows/s, ETA {self._eta()}")

    def model_done(self, label: str, rows: int, seconds: float) -> None:
        """A model has predicted its `rows` in `seconds`: its own rows/s, and the time left for the rest."""
        self.done, self.running = self.done + rows, 0
        self.last = self.clock()
        left = f", ETA {self._eta()}" if self.done < self.total else ""
        info(f"{label}: {rows:,} rows in {seconds:.1f} s, {rows / max(seconds, 1e-9):,.0f} rows/s{left}")


_reporting: list[RowProgress] = []


@contextmanager
def reporting(progress: RowProgress) -> Iterator[RowProgress]:
    """While the block runs, `predict_probs` reports its batches to `progress`."""
    _reporting.append(progress)
    try:
        yield progress
    finally:
        _reporting.remove(progress)


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass, sigmoid for multilabel and binary; regression: the scores as they are."""
    if task == "regression":
        return logits.float()
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
            for progress in _reporting:
                progress.advance(len(positions) * accelerator.num_processes)
    results = gather_results(results, accelerator)
    n_out = results[0][1].shape[1] if results else 0
    out = np.full((len(rows), n_out), np.nan, dtype=np.float32)
    for positions, probs in results:
        out[positions] = probs
    return out
