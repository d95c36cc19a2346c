"""Competition metrics, a plain dict lookup from the config's `competition.metric` name.

    score("f1_macro", y_true, probs, task="multilabel")   # thresholds default to 0.5

`y_true` is always an (n, L) 0/1 matrix (one-hot for multiclass, one column for binary) and `probs`
the matching probability matrix, so every stage scores every task the same way. Each metric is
scikit-learn's (those of hard predictions computed here from their counts with sklearn's formulas: many
times faster, and the one implementation the threshold searches share), on what the task's rows are:
- multilabel: the label matrix, one label per column (also with a single label, which sklearn alone
  would read as the classes 0 and 1 of a binary task).
- multiclass and binary: one class per row, every class counted (binary: classes 0 and 1), as sklearn
  scores class indices with `labels=` all classes. So `f1_macro` of a binary task is the mean F1 of
  the two classes, `f1_micro` is accuracy, and the sample-wise `f1_samples` and `jaccard` are
  accuracy too (a row's set of classes is its one class).
- `f1`: the positive class's F1 (sklearn's default `average="binary"`), what binary competitions
  usually mean by F1. Binary tasks only: a multilabel or multiclass task has no one positive class.
- `roc_auc`: the mean one-vs-rest AUC over the labels (classes) with both positive and negative rows;
  NaN when none has (AUC is undefined for a constant label).
- `log_loss`: multiclass: the cross-entropy of the true class (sklearn's multiclass log loss), rows
  rescaled to sum to 1 first as Kaggle does; binary: the binary log loss; multilabel: the mean over
  labels of each label's binary log loss (Kaggle's "mean column-wise log loss"). Probabilities are
  clipped to the float type's precision, as sklearn does.
- regression (`y_true` the (n, T) targets, `probs` the predicted scores): `rmse` over every cell, `mcrmse` the
  mean of the targets' RMSEs, `mae`, `pearson` / `spearman` (mean over targets), `qwk` (one target, predictions
  rounded to the nearest grade or cut by tuned cut points, sklearn's quadratic-weighted Cohen's kappa). Errors
  are negated: every metric here is higher-is-better.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from kagglemlc.config.metric_names import METRIC_NAMES, metric_problem
from kagglemlc.core.errors import KaggleMLCError


def f1_counts(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (predicted + positives); 0 where both are 0 (then TP is 0 too: sklearn's zero_division=0)."""
    denom = np.maximum(np.add(predicted, positives, dtype=np.float64), 1.0)
    return np.multiply(tp, 2.0, dtype=np.float64) / denom


def label_weights(metric: str, positives: np.ndarray) -> np.ndarray:
    """How f1_weighted (by positives) or f1_macro (equally) averages the labels' F1s, as weights summing to 1
    (all 0 for f1_weighted without positives: every F1 is 0 then)."""
    if metric == "f1_weighted":
        return positives / max(positives.sum(), 1)
    return np.full(len(positives), 1 / len(positives))


def labelwise_f1(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray, metric: str) -> float:
    """f1_micro, f1_macro or f1_weighted from each column's counts, as sklearn computes it."""
    if metric == "f1_micro":
        return float(f1_counts(tp.sum(), predicted.sum(), positives.sum()))
    f1 = f1_counts(tp, predicted, positives)
    # as sklearn: weighted by positives, a plain mean when no label has any
    weighted = metric == "f1_weighted" and positives.sum() > 0
    return float(np.average(f1, weights=positives if weighted else None))


# Sample-wise metrics of a row from |pred ∩ true|, |pred|, |true| (0 for an empty row, as sklearn).
def _jaccard_rows(inter, pred, true):
    return inter / np.maximum(pred + true - inter, 1)


def _exact_rows(inter, pred, true):
    return ((inter == pred) & (inter == true)).astype(np.float64)


ROW_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "jaccard": _jaccard_rows,
    "f1_samples": f1_counts,
    "accuracy": _exact_rows,
}
"""Each row's score from its counts; the metric is their mean."""


