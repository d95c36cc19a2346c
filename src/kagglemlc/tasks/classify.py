"""A classifier head (encoders, decoders with a sequence-classification head): logits against the label targets,
checkpoints chosen on the metric with thresholds tuned per label on the validation rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.teachers import Teaching
from kagglemlc.engine.batching import Encodings, collate, tokenize, tokenize_pairs, tokenize_windows
from kagglemlc.engine.inference import predict_probs
from kagglemlc.models.losses import build_loss
from kagglemlc.scoring.cuts import fit_cuts
from kagglemlc.tasks.base import Predictions


class ClassifierTask:
    # At a fixed 0.5 a young model scores 0 on every rare label and all early checkpoints tie, so checkpoints are
    # chosen with thresholds tuned per label, as tune-thresholds does by default; per label whatever
    # `thresholds.strategy` says, so the checkpoint chosen depends on training alone and a thresholds edit never
    # retrains. The metric at 0.5 is kept beside it in the history.
    selection = "metric with thresholds tuned on the validation rows (metric_at_0.5 beside it)"

    def __init__(
        self,
        cfg: Config,
        tokenizer: PreTrainedTokenizerBase,
        data: CompetitionData,
        train_rows: np.ndarray | None = None,
        n_outputs: int | None = None,
        taught: Teaching | None = None,
    ):
        self.cfg, self.tokenizer, self.data = cfg, tokenizer, data
        n_outputs = n_outputs or data.y.shape[1]
        targets = data.targets if taught is None else taught.targets  # soft ones if any
        self.targets = torch.as_tensor(targets[:, :n_outputs], dtype=torch.float32)
        self.extra_texts = [] if taught is None else taught.texts  # training rows after the train file's
        weights = None if taught is None else taught.weights
        self.row_weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        rows = np.arange(len(data.y)) if train_rows is None else train_rows[train_rows < len(data.y)]
        soft = data.soft is not None or taught is not None
        self.loss_fn = build_loss(cfg.train, data.task, data.y[rows], soft=soft)
        self._enc: dict[str, Encodings] = {}

    def encodings(self, split: str) -> Encodings:
        """Token ids of every train or test row (tokenised on first use)."""
        if split not in self._enc:
            texts = self.data.train_texts + self.extra_texts if split == "train" else self.data.test_texts
            m = self.cfg.model
            pairs = self.data.train_pairs if split == "train" else self.data.test_pairs
            if pairs is not None:  # text pairs: the second segment(s) beside each text
                self._enc[split] = tokenize_pairs(self.tokenizer, texts, pairs, m.max_length, m.segment_budgets)
                return self._enc[split]
            longest = (self.cfg.predict.max_length or m.max_length) if split == "test" else m.max_length
            self._enc[split] = tokenize(
                self.tokenizer, texts or [], longest, truncation=m.truncation, head_fraction=m.head_fraction
            )
        return self._enc[split]

    def train_encodings(self) -> Encodings:
        return self.encodings("train")

    def loss(self, model: torch.nn.Module, rows: np.ndarray, device: torch.device, pad_to: int | None) -> torch.Tensor:
        batch = {k: v.to(device) for k, v in collate(self.encodings("train"), rows, pad_to).items()}
        weights = None if self.row_weights is None else self.row_weights[rows]
        return self.loss_fn(model(**batch).logits, self.targets[rows].to(device), weights)

    def predict(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> Predictions:
        """Probabilities of `rows`; test rows with `predict.stride` are read in windows, pooled per row."""
        p, task = self.cfg.predict, self.data.task
        if split != "test" or p.stride is None:
            return Predictions(predict_probs(model, self.encodings(split), rows, accelerator, batch_size, task))
        if "windows" not in self._enc:
            max_length = p.max_length or self.cfg.model.max_length
            texts = self.data.test_texts or []
            self._enc["windows"], self._owner = tokenize_windows(self.tokenizer, texts, max_length, p.stride)
        wanted = np.flatnonzero(np.isin(self._owner, rows))
        probs = predict_probs(model, self._enc["windows"], wanted, accelerator, batch_size, task)
        # each window's position in `rows`, then one pass over the windows (not one scan of them per row)
        slot = np.empty(int(self._owner.max()) + 1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        at = slot[self._owner[wanted]]
        if p.pooling == "max":
            pooled = np.full((len(rows), probs.shape[1]), -np.inf, dtype=np.float32)
            np.maximum.at(pooled, at, probs)
        else:
            pooled = np.zeros((len(rows), probs.shape[1]), dtype=np.float32)
            np.add.at(pooled, at, probs)
            pooled /= np.bincount(at, minlength=len(rows))[:, None]
        return Predictions(pooled)

    def selection_metric(self, y: np.ndarray, predicted: Predictions) -> float:
        return tuned_metric(self.cfg, self.data.task, y, predicted.probs)

    def summary(self, predicted: Predictions) -> dict[str, Any]:
        return {}

    def describe(self, entry: dict[str, Any]) -> str:
        return "tuned"


def tuned_metric(cfg: Config, task: str, y: np.ndarray, probs: np.ndarray) -> float:
    """The competition metric of `probs` with per-label thresholds tuned on them: what chooses checkpoints."""
    return fit_cuts(y, probs, task, cfg.competition.metric, "per_label", 0.5, False)[1]
