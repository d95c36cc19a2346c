"""What differs by model kind (`base.Task`): a classifier head (`classify`) or generated answers (`generate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.predictions import write_predictions
from kagglemlc.data.spans import write_spans
from kagglemlc.data.teachers import Teaching
from kagglemlc.tasks.base import Predictions, Task
from kagglemlc.tasks.classify import ClassifierTask
from kagglemlc.tasks.generate import GenerativeTask
from kagglemlc.tasks.span import SpanTask

__all__ = ["ClassifierTask", "GenerativeTask", "Predictions", "SpanTask", "Task", "make_task", "predict_test"]


def make_task(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase,
    data: CompetitionData,
    train_rows: np.ndarray | None = None,
    n_outputs: int | None = None,
    taught: Teaching | None = None,
) -> Task:
    """The task of `model.kind`: generative models answer in words, every other kind has a classifier head.

    Args:
        train_rows: the rows the model trains on (class weights of the loss come from them); all by default.
        n_outputs: the model's number of outputs (the label targets are cut to it); all labels by default.
        taught: a teacher's targets and pseudo-labelled rows (`data.teachers`; classifiers only).
    """
    if cfg.model.kind == "generative" and data.task == "span":
        raise KaggleMLCError(
            "task span with model.kind generative runs `kagglemlc zero-shot` only; to train, put a start/end head on "
            "it: model.kind decoder"
        )
    if cfg.model.kind == "generative":
        return GenerativeTask(cfg, tokenizer, data)
    if data.task == "span":
        return SpanTask(cfg, tokenizer, data)
    return ClassifierTask(cfg, tokenizer, data, train_rows, n_outputs, taught)


def predict_test(
    task: Task, model: torch.nn.Module, cfg: Config, data: CompetitionData, accelerator: Accelerator, folder: Path
) -> dict[str, Any]:
    """One model on the test rows → folder/test.parquet (and test_answers.parquet); the main process writes.

    Returns:
        the task's summary of the test predictions ({} without a test file).
    """
    if data.test_texts is None:
        return {}
    rows = np.arange(len(data.test_texts))
    predicted = task.predict(model, "test", rows, accelerator, cfg.train.eval_batch_size)
    if accelerator.is_main_process and data.task == "span":
        write_spans(folder, "test", data.test_ids, predicted.decided.frame, predicted.decided.logits)
    elif accelerator.is_main_process:
        write_predictions(folder, "test", data.test_ids, predicted.probs, data.label_names, predicted.answers)
    return task.summary(predicted)