def _by_column(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def scored(y: np.ndarray, hard: np.ndarray) -> float:
        hit = hard * y
        return labelwise_f1(*(a.sum(axis=0, dtype=np.int64) for a in (hit, hard, y)), metric)

    return scored


def _by_row(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def scored(y: np.ndarray, hard: np.ndarray) -> float:
        hit = hard * y
        return float(ROW_METRICS[metric](*(a.sum(axis=1, dtype=np.int64) for a in (hit, hard, y))).mean())

    return scored


# Metrics on hard predictions (thresholded / argmax), from the counts of 0/1 matrices of classes
# (`_class_matrices`): sklearn's formulas, many times faster than sklearn's checks and conversions ...
LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f1": lambda y, p: _by_column("f1_macro")(y[:, 1:], p[:, 1:]),  # binary: column 1 = class 1
    "f1_macro": _by_column("f1_macro"),
    "f1_micro": _by_column("f1_micro"),
    "f1_samples": _by_row("f1_samples"),
    "f1_weighted": _by_column("f1_weighted"),
    "jaccard": _by_row("jaccard"),
    "accuracy": _by_row("accuracy"),
}


def _roc_auc(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    both = y.min(axis=0) != y.max(axis=0)  # AUC is undefined for a constant label
    if not both.any():
        return float("nan")
    return float(np.mean([skm.roc_auc_score(t, p) for t, p in zip(y[:, both].T, probs[:, both].T, strict=True)]))


def _log_loss(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    probs = np.clip(probs, 0, 1)  # float32 rounding may step past 1, which sklearn refuses
    if task == "multiclass":
        total = probs.sum(axis=1, keepdims=True)
        rows = probs / np.where(total > 0, total, 1)
        return float(skm.log_loss(y.argmax(axis=1), rows, labels=range(y.shape[1])))
    return float(np.mean([skm.log_loss(t, p, labels=[0, 1]) for t, p in zip(y.T, probs.T, strict=True)]))


# ... and on probabilities; higher is better, so log loss is negated.
PROB_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, str], float]] = {
    "roc_auc": _roc_auc,
    "log_loss": lambda y, p, task: -_log_loss(y, p, task),
}


def grades(values: np.ndarray, y: np.ndarray, cuts: np.ndarray | None = None) -> np.ndarray:
    """Integer grades of predicted scores: with `cuts` = [lowest grade, c1, ..., c_(G-1)], the lowest grade plus
    the number of cuts a score reaches; without (empty), the score rounded and clipped to the grades of `y`."""
    if cuts is not None and len(cuts):
        return (cuts[0] + (values[..., None] >= cuts[1:]).sum(axis=-1)).astype(np.int64)
    return np.clip(np.rint(values), np.min(y), np.max(y)).astype(np.int64)


def quadratic_kappa(truth: np.ndarray, graded: np.ndarray) -> float:
    """scikit-learn's `cohen_kappa_score(truth, graded, weights="quadratic")` for integer grades, from one bincount:
    the grades are the sorted values present in either (a missing grade adds no distance, as in scikit-learn);
    nan where it is undefined (one grade in all). ~100x faster than scikit-learn's, which validates its input on
    each of the thousands of calls a cut search makes."""
    lo = min(truth.min(), graded.min())
    present = np.bincount(truth - lo) > 0
    present = np.pad(present, (0, max(0, graded.max() - lo + 1 - len(present))))
    present[graded - lo] = True
    index = np.cumsum(present) - 1  # value - lo → the grade's position among those present
    k = int(index[-1]) + 1
    confusion = np.bincount(index[truth - lo] * k + index[graded - lo], minlength=k * k).reshape(k, k)
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / len(truth)
    weights = np.subtract.outer(np.arange(k), np.arange(k)) ** 2
    denominator = float((weights * expected).sum())
    return float(1 - (weights * confusion).sum() / denominator) if denominator > 0 else float("nan")


