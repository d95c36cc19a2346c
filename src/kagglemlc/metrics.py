"""Competition metrics, a plain dict lookup from the config's `competition.metric` name.

    score("f1_macro", y_true, probs, task="multilabel")   # thresholds default to 0.5

`y_true` is always an (n, L) 0/1 matrix (one-hot for multiclass, one column for binary) and `probs`
the matching probability matrix, so every stage scores every task the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn import metrics as skm

# Metrics on hard predictions (thresholded / argmax) ...
LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f1_macro": lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0),
    "f1_micro": lambda y, p: skm.f1_score(y, p, average="micro", zero_division=0),
    "f1_samples": lambda y, p: skm.f1_score(y, p, average="samples", zero_division=0),
    "f1_weighted": lambda y, p: skm.f1_score(y, p, average="weighted", zero_division=0),
    "jaccard": lambda y, p: skm.jaccard_score(y, p, average="samples", zero_division=0),
    "accuracy": lambda y, p: skm.accuracy_score(y, p),
}
# ... and on probabilities.
PROB_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": lambda y, p: skm.roc_auc_score(y, p, average="macro"),
    "log_loss": lambda y, p: -skm.log_loss(y.ravel(), np.clip(p.ravel(), 1e-7, 1 - 1e-7)),
}
METRIC_NAMES = tuple(LABEL_METRICS) + tuple(PROB_METRICS)


def hard_predictions(probs: np.ndarray, task: str, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """(n, L) 0/1 predictions: per-label thresholds for multilabel/binary, argmax for multiclass."""
    if task == "multiclass":
        return np.eye(probs.shape[1], dtype=np.int8)[probs.argmax(axis=1)]
    return (probs >= np.asarray(thresholds)).astype(np.int8)


def score(metric: str, y_true: np.ndarray, probs: np.ndarray, task: str, thresholds: float | np.ndarray = 0.5) -> float:
    """The competition metric, higher is better (log-loss is negated)."""
    if metric in PROB_METRICS:
        if metric == "roc_auc":
            keep = y_true.min(axis=0) != y_true.max(axis=0)  # AUC is undefined for a constant label
            return float(PROB_METRICS[metric](y_true[:, keep], probs[:, keep])) if keep.any() else float("nan")
        return float(PROB_METRICS[metric](y_true, probs))
    preds = hard_predictions(probs, task, thresholds)
    if task != "multilabel" and metric != "accuracy":
        # single-label tasks: score class indices, as sklearn's usual multiclass F1 does
        labels = np.arange(y_true.shape[1]) if task == "multiclass" else [1]
        true_idx = y_true.argmax(axis=1) if task == "multiclass" else y_true[:, 0]
        pred_idx = preds.argmax(axis=1) if task == "multiclass" else preds[:, 0]
        average = {"f1_macro": "macro", "f1_micro": "micro", "f1_weighted": "weighted"}.get(metric, "macro")
        if task == "binary":
            average = "binary"
        return float(skm.f1_score(true_idx, pred_idx, labels=labels, average=average, zero_division=0))
    return float(LABEL_METRICS[metric](y_true, preds))
