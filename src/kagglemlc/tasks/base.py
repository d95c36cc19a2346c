"""What differs by model kind, behind one small interface: the training loop and the stages call a `Task` and never
ask which kind of model they hold.

    task = make_task(cfg, tokenizer, data, train_rows, n_outputs)     # kagglemlc.tasks
    loss = task.loss(model, rows, device, pad_to)                     # one micro-batch of training rows
    out = task.predict(model, "train", val_rows, accelerator, batch_size)
    task.selection_metric(y_val, out)                                 # what chooses the checkpoint

Two tasks today: a classifier head scored on its probabilities (`classify.ClassifierTask`) and an LLM that answers
with label names, scored on its parsed answers (`generate.GenerativeTask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator

from kagglemlc.engine.batching import Encodings


@dataclass
class Predictions:
    """What a task predicts for some rows: per-label probabilities (what thresholds, ensembles and reports read)
    and, for generative models, the answers they wrote (saved beside the probabilities)."""

    probs: np.ndarray  # (n, L)
    answers: pd.DataFrame | None = None  # one row per predicted row: answer, labels, unknown_words, parse_failed
    decided: Any = field(default=None, repr=False)  # the task's own decisions (parsed answers), for its metric


class Task(Protocol):
    selection: str
    """How the best checkpoint is chosen, in words (metrics.json `selection`)."""

    def train_encodings(self) -> Encodings:
        """The training file's rows as the loss reads them (their lengths group the batches)."""

    def loss(self, model: torch.nn.Module, rows: np.ndarray, device: torch.device, pad_to: int | None) -> torch.Tensor:
        """The mean loss of a micro-batch of training rows (indices into the training file)."""

    def predict(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> Predictions:
        """Predictions for `rows` of the "train" or "test" file, in the order of `rows` (every process gets all)."""

    def selection_metric(self, y: np.ndarray, predicted: Predictions) -> float:
        """The competition metric the checkpoint is chosen on (higher is better)."""

    def summary(self, predicted: Predictions) -> dict[str, Any]:
        """What an evaluation adds to the fold's history and metrics.json besides the metric ({} for none)."""

    def describe(self, entry: dict[str, Any]) -> str:
        """How an evaluation's metric was taken, for its log line (the entry holds `summary`'s keys)."""