def _qwk(y: np.ndarray, pred: np.ndarray, cuts: np.ndarray | None) -> float:
    if y.shape[1] != 1:
        raise KaggleMLCError(f"metric 'qwk' scores one grade per row; this competition has {y.shape[1]} targets")
    truth = np.rint(y[:, 0]).astype(np.int64)
    return quadratic_kappa(truth, grades(pred[:, 0], truth, cuts))


def _by_target(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The mean over the targets (columns) of `fn(truth, prediction)`."""
    return lambda y, p: float(np.mean([fn(t, q) for t, q in zip(y.T, p.T, strict=True)]))


# Regression (task: regression, y = the (n, T) targets, predictions the model's raw scores); errors are negated
# (higher is better); rmse pools every target's cells, mcrmse is the mean of the targets' RMSEs (sklearn's
# root_mean_squared_error, uniform average), pearson / spearman the mean of the targets' correlations (scipy's);
# qwk rounds (or cuts, `grades`) one target into grades and scores sklearn's quadratic-weighted kappa.
REGRESSION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": lambda y, p: -float(np.sqrt(skm.mean_squared_error(y.ravel(), p.ravel()))),
    "mcrmse": lambda y, p: -float(skm.root_mean_squared_error(y, p)),
    "mae": lambda y, p: -float(skm.mean_absolute_error(y, p)),
    "pearson": _by_target(lambda t, q: float(stats.pearsonr(t, q)[0]) if np.ptp(q) > 0 else 0.0),
    "spearman": _by_target(lambda t, q: float(stats.spearmanr(t, q)[0]) if np.ptp(q) > 0 else 0.0),
}
# span tasks (exact_match; jaccard and f1 of the decoded texts) are scored by scoring.spans.span_score
assert (*LABEL_METRICS, *PROB_METRICS, *REGRESSION, "qwk", "exact_match") == METRIC_NAMES, "every metric listed"
ACCURACY_WHEN_SINGLE_LABEL = frozenset({"accuracy", "f1_micro", "f1_samples", "jaccard"})
"""With one class per row (multiclass, binary) each of these is the share of rows classified right."""


def check_metric(metric: str, task: str) -> None:
    """Raises KaggleMLCError when `metric` cannot score a `task` competition (`metric_problem`)."""
    if problem := metric_problem(metric, task):
        raise KaggleMLCError(problem)


def hard_predictions(probs: np.ndarray, task: str, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """(n, L) 0/1 predictions: per-label thresholds for multilabel/binary, argmax for multiclass."""
    if task == "multiclass":
        return np.eye(probs.shape[1], dtype=np.int8)[probs.argmax(axis=1)]
    return (probs >= np.asarray(thresholds)).astype(np.int8)


def _class_matrices(y: np.ndarray, hard: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth, predictions): one 0/1 column per class, the form every task is scored in. Binary gets a column per
    class (0, then 1), so averages take both classes."""
    if task == "binary":
        return np.hstack([1 - y, y]), np.hstack([1 - hard, hard])
    return y, hard


def score(metric: str, y_true: np.ndarray, probs: np.ndarray, task: str, thresholds: float | np.ndarray = 0.5) -> float:
    """The competition metric, higher is better (log-loss is negated); definitions in the module docstring.

    Raises:
        KaggleMLCError: a metric the task has no meaning for (`metric_problem`).
    """
    check_metric(metric, task)
    if task == "regression":  # `thresholds`: qwk's grade cuts (`grades`); the 0.5 default means none
        if metric == "qwk":
            return _qwk(y_true, probs, np.atleast_1d(thresholds) if np.ndim(thresholds) else None)
        return REGRESSION[metric](np.asarray(y_true, dtype=np.float64), np.asarray(probs, dtype=np.float64))
    if metric in PROB_METRICS:
        return float(PROB_METRICS[metric](y_true, probs, task))
    return LABEL_METRICS[metric](*_class_matrices(y_true, hard_predictions(probs, task, thresholds), task))
