"""What a fold learns from besides the competition's labels: a teacher's probabilities (`train.distill`) and
pseudo-labelled test rows (`train.pseudo_labels`), leak-free by construction.

    taught = teaching(cfg, data, fold_of_row, k, train_rows)   # None when neither is configured
    taught.targets[train_rows]     # (1 - w) · labels + w · teacher fold k's softened probabilities
    taught.texts, taught.weights   # the pseudo-labelled test rows appended after the training file's rows

Fold k of the student only ever reads files made by the other experiment's fold k (models that never saw fold k's
validation rows): the teacher's `fold{k}/train_rows.parquet` (`kagglemlc predict --train-rows`) and the source's
`fold{k}/test.parquet`. Both experiments must share the folds, which is checked; `made_by` records the models read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import FOLDS_FILE, TEST_FILE, TRAIN_ROWS_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_made_by, read_probs
from kagglemlc.data.tables import build_texts, read_table


@dataclass
class Teaching:
    """A fold's training targets when another experiment teaches it."""

    targets: np.ndarray  # (train rows + extra rows, L) float targets in [0, 1]
    texts: list[str] = field(default_factory=list)  # the extra (pseudo-labelled) rows' texts, after the train file's
    weights: np.ndarray | None = None  # the loss weight of every row (None: all 1)
    made_by: dict[str, Any] = field(default_factory=dict)  # what was read: for metrics.json and the leakage tests


def soften(probs: np.ndarray, task: str, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by `temperature` (softmax over classes for multiclass)."""
    if temperature == 1:
        return probs
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    if task == "multiclass":
        z = np.log(p) / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-np.log(p / (1 - p)) / temperature))


def confidence(probs: np.ndarray, task: str) -> np.ndarray:
    """How sure a prediction is, per row: the top class (multiclass), else its least sure label's max(p, 1 - p)."""
    if task == "multiclass":
        return probs.max(axis=1)
    return np.maximum(probs, 1 - probs).min(axis=1)


def check_same_folds(other: Path, key: str, data: CompetitionData, fold_of_row: np.ndarray) -> None:
    """Stops unless `other`'s folds.parquet puts every training row in the same fold as this experiment's."""
    theirs = fold_of_rows(other, data.train_ids)
    if not np.array_equal(theirs, fold_of_row):
        moved = int((theirs != fold_of_row).sum())
        raise KaggleMLCError(
            f"{key}: {other / FOLDS_FILE} puts {moved} training rows in other folds than this experiment's; "
            "it must be trained on the same folds (the same train file and cv settings, or a copy of folds.parquet)"
        )


def _source_models(path: Path, fold: int) -> list[str]:
    """The models that made a fold's file (seed folders, or the fold itself), from the file's own record."""
    return read_made_by(path).get("models", [fold_dir(Path("."), fold).name])


@dataclass
class LabelledRows:
    """Unlabelled rows with a source fold's probabilities (`pseudo_labels.rows` a file): made by the train stage."""

    texts: list[str]
    probs: np.ndarray
    models: list[str]


def unlabelled_texts(cfg: Config) -> list[str]:
    """The texts of `train.pseudo_labels.rows` when it names a file (the competition's text column(s))."""
    pseudo, comp = cfg.train.pseudo_labels, cfg.competition
    assert pseudo is not None and isinstance(pseudo.rows, Path)
    frame = read_table(pseudo.rows, "train.pseudo_labels.rows", comp.encoding, comp.delimiter)
    return build_texts(frame, comp.text_column, pseudo.rows, "pseudo-label")


def teaching(
    cfg: Config,
    data: CompetitionData,
    fold_of_row: np.ndarray,
    fold: int,
    train_rows: np.ndarray,
    labelled: LabelledRows | None = None,
) -> Teaching | None:
    """Fold `fold`'s targets mixed with its teacher's and its pseudo-labelled rows; None without either setting.
    `labelled`: the rows of a `pseudo_labels.rows` file with source fold `fold`'s probabilities."""
    distill, pseudo = cfg.train.distill, cfg.train.pseudo_labels
    if distill is None and pseudo is None:
        return None
    task = data.task
    targets = np.asarray(data.targets, dtype=np.float32).copy()
    made_by: dict[str, Any] = {}
    if distill is not None:
        check_same_folds(distill.teacher, "train.distill.teacher", data, fold_of_row)
        path = fold_dir(distill.teacher, fold) / TRAIN_ROWS_FILE
        hint = f"run `kagglemlc predict <teacher config> --train-rows` on {distill.teacher} first"
        teacher = read_probs(path, data.train_ids[train_rows], data.label_names, hint)
        mixed = (1 - distill.weight) * targets[train_rows] + distill.weight * soften(teacher, task, distill.temperature)
        targets[train_rows] = mixed
        made_by["distill"] = {"file": str(path), "teacher_fold": fold, "models": _source_models(path, fold)}
    texts: list[str] = []
    weights = None
    if pseudo is not None:
        check_same_folds(pseudo.source, "train.pseudo_labels.source", data, fold_of_row)
        if labelled is not None:
            all_texts, probs, models, path = labelled.texts, labelled.probs, labelled.models, pseudo.rows
        else:
            if data.test_texts is None:
                raise KaggleMLCError("train.pseudo_labels: competition.test is not set: there are no test rows to add")
            path = fold_dir(pseudo.source, fold) / TEST_FILE
            hint = f"train {pseudo.source} first (`kagglemlc train` on its config)"
            probs = read_probs(path, data.test_ids, data.label_names, hint)
            all_texts, models = data.test_texts, _source_models(path, fold)
        kept = np.flatnonzero(confidence(probs, task) >= pseudo.min_confidence)
        texts = [all_texts[i] for i in kept]
        targets = np.concatenate([targets, probs[kept].astype(np.float32)])
        weights = np.concatenate([np.ones(len(data.targets)), np.full(len(kept), pseudo.weight)]).astype(np.float32)
        made_by["pseudo_labels"] = {
            "file": str(path),
            "source_fold": fold,
            "models": models,
            "rows": len(kept),
            "of": len(probs),
        }
    return Teaching(targets, texts, weights, made_by)
