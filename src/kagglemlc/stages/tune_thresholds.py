"""Decision thresholds tuned on the out-of-fold probabilities, for the competition metric.

    kagglemlc tune-thresholds configs/demo.yaml      # oof.parquet → thresholds.json

    tuned = json.loads((run_dir / "thresholds.json").read_text())
    tuned["cv_at_0.5"], tuned["cv_tuned"], tuned["cv_nested"]   # before, after, honest estimate

Every search is exact over all distinct OOF scores and vectorised with numpy: scores are sorted once
per label, and the metric at every cut comes from cumulative counts.
- f1_macro / f1_weighted (multilabel): labels are independent, so each label takes its own best F1 cut
  (only a cut at a positive's score can be best: those are scored, from two sorts and binary search).
- f1_micro / jaccard / f1_samples / accuracy (multilabel) couple the labels: coordinate ascent from 0.5, each
  step the exact best cut for one label with the others fixed (never lowers the score).
- `thresholds.strategy: global`: one threshold for every label, exact over all n·L scores.
- binary: one threshold, exact over every cut, for what the metric means there (`metrics`: `f1` the positive
  class's F1, `f1_macro` / `f1_weighted` both classes' F1s averaged, the others accuracy).
- multiclass: argmax; optionally an additive per-class bias tuned the same way (`tune_bias`).
- roc_auc / log_loss score probabilities: thresholds cannot change them, 0.5 is written.

`cv_nested` tunes on K−1 folds' OOF and scores the held-out fold, so the gap to `cv_tuned` shows how
much of the gain is the thresholds fitting noise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.files import write_json
from kagglemlc.core.parallel import workers
from kagglemlc.core.paths import OOF_FILE, THRESHOLDS_FILE
from kagglemlc.data.competition import CompetitionData, cached_competition
from kagglemlc.data.folds import fold_of_rows
from kagglemlc.data.predictions import read_probs
from kagglemlc.scoring.metrics import ACCURACY_WHEN_SINGLE_LABEL, PROB_METRICS, check_metric, score

ROUNDS = 3
"""Coordinate-ascent passes over the labels (it usually settles after two)."""



# ---- cuts -> hard labels -------------------------------------------------------------------------


def apply_cuts(probs: np.ndarray, task: str, cuts: np.ndarray) -> np.ndarray:
    """(n, L) 0/1 labels: `probs >= cuts` per label, or for multiclass one-hot argmax(probs + cuts)."""
    if task == "multiclass":
        return np.eye(probs.shape[1], dtype=np.int8)[(probs + cuts).argmax(axis=1)]
    return (probs >= cuts).astype(np.int8)


def evaluate(y: np.ndarray, probs: np.ndarray, task: str, metric: str, cuts: np.ndarray) -> float:
    """The competition metric (as `metrics.score` computes it) of `probs` decided with `cuts`."""
    if metric in PROB_METRICS:
        return score(metric, y, probs, task)
    return _score_decided(y, apply_cuts(probs, task, cuts), task, metric)


def _score_decided(y: np.ndarray, hard: np.ndarray, task: str, metric: str) -> float:
    """`metrics.score` of 0/1 predictions; multilabel from counts (sklearn's formulas, many times faster)."""
    if task != "multilabel":
        return score(metric, y, hard, task)
    hit = hard * y
    if metric in _ROWWISE:
        return float(_ROWWISE[metric](hit.sum(axis=1), hard.sum(axis=1), y.sum(axis=1)).mean())
    return _labelwise_score(hit.sum(axis=0), hard.sum(axis=0), y.sum(axis=0), metric)


def _labelwise_score(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray, metric: str) -> float:
    """Multilabel F1 (micro, macro or weighted) from each label's counts, as sklearn computes it."""
    if metric == "f1_micro":
        return float(_f1(tp.sum(), predicted.sum(), positives.sum()))
    f1 = _f1(tp, predicted, positives)
    # as sklearn: weighted by positives, a plain mean when no label has any
    weighted = metric == "f1_weighted" and positives.sum() > 0
    return float(np.average(f1, weights=positives if weighted else None))



# ---- exact searches ------------------------------------------------------------------------------


def _f1(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (predicted + positives); 0 where both are 0 (then TP is 0 too: sklearn's zero_division=0)."""
    denom = np.maximum(np.add(predicted, positives, dtype=np.float64), 1.0)
    return np.multiply(tp, 2.0, dtype=np.float64) / denom


def _best_cut(desc: np.ndarray, values: np.ndarray, none_value: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    top = desc[..., 0].astype(np.float64)
    above = np.where(top < 1, (top + 1) / 2, np.nextafter(top, np.inf))
    nothing = np.asarray(none_value) >= best
    return np.where(nothing, above, cut), np.maximum(best, none_value)


def _events_cut(scores: np.ndarray, gains: np.ndarray, base: float) -> tuple[float, float]:
    """Best single threshold when the metric is `base` + the gains of every event scoring ≥ it."""
    order = np.argsort(scores)[::-1]
    cut, value = _best_cut(scores[order], base + np.cumsum(gains[order]), base)
    return float(cut), float(value)


@dataclass
class _Ranked:
    """Label-major copies of the OOF (contiguous rows sort and gather several times faster) and their ranking."""

    scores: np.ndarray  # (L, n) probabilities, rows in file order
    truth: np.ndarray  # (L, n) 0/1
    order: np.ndarray  # (L, n) row indices, highest score first
    desc: np.ndarray  # (L, n) scores in that order
    tp: np.ndarray  # (L, n) positives among the top k+1
    positives: np.ndarray  # (L,)

    @classmethod
    def of(cls, y: np.ndarray, probs: np.ndarray) -> _Ranked:
        scores, truth = np.ascontiguousarray(probs.T), np.ascontiguousarray(y.T)
        order = np.argsort(scores, axis=1)[:, ::-1]
        tp = np.cumsum(np.take_along_axis(truth, order, 1), axis=1, dtype=np.int32)
        return cls(scores, truth, order, np.take_along_axis(scores, order, 1), tp, truth.sum(axis=1))


def _label_weights(metric: str, positives: np.ndarray) -> np.ndarray:
    if metric == "f1_weighted":
        return positives / max(positives.sum(), 1)
    return np.full(len(positives), 1 / len(positives))


# Sample-wise metrics of a row from |pred ∩ true|, |pred|, |true| (0 for an empty row, as sklearn).
def _jaccard_rows(inter, pred, true):
    return inter / np.maximum(pred + true - inter, 1)


def _f1_rows(inter, pred, true):
    return _f1(inter, pred, true)


def _exact_rows(inter, pred, true):
    return ((inter == pred) & (inter == true)).astype(np.float64)


_LABELWISE = ("f1_macro", "f1_weighted")
_ROWWISE = {"jaccard": _jaccard_rows, "f1_samples": _f1_rows, "accuracy": _exact_rows}


def _per_label(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    if metric in _LABELWISE:
        return _labelwise(y, probs, metric)
    ranked = _Ranked.of(y, probs)
    if metric == "f1_micro":
        return _ascend_micro(ranked)
    return _ascend_rows(ranked, _ROWWISE[metric])


class LabelwiseF1:
    """`fit_cuts(y, probs, task, metric)[1]` for many probability matrices of the same rows, when labels take
    their own best F1 cut (per_label: multilabel f1_macro / f1_weighted, binary f1): the value only, with the
    truth indexed once.

    What the ensemble's weight search scores each candidate blend with. The same exact search as `_Sorted`
    (a best cut lies at a positive's score) without its cuts and per-fold counts, over the top scores only
    (`_best_f1`).
    """

    def __init__(self, y: np.ndarray, metric: str):
        self.rows = len(y)
        self.positives = [np.flatnonzero(t == 1) for t in np.ascontiguousarray(y.T)]
        self.weights = _label_weights(metric, np.array([len(p) for p in self.positives]))

    def __call__(self, probs: np.ndarray) -> float:
        best = np.zeros(len(self.positives))
        for j, (x, positive) in enumerate(zip(probs.T, self.positives, strict=True)):
            if len(positive):  # no positive: F1 is 0 at any cut
                best[j] = self._best_f1(x, x[positive])
        return float(self.weights @ best)

    def _best_f1(self, x: np.ndarray, positive_scores: np.ndarray) -> float:
        """The best F1 over the cuts at the positives' scores, searched among those that can beat F1₀, the F1 of
        predicting the top P: F1 = 2TP / (P + predicted) ≤ 2P / (P + predicted), so those predict at most
        2P / F1₀ − P rows, the top of the scores. (Few, large numpy calls: the search runs this in threads.)"""
        n, p = self.rows, len(positive_scores)
        top = x  # the scores that can hold the best cut
        split = np.partition(x, n - p)  # [lower scores, the p-th highest, the p - 1 above it]
        at_top_p = split[n - p]
        tp_0 = np.count_nonzero(positive_scores >= at_top_p)
        most = n if tp_0 == 0 else min(n, int(np.ceil((p + np.count_nonzero(x >= at_top_p)) * p / tp_0)) - p + 1)
        if most < n // 2:  # (+1 above: rounding to spare)
            lower = np.partition(split[: n - p], n - most - 1)
            floor = lower[n - most - 1]  # the (most + 1)-th highest: a cut above it predicts <= most rows
            top = np.concatenate([lower[n - most :], split[n - p :]])
            positive_scores = positive_scores[positive_scores > floor]
        candidates = np.sort(positive_scores)
        # at a positive's score c: TP = positives scoring >= c (all from the first of its run of equals on),
        # predicted = all scoring >= c
        first = np.arange(len(candidates))
        first[1:][candidates[1:] == candidates[:-1]] = 0
        tp = len(candidates) - np.maximum.accumulate(first)
        predicted = len(top) - np.searchsorted(np.sort(top), candidates)
        return float(_f1(tp, predicted, p).max())


def _labelwise(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """Each label's best F1 cut: the same as `_best_cut` over all n cuts, from value sorts (no argsort)."""
    cuts, best, positives = _Sorted(y, probs).fit()
    return cuts, float(_label_weights(metric, positives) @ best)


class _Sorted:
    """Every label's scores and its positives' scores, each sorted ascending within every group of rows (fold).

    A cut's counts in any set of groups then come from binary search, so the F1 search on all folds and the
    one per held-out fold (the nested estimate) share one sort of each score. Lowering the threshold past
    negatives alone only adds false positives, so the best F1 cut (the highest among equals) lies at a
    positive's score: the candidates are the distinct positive scores, their counts per group precomputed.
    """

    def __init__(self, y: np.ndarray, probs: np.ndarray, group: np.ndarray | None = None):
        scores, truth = np.ascontiguousarray(probs.T), np.ascontiguousarray(y.T) == 1
        order = None if group is None else np.argsort(group, kind="stable")
        self.groups, starts = (
            (np.zeros(1, dtype=int), [0]) if order is None else np.unique(group[order], return_index=True)
        )
        parts = [slice(a, b) for a, b in zip(starts, [*starts[1:], len(probs)], strict=True)]
        self.dtype = scores.dtype

        def index(x: np.ndarray, t: np.ndarray) -> tuple:
            x, t = (x, t) if order is None else (x[order], t[order])
            ordered = [np.sort(x[part]) for part in parts]
            positives = [np.sort(x[part][t[part]]) for part in parts]
            candidates = positives[0] if len(parts) == 1 else np.sort(np.concatenate(positives))
            distinct = np.ones(len(candidates), dtype=bool)
            distinct[1:] = candidates[1:] != candidates[:-1]
            first = np.flatnonzero(distinct)
            if len(parts) == 1:  # how many positives score >= each candidate, without a search
                positives_at_least = (len(candidates) - first)[None]
            else:
                positives_at_least = _counts_at_least(positives, candidates[first])
            candidates = candidates[first]
            # (groups, candidates): how many scores / positives' scores of each group are >= each candidate
            return ordered, positives, candidates, _counts_at_least(ordered, candidates), positives_at_least

        # labels are independent and numpy's sorts release the GIL: on large data, one label per core at a time
        if scores.size >= PARALLEL_SCORES and len(scores) > 1 and workers() > 1:
            with ThreadPoolExecutor(max_workers=workers()) as pool:
                indexed = list(pool.map(index, scores, truth))
        else:
            indexed = list(map(index, scores, truth))
        columns = list(zip(*indexed, strict=True)) or [()] * 5
        self.scores, self.positives, self.candidates, self.at_least, self.positives_at_least = map(list, columns)

    def fit(self, held: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each label's best F1 cut on every group but `held`.

        Returns:
            (cuts, best F1s, positives) per label.
        """
        rows = slice(None) if held is None else self.groups != held
        n_labels = len(self.scores)
        cuts, best, positives = np.empty(n_labels), np.zeros(n_labels), np.zeros(n_labels, dtype=np.int64)
        for j in range(n_labels):
            ordered = [a for a, g in zip(self.scores[j], self.groups, strict=True) if g != held]
            tp, predicted = self.positives_at_least[j][rows].sum(axis=0), self.at_least[j][rows].sum(axis=0)
            positives[j] = tp[0] if len(tp) else 0
            if positives[j] == 0:  # predicting nothing is best: above every score, as `_best_cut`
                top = max(np.float64(a[-1]) for a in ordered if len(a))
                cuts[j] = (top + 1) / 2 if top < 1 else np.nextafter(top, np.inf)
                continue
            candidates = self.candidates[j]
            f1 = _f1(tp, predicted, positives[j])
            if held is not None:  # a candidate that no kept positive scores exactly is no cut here
                f1[tp - np.append(tp[1:], 0) == 0] = -np.inf
            k = len(f1) - 1 - int(f1[::-1].argmax())  # the highest cut among equal F1s
            upper = np.float64(candidates[k])
            below = [a[i - 1] for a in ordered if (i := np.searchsorted(a, candidates[k])) > 0]
            lower = np.float64(max(below)) if below else upper  # the next lower kept score
            mid = (upper + lower) / 2
            cuts[j], best[j] = (mid if mid > lower else upper), f1[k]
        return cuts, best, positives

    def counts(self, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true positives, predicted, positives) of every label (rows) in every group (columns) with `cuts`."""
        shape = (len(self.scores), len(self.groups))
        tp, predicted, positives = (np.zeros(shape, dtype=np.int64) for _ in range(3))
        for j, cut in enumerate(cuts):
            cut = _at_least(cut, self.dtype)
            for g, (ordered, pos) in enumerate(zip(self.scores[j], self.positives[j], strict=True)):
                predicted[j, g] = len(ordered) - np.searchsorted(ordered, cut)
                tp[j, g], positives[j, g] = len(pos) - np.searchsorted(pos, cut), len(pos)
        return tp, predicted, positives


def _counts_at_least(groups: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """(groups, candidates) int32: how many of each group's sorted scores are >= each sorted candidate."""
    counts = np.empty((len(groups), len(candidates)), dtype=np.int32)
    for row, scores in zip(counts, groups, strict=True):
        np.subtract(len(scores), np.searchsorted(scores, candidates), out=row, casting="unsafe")
    return counts


PARALLEL_SCORES = 1 << 22
"""From this many scores on, `_Sorted` indexes labels in threads (below: the ensemble's weight search, which
scores its candidates in threads itself, and data where starting threads costs more than it saves)."""



def _at_least(cut: float, dtype: np.dtype) -> Any:
    """The smallest `dtype` value >= cut: `scores >= cut` counts the same, and binary search needs no cast."""
    if not np.issubdtype(dtype, np.floating):
        return cut
    value = dtype.type(cut)
    return np.nextafter(value, dtype.type(np.inf)) if float(value) < float(cut) else value


def _ascend_micro(ranked: _Ranked) -> tuple[np.ndarray, float]:
    n_labels, n = ranked.scores.shape
    cuts = np.full(n_labels, 0.5)
    hard = ranked.scores >= cuts[:, None]
    tp, predicted = (hard & (ranked.truth == 1)).sum(axis=1), hard.sum(axis=1)
    positives, ranks, value = int(ranked.positives.sum()), np.arange(1, n + 1), 0.0
    for _ in range(ROUNDS):
        before = cuts.copy()
        for j in range(n_labels):
            tp_rest, pred_rest = tp.sum() - tp[j], predicted.sum() - predicted[j]
            values = _f1(tp_rest + ranked.tp[j], pred_rest + ranks, positives)
            cut, best = _best_cut(ranked.desc[j], values, _f1(tp_rest, pred_rest, positives))
            cuts[j], value = cut, float(best)
            on = ranked.scores[j] >= cut
            tp[j], predicted[j] = (on & (ranked.truth[j] == 1)).sum(), on.sum()
        if np.array_equal(before, cuts):
            break
    return cuts, value


def _ascend_rows(ranked: _Ranked, row_score) -> tuple[np.ndarray, float]:
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
            cut, best = _best_cut(ranked.desc[j], values, total / n)
            cuts[j], value = cut, float(best)
            hard[j] = ranked.scores[j] >= cut
            inter, pred = inter_rest + hard[j] * truth[j], pred_rest + hard[j]
        if np.array_equal(before, cuts):
            break
    return cuts, value


def _global(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[float, float]:
    n, n_labels = probs.shape
    if metric == "f1_micro":
        order = np.argsort(probs.ravel())[::-1]
        tp = np.cumsum(y.ravel()[order])
        cut, value = _best_cut(probs.ravel()[order], _f1(tp, np.arange(1, n * n_labels + 1), int(y.sum())), 0.0)
        return float(cut), float(value)
    if metric in _LABELWISE:
        # each label's F1 changes only at its own scores: the gain of each score is that change
        ranked = _Ranked.of(y, probs)
        f1 = _f1(ranked.tp, np.arange(1, n + 1), ranked.positives[:, None])
        gains = np.diff(f1, axis=1, prepend=0.0) * _label_weights(metric, ranked.positives)[:, None]
        return _events_cut(ranked.desc.ravel(), gains.ravel(), 0.0)
    # sample-wise: a row's score changes at each of its own scores, its labels taken highest first
    order = np.argsort(probs, axis=1)[:, ::-1]
    inter = np.cumsum(np.take_along_axis(y, order, 1), axis=1)
    inter = np.hstack([np.zeros((n, 1), dtype=inter.dtype), inter])
    rows = _ROWWISE[metric](inter, np.arange(n_labels + 1), y.sum(axis=1)[:, None])
    gains = np.diff(rows, axis=1) / n
    return _events_cut(np.take_along_axis(probs, order, 1).ravel(), gains.ravel(), rows[:, 0].sum() / n)


def _binary_value(metric: str, tp: Any, predicted: Any, positives: int, n: int) -> Any:
    """A binary task's metric (`metrics.score`) from its counts: true positives and predicted positives among
    n rows with `positives` positives."""
    tn = n - predicted - positives + tp
    if metric in ACCURACY_WHEN_SINGLE_LABEL:
        return (tp + tn) / n
    f1 = _f1(tp, predicted, positives)
    if metric == "f1":
        return f1
    f1_negative = _f1(tn, n - predicted, n - positives)
    if metric == "f1_macro":
        return (f1 + f1_negative) / 2
    return (positives * f1 + (n - positives) * f1_negative) / n  # f1_weighted: by each class's rows


def _binary_cut(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """The best threshold of a binary task over every cut: the negative class's F1 (in f1_macro / f1_weighted)
    and accuracy gain from cutting between negatives too, so no cut is skipped."""
    order = np.argsort(probs[:, 0])[::-1]
    n, positives = len(order), int(y[:, 0].sum())
    tp = np.cumsum(y[order, 0], dtype=np.int64)
    values = _binary_value(metric, tp, np.arange(1, n + 1), positives, n)
    cut, best = _best_cut(probs[order, 0], values, _binary_value(metric, 0, 0, positives, n))
    return np.array([float(cut)]), float(best)


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


def _multiclass_bias(y: np.ndarray, probs: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """Coordinate ascent on bias_j; each step exact: row i flips to class j once bias_j passes its margin."""
    n, n_classes = probs.shape
    truth = y.argmax(axis=1)
    positives = np.bincount(truth, minlength=n_classes)
    # one class per row: accuracy, or the classes' F1s averaged (macro or weighted)
    weights = None if metric in ACCURACY_WHEN_SINGLE_LABEL else _label_weights(metric, positives)
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
                base = float(weights @ _f1(tp, pred, positives))
                # flipping a row takes it from class o: F1 of o after minus before its r-th loss
                lost = _cumcount_by_group(np.ones(n, dtype=np.int64), o)
                lost_tp = _cumcount_by_group(now_right.astype(np.int64), o)
                after = _f1(tp[o] - lost_tp, pred[o] - lost, positives[o])
                prior = _f1(tp[o] - lost_tp + now_right, pred[o] - lost + 1, positives[o])
                gained = _f1(np.cumsum(flip_right), np.arange(1, n + 1), positives[j])
                values = base + np.cumsum(weights[o] * (after - prior)) + weights[j] * gained
            cut, _ = _best_cut(-margin[order], values, base)
            bias[j] = -float(cut)
        if np.array_equal(before, bias):
            break
    # scored by metrics.score: a row whose margin equals the bias exactly is an argmax tie
    return bias, evaluate(y, probs, "multiclass", metric, bias)


def fit_cuts(
    y: np.ndarray,
    probs: np.ndarray,
    task: str,
    metric: str,
    strategy: str = "per_label",
    value: float = 0.5,
    tune_bias: bool = False,
) -> tuple[np.ndarray, float]:
    """Tunes the decision on (y, probs) for `metric`.

    Args:
        y: (n, L) 0/1 truth (one-hot for multiclass, one column for binary).
        probs: (n, L) probabilities.
        task: multilabel | multiclass | binary.
        metric: a `metrics.METRIC_NAMES` name.
        strategy: per_label | global | fixed (multilabel and binary).
        value: the threshold of `fixed`.
        tune_bias: multiclass: tune an additive per-class bias (else plain argmax).

    Returns:
        (cuts, metric value on these rows): per-label thresholds, or the multiclass bias.

    Raises:
        KaggleMLCError: a metric the task has no meaning for (`metrics.metric_problem`).
    """
    check_metric(metric, task)
    n_labels = probs.shape[1]
    if task == "multiclass":
        if tune_bias and metric not in PROB_METRICS:
            return _multiclass_bias(y, probs, metric)
        cuts = np.zeros(n_labels)
    elif metric in PROB_METRICS:
        cuts = np.full(n_labels, 0.5)
    elif strategy == "fixed":
        cuts = np.full(n_labels, value)
    elif task == "binary":  # one label: per_label and global are the same search
        return _binary_cut(y, probs, metric)
    else:
        if strategy == "global":
            cut, best = _global(y, probs, metric)
            return np.full(n_labels, cut), best
        return _per_label(y, probs, metric)
    return cuts, evaluate(y, probs, task, metric, cuts)


def cut_objective(
    y: np.ndarray, task: str, metric: str, strategy: str = "per_label", value: float = 0.5, tune_bias: bool = False
) -> Callable[[np.ndarray], float]:
    """probs -> `fit_cuts(y, probs, task, metric, strategy, value, tune_bias)[1]`: the metric after tuning the
    decision on these rows (`LabelwiseF1` where it applies)."""
    check_metric(metric, task)
    # each label its own best F1 cut: multilabel macro / weighted F1, and the positive class's F1 of a binary task
    labelwise = task == "multilabel" and metric in _LABELWISE or task == "binary" and metric == "f1"
    if strategy == "per_label" and labelwise:
        return LabelwiseF1(y, metric)
    return lambda probs: fit_cuts(y, probs, task, metric, strategy, value, tune_bias)[1]


# ---- the stage -----------------------------------------------------------------------------------


def _named(cuts: np.ndarray, task: str, label_names: list[str]) -> dict[str, Any]:
    mapping = {name: float(c) for name, c in zip(label_names, cuts, strict=True)}
    return {"thresholds": {}, "bias": mapping} if task == "multiclass" else {"thresholds": mapping}


def _rows(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`a[keep]` of an (n, L) array stored label-major, stored so too: the searches' label-major copies are free."""
    return np.compress(keep, a.T, axis=1).T


class _ByFold:
    """Tuning on some folds and scoring others, as `_report` asks: any task, metric and strategy."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, fold: np.ndarray, task: str, metric: str, **tuning):
        self.y, self.probs = np.ascontiguousarray(y.T).T, np.ascontiguousarray(probs.T).T
        self.fold, self.groups = fold, np.unique(fold)
        self.task, self.metric, self.tuning = task, metric, tuning
        self._held: dict[Any, tuple[np.ndarray, np.ndarray]] = {}

    def rows(self, k: Any) -> int:
        return int((self.fold == k).sum())

    def held(self, k: Any) -> tuple[np.ndarray, np.ndarray]:
        """(y, probs) of fold k."""
        if k not in self._held:
            held = self.fold == k
            self._held[k] = _rows(self.y, held), _rows(self.probs, held)
        return self._held[k]

    def fit(self, held: Any = None) -> np.ndarray:
        """The cuts tuned on every fold but `held`."""
        y, probs = self.y, self.probs
        if held is not None:
            y, probs = _rows(y, self.fold != held), _rows(probs, self.fold != held)
        return fit_cuts(y, probs, self.task, self.metric, **self.tuning)[0]

    def score_fold(self, k: Any, cuts: np.ndarray) -> float:
        """The metric on fold k decided with `cuts`."""
        return evaluate(*self.held(k), self.task, self.metric, cuts)

    def score(self, cuts_of_fold: list[np.ndarray]) -> float:
        """The metric on all rows, each fold's decided with its own cuts (in `groups` order)."""
        if self.metric in PROB_METRICS or all(c is cuts_of_fold[0] for c in cuts_of_fold):
            return evaluate(self.y, self.probs, self.task, self.metric, cuts_of_fold[0])
        hard = np.zeros_like(self.y, dtype=np.int8)
        for k, cuts in zip(self.groups, cuts_of_fold, strict=True):
            hard[self.fold == k] = apply_cuts(self.held(k)[1], self.task, cuts)
        return _score_decided(self.y, hard, self.task, self.metric)


class _ByFoldSorted:
    """`_ByFold` for per-label F1 cuts (f1_macro / f1_weighted, multilabel): every fit and score comes from
    one sort of each fold's scores (`_Sorted`), the same values the row-wise way gives."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, fold: np.ndarray, task: str, metric: str, **tuning):
        self.sorted, self.metric = _Sorted(y, probs, fold), metric
        self.groups = self.sorted.groups
        self._rows = {k: len(a) for k, a in zip(self.groups, self.sorted.scores[0], strict=True)}

    def rows(self, k: Any) -> int:
        return self._rows[k]

    def fit(self, held: Any = None) -> np.ndarray:
        return self.sorted.fit(held)[0]

    def score_fold(self, k: Any, cuts: np.ndarray) -> float:
        g = int(np.flatnonzero(self.groups == k)[0])
        tp, predicted, positives = self.sorted.counts(cuts)
        return _labelwise_score(tp[:, g], predicted[:, g], positives[:, g], self.metric)

    def score(self, cuts_of_fold: list[np.ndarray]) -> float:
        total = np.zeros((3, len(self.sorted.scores)), dtype=np.int64)
        for g, cuts in enumerate(cuts_of_fold):
            total += np.stack(self.sorted.counts(cuts))[:, :, g]
        return _labelwise_score(*total, self.metric)


def _report(y, probs, fold, label_names, task, metric, **tuning) -> dict[str, Any]:
    sortable = task == "multilabel" and metric in _LABELWISE and tuning["strategy"] == "per_label"
    by_fold = (_ByFoldSorted if sortable else _ByFold)(y, probs, fold, task, metric, **tuning)
    cuts = by_fold.fit()
    untuned = np.zeros(len(label_names)) if task == "multiclass" else np.full(len(label_names), 0.5)
    per_fold, fold_cuts = [], []
    for k in by_fold.groups:
        fold_cuts.append(by_fold.fit(held=k))
        per_fold.append(
            {
                "fold": int(k),
                "rows": by_fold.rows(k),
                "cv_at_0.5": by_fold.score_fold(k, untuned),
                "cv_tuned": by_fold.score_fold(k, cuts),
                "cv_nested": by_fold.score_fold(k, fold_cuts[-1]),
                **_named(fold_cuts[-1], task, label_names),
            }
        )
    is_prob = metric in PROB_METRICS
    strategy = tuning["strategy"] if task != "multiclass" else "argmax+bias" if tuning["tune_bias"] else "argmax"
    report = {
        "strategy": "none" if is_prob else strategy,
        "metric": metric,
        "task": task,
        **_named(cuts, task, label_names),
        "cv_at_0.5": by_fold.score([untuned] * len(by_fold.groups)),
        "cv_tuned": by_fold.score([cuts] * len(by_fold.groups)),
        "cv_nested": by_fold.score(fold_cuts),
        "cv_nested_fold_mean": float(np.mean([f["cv_nested"] for f in per_fold])),
        "per_fold": per_fold,
    }
    if is_prob:
        report["note"] = f"{metric} scores probabilities: thresholds cannot change it; 0.5 (argmax) is kept"
    return report


def _tuning(cfg: Config) -> dict[str, Any]:
    th = cfg.thresholds
    return {"strategy": th.strategy, "value": th.value, "tune_bias": th.multiclass_bias}


def fingerprint(cfg: Config, data: CompetitionData, probs: np.ndarray) -> str:
    """sha256 of what `cv_at_0.5` and `cv_tuned` depend on: the OOF probabilities, the truth and the settings."""
    settings = [data.task, cfg.competition.metric, _tuning(cfg), probs.shape, str(probs.dtype), str(data.y.dtype)]
    digest = hashlib.sha256(json.dumps(settings).encode())
    digest.update(np.ascontiguousarray(probs.T))  # label-major: no copy for what `read_probs` returns
    digest.update(np.ascontiguousarray(data.y))
    return digest.hexdigest()


def threshold_report(cfg: Config, data: CompetitionData, probs: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """What thresholds.json holds for OOF `probs` (rows in `data.train_ids` order, `fold` of each row)."""
    report = _report(data.y, probs, fold, data.label_names, data.task, cfg.competition.metric, **_tuning(cfg))
    return {**report, "fingerprint": fingerprint(cfg, data, probs)}


def cv_before_after(cfg: Config, data: CompetitionData, probs: np.ndarray, run_dir: Path) -> tuple[float, float]:
    """(CV at 0.5, CV tuned) of OOF `probs` for `cfg`'s metric and tuning settings.

    Taken from `run_dir`'s thresholds.json when it was tuned on these very probabilities, truth and
    settings (its fingerprint matches), else computed.
    """
    path = run_dir / THRESHOLDS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint(cfg, data, probs):
            return float(saved["cv_at_0.5"]), float(saved["cv_tuned"])
    metric, n_labels = cfg.competition.metric, len(data.label_names)
    cuts, _ = fit_cuts(data.y, probs, data.task, metric, **_tuning(cfg))
    untuned = np.zeros(n_labels) if data.task == "multiclass" else np.full(n_labels, 0.5)
    return evaluate(data.y, probs, data.task, metric, untuned), evaluate(data.y, probs, data.task, metric, cuts)


def write_thresholds(cfg: Config, report: dict[str, Any]) -> Path:
    """Writes `threshold_report`'s result to `<output_dir>/thresholds.json` and says what tuning gained."""
    path = write_json(cfg.run_dir / THRESHOLDS_FILE, report)
    metric = report["metric"]
    if metric in PROB_METRICS:
        cv = report["cv_tuned"]
        info(f"{metric} scores probabilities, so thresholds cannot change it: 0.5 written; CV {cv:.4f} → {path}")
    else:
        info(
            f"thresholds ({report['strategy']}, {metric}): CV {report['cv_at_0.5']:.4f} untuned → "
            f"{report['cv_tuned']:.4f} tuned, {report['cv_nested']:.4f} nested (tuned on the other folds) → {path}"
        )
    return path


def tune_thresholds(cfg: Config, data: CompetitionData | None = None) -> Path:
    """Tunes thresholds on `oof.parquet` and writes `thresholds.json` (with CV before, after and nested).

    Args:
        cfg: the experiment config (`thresholds.strategy`, `.value`, `.multiclass_bias`, `competition.metric`).
        data: the competition when the caller has loaded it already; default: loaded here (through the
            experiment's competition cache).

    Returns:
        The path of thresholds.json.

    Raises:
        KaggleMLCError: oof.parquet or folds.parquet missing or not matching the training file.
    """
    if data is None:
        with cached_competition(cfg.competition, cfg.run_dir, with_test=False, texts=False) as data:
            return tune_thresholds(cfg, data)
    ids = data.ids("train")
    probs = read_probs(cfg.run_dir / OOF_FILE, ids, data.label_names, "run `kagglemlc train` first", unique=True)
    return write_thresholds(cfg, threshold_report(cfg, data, probs, fold_of_rows(cfg.run_dir, ids)))
