"""The exact threshold searches that sweep one cut down sorted scores, the metric at every cut from cumulative
counts: a binary task's cut, one global cut for every label, coordinate ascent over coupled labels and the
multiclass bias. (Each label's own F1 cut: `label_f1`; which search serves which case: `cuts`.)

    order = np.argsort(scores)[::-1]
    cut, value = best_cut(scores[order], values_at_each_k, value_predicting_nothing)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kagglemlc.scoring.metrics import ACCURACY_WHEN_SINGLE_LABEL, ROW_METRICS, f1_counts, label_weights, score

ROUNDS = 3
"""Coordinate-ascent passes over the labels (it usually settles after two)."""

LABELWISE = ("f1_macro", "f1_weighted")
"""Multilabel metrics that average each label's own F1: each label takes its own best cut."""


def above(top: Any) -> np.ndarray:
    """A cut above every score when `top` is the highest: halfway to 1, or just above it from 1 on."""
    return np.where(top < 1, (top + 1) / 2, np.nextafter(top, np.inf))


def best_cut(desc: np.ndarray, values: np.ndarray, none_value: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best cut of scores sorted descending (along the last axis).

    `values[..., k]` is the metric when the top k+1 scores are positive; only the last position of a
    run of equal scores is a real cut. The threshold is the midpoint to the next lower score (robust
    on test data, same OOF result); above every score when predicting nothing is at least as good.

    Returns:
        (thresholds, best values), shaped like `desc` without its last axis.
    """
    n = desc.shape[-1]
    ends = np.ones(desc.shape, dtype=bool)
    ends[..., :-1] = desc[..., 1:] != desc[..., :-1]
    masked = np.where(ends, values, -np.inf)
    k = masked.argmax(axis=-1)[..., None]
    best = np.take_along_axis(masked, k, -1)[..., 0]
    upper = np.take_along_axis(desc, k, -1)[..., 0].astype(np.float64)
    lower = np.take_along_axis(desc, np.minimum(k + 1, n - 1), -1)[..., 0].astype(np.float64)
    mid = (upper + lower) / 2
    cut = np.where((k[..., 0] < n - 1) & (mid > lower), mid, upper)
    nothing = np.asarray(none_value) >= best
    return np.where(nothing, above(desc[..., 0].astype(np.float64)), cut), np.maximum(best, none_value)


def _events_cut(scores: np.ndarray, gains: np.ndarray, base: float) -> tuple[float, float]:
    """Best single threshold when the metric is `base` + the gains of every event scoring ≥ it."""
    order = np.argsort(scores)[::-1]
    cut, value = best_cut(scores[order], base + np.cumsum(gains[order]), base)
    return float(cut), float(value)


@dataclass
class Ranked:
    """Label-major copies of the OOF (contiguous rows sort and gather several times faster) and their ranking."""

    scores: np.ndarray  # (L, n) probabilities, rows in file order
    truth: np.ndarray  # (L, n) 0/1
    order: np.ndarray  # (L, n) row indices, highest score first
    desc: np.ndarray  # (L, n) scores in that order
    tp: np.ndarray  # (L, n) positives among the top k+1
    positives: np.ndarray  # (L,)

    @classmethod
    def of(cls, y: np.ndarray, probs: np.ndarray) -> Ranked:
        scores, truth = np.ascontiguousarray(probs.T), np.ascontiguousarray(y.T)
        order = np.argsort(scores, axis=1)[:, ::-1]
        tp = np.cumsum(np.take_along_axis(truth, order, 1), axis=1, dtype=np.int32)
        return cls(scores, truth, order, np.take_along_axis(scores, order, 1), tp, truth.sum(axis=1))


# ---- coordinate ascent: labels coupled by the metric ---------------------------------------------


def ascend_micro(ranked: Ranked) -> tuple[np.ndarray, float]:
    """Multilabel f1_micro: each step the exact best cut of one label with the others fixed."""
    n_labels, n = ranked.scores.shape
    cuts = np.full(n_labels, 0.5)
    hard = ranked.scores >= cuts[:, None]
    tp, predicted = (hard & (ranked.truth == 1)).sum(axis=1), hard.sum(axis=1)
    positives, ranks, value = int(ranked.positives.sum()), np.arange(1, n + 1), 0.0
    for _ in range(ROUNDS):
        before = cuts.copy()
        for j in range(n_labels):
            tp_rest, pred_rest = tp.sum() - tp[j], predicted.sum() - predicted[j]
            values = f1_counts(tp_rest + ranked.tp[j], pred_rest + ranks, positives)
            cut, best = best_cut(ranked.desc[j], values, f1_counts(tp_rest, pred_rest, positives))
            cuts[j], value = cut, float(best)
            on = ranked.scores[j] >= cut
            tp[j], predicted[j] = (on & (ranked.truth[j] == 1)).sum(), on.sum()
        if np.array_equal(before, cuts):
            break
    return cuts, value


def ascend_rows(ranked: Ranked, row_score: Callable) -> tuple[np.ndarray, float]:
    """A sample-wise metric (`metrics.ROW_METRICS`): each step the exact best cut of one label, others fixed."""
    n_labels, n = ranked.scores.shape
    cuts = np.full(n_labels, 0.5)
    truth = ranked.truth.astype(np.int64)
    hard = (ranked.scores >= cuts[:, None]).astype(np.int64)
    inter, pred, true = (hard * truth).sum(axis=0), hard.sum(axis=0), truth.sum(axis=0)
    value = 0.0
    for _ in range(ROUNDS):
        before = cuts.copy()
        for j in range(n_labels):
            inter_rest, pred_rest = inter - hard[j] * truth[j], pred - hard[j]
            base = row_score(inter_rest, pred_rest, true)
            gain = row_score(inter_rest + truth[j], pred_rest + 1, true) - base
            total = base.sum()
            values = (total + np.cumsum(gain[ranked.order[j]])) / n
            cut, best = best_cut(ranked.desc[j], values, total / n)
            cuts[j], value = cut, float(best)
            hard[j] = ranked.scores[j] >= cut
            inter, pred = inter_rest + hard[j] * truth[j], pred_rest + hard[j]
        if np.array_equal(before, cuts):
            break
    return cuts, value


# ---- one cut ------------------------------------------------------------------------------------


def global_cut(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[float, float]:
    """One threshold for every label of a multilabel task, exact over all n·L scores."""
    n, n_labels = probs.shape
    if metric == "f1_micro":
        order = np.argsort(probs.ravel())[::-1]
        tp = np.cumsum(y.ravel()[order])
        cut, value = best_cut(probs.ravel()[order], f1_counts(tp, np.arange(1, n * n_labels + 1), int(y.sum())), 0.0)
        return float(cut), float(value)
    if metric in LABELWISE:
        # each label's F1 changes only at its own scores: the gain of each score is that change
        ranked = Ranked.of(y, probs)
        f1 = f1_counts(ranked.tp, np.arange(1, n + 1), ranked.positives[:, None])
        gains = np.diff(f1, axis=1, prepend=0.0) * label_weights(metric, ranked.positives)[:, None]
        return _events_cut(ranked.desc.ravel(), gains.ravel(), 0.0)
    # sample-wise: a row's score changes at each of its own scores, its labels taken highest first
    order = np.argsort(probs, axis=1)[:, ::-1]
    inter = np.cumsum(np.take_along_axis(y, order, 1), axis=1)
    inter = np.hstack([np.zeros((n, 1), dtype=inter.dtype), inter])
    rows = ROW_METRICS[metric](inter, np.arange(n_labels + 1), y.sum(axis=1)[:, None])
    gains = np.diff(rows, axis=1) / n
    return _events_cut(np.take_along_axis(probs, order, 1).ravel(), gains.ravel(), rows[:, 0].sum() / n)


def _binary_value(metric: str, tp: Any, predicted: Any, positives: int, n: int) -> Any:
    """A binary task's metric (`metrics.score`) from its counts: true positives and predicted positives among
    n rows with `positives` positives."""
    tn = n - predicted - positives + tp
    if metric in ACCURACY_WHEN_SINGLE_LABEL:
        return (tp + tn) / n
    f1 = f1_counts(tp, predicted, positives)
    if metric == "f1":
        return f1
    f1_negative = f1_counts(tn, n - predicted, n - positives)
    if metric == "f1_macro":
        return (f1 + f1_negative) / 2
    return (positives * f1 + (n - positives) * f1_negative) / n  # f1_weighted: by each class's rows


def binary_cut(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """The best threshold of a binary task over every cut: the negative class's F1 (in f1_macro / f1_weighted)
    and accuracy gain from cutting between negatives too, so no cut is skipped."""
    order = np.argsort(probs[:, 0])[::-1]
    n, positives = len(order), int(y[:, 0].sum())
    tp = np.cumsum(y[order, 0], dtype=np.int64)
    values = _binary_value(metric, tp, np.arange(1, n + 1), positives, n)
    cut, best = best_cut(probs[order, 0], values, _binary_value(metric, 0, 0, positives, n))
    return np.array([float(cut)]), float(best)


# ---- the multiclass bias ------------------------------------------------------------------------


def _cumcount_by_group(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running sum of non-negative `values` within each group, in array order."""
    order = np.argsort(groups, kind="stable")
    sums = np.cumsum(values[order])
    sorted_groups = groups[order]
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    offset = np.maximum.accumulate(np.where(starts, sums - values[order], 0))
    out = np.empty_like(sums)
    out[order] = sums - offset
    return out


def multiclass_bias(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """Coordinate ascent on bias_j; each step exact: row i flips to class j once bias_j passes its margin."""
    n, n_classes = probs.shape
    truth = y.argmax(axis=1)
    positives = np.bincount(truth, minlength=n_classes)
    # one class per row: accuracy, or the classes' F1s averaged (macro or weighted)
    weights = None if metric in ACCURACY_WHEN_SINGLE_LABEL else label_weights(metric, positives)
    bias = np.zeros(n_classes)
    for _ in range(ROUNDS):
        before = bias.copy()
        for j in range(n_classes):
            shifted = probs + bias
            shifted[:, j] = -np.inf
            other = shifted.argmax(axis=1)
            margin = shifted[np.arange(n), other] - probs[:, j]
            order = np.argsort(margin)
            o, t = other[order], truth[order]
            now_right, flip_right = (o == t), (t == j)
            if weights is None:
                base = now_right.sum() / n
                values = base + np.cumsum(flip_right.astype(np.int64) - now_right) / n
            else:
                tp = np.bincount(other[other == truth], minlength=n_classes)
                pred = np.bincount(other, minlength=n_classes)
                base = float(weights @ f1_counts(tp, pred, positives))
                # flipping a row takes it from class o: F1 of o after minus before its r-th loss
                lost = _cumcount_by_group(np.ones(n, dtype=np.int64), o)
                lost_tp = _cumcount_by_group(now_right.astype(np.int64), o)
                after = f1_counts(tp[o] - lost_tp, pred[o] - lost, positives[o])
                prior = f1_counts(tp[o] - lost_tp + now_right, pred[o] - lost + 1, positives[o])
                gained = f1_counts(np.cumsum(flip_right), np.arange(1, n + 1), positives[j])
                values = base + np.cumsum(weights[o] * (after - prior)) + weights[j] * gained
            cut, _ = best_cut(-margin[order], values, base)
            bias[j] = -float(cut)
        if np.array_equal(before, bias):
            break
    # scored by metrics.score: a row whose margin equals the bias exactly is an argmax tie
    return bias, score(metric, y, probs + bias, "multiclass")
