"""Decision thresholds tuned on out-of-fold probabilities for the competition metric, and the decisions they make.

    cuts, value = fit_cuts(y, probs, "multilabel", "f1_macro")   # per-label thresholds, the metric at them
    hard = apply_cuts(test_probs, "multilabel", cuts)             # (n, L) 0/1
    evaluate(y, probs, "multilabel", "f1_macro", cuts) == value

Every search is exact over all distinct OOF scores and vectorised with numpy: scores are sorted once
per label, and the metric at every cut comes from cumulative counts.
- f1_macro / f1_weighted (multilabel): labels are independent, so each label takes its own best F1 cut
  (only a cut at a positive's score can be best: those are scored, from two sorts and binary search;
  `label_f1`).
- f1_micro / jaccard / f1_samples / accuracy (multilabel) couple the labels: coordinate ascent from 0.5, each
  step the exact best cut for one label with the others fixed (never lowers the score; `sweep`).
- `thresholds.strategy: global`: one threshold for every label, exact over all n·L scores.
- binary: one threshold, exact over every cut, for what the metric means there (`metrics`: `f1` the positive
  class's F1, `f1_macro` / `f1_weighted` both classes' F1s averaged, the others accuracy).
- multiclass: argmax; optionally an additive per-class bias tuned the same way (`tune_bias`).
- roc_auc / log_loss score probabilities: thresholds cannot change them, 0.5 is written.
- regression: scores are not decided, except into grades for qwk: cut points between the grades, tuned
  (`fit_grade_cuts`); untuned = rounding to the nearest grade.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize

from kagglemlc.scoring.label_f1 import BestF1, LabelF1
from kagglemlc.scoring.metrics import PROB_METRICS, ROW_METRICS, check_metric, grades, hard_predictions, score
from kagglemlc.scoring.sweep import (
    LABELWISE,
    Ranked,
    ascend_micro,
    ascend_rows,
    binary_cut,
    global_cut,
    multiclass_bias,
)


def untuned(task: str, n_labels: int) -> np.ndarray:
    """The cuts before tuning: 0.5 per label, no multiclass bias, or none for regression (qwk: rounding)."""
    if task == "regression":
        return np.zeros(0)
    return np.zeros(n_labels) if task == "multiclass" else np.full(n_labels, 0.5)


def apply_cuts(probs: np.ndarray, task: str, cuts: np.ndarray) -> np.ndarray:
    """(n, L) 0/1 labels: `probs >= cuts` per label, or for multiclass one-hot argmax(probs + cuts); regression:
    the scores as they are, or with grade cuts (qwk) the grades they give."""
    if task == "regression":
        return grades(probs, probs, cuts).astype(np.float64) if len(cuts) else probs
    return hard_predictions(probs + cuts if task == "multiclass" else probs, task, cuts)


def fit_grade_cuts(y: np.ndarray, scores: np.ndarray, starts: int = 8, seed: int = 0) -> tuple[np.ndarray, float]:
    """QWK cut points between consecutive integer grades, tuned on (y, scores) as the AES 2.0 winners did: a
    Nelder-Mead search over the cuts from the midpoints and `starts` jittered copies of them, the best kept (never
    below rounding). Returns ([lowest grade, c1, ..., c_(G-1)], qwk)."""
    lo, hi = int(np.rint(y.min())), int(np.rint(y.max()))
    if hi == lo:
        return np.zeros(0), score("qwk", y, scores, "regression")
    mid = np.arange(lo, hi) + 0.5

    def qwk(cuts: np.ndarray) -> float:
        return score("qwk", y, scores, "regression", np.concatenate([[lo], np.sort(cuts)]))

    best, best_value = mid, qwk(mid)
    rng = np.random.default_rng(seed)
    for start in [mid] + [mid + rng.normal(0, 0.25, len(mid)) for _ in range(starts)]:
        options = {"xatol": 1e-3, "fatol": 1e-6}
        found = optimize.minimize(lambda c: -qwk(c), start, method="Nelder-Mead", options=options)
        if -found.fun > best_value:
            best, best_value = np.sort(found.x), -found.fun
    return np.concatenate([[lo], best]), best_value


def evaluate(y: np.ndarray, probs: np.ndarray, task: str, metric: str, cuts: np.ndarray) -> float:
    """The competition metric (`metrics.score`) of `probs` decided with `cuts`; probability metrics ignore them."""
    if task == "multiclass" and metric not in PROB_METRICS:
        probs = probs + cuts  # the bias, added before the argmax
    return score(metric, y, probs, task, cuts)


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
    if task == "regression":  # only qwk's grades have cuts to tune
        return fit_grade_cuts(y, probs) if metric == "qwk" else (np.zeros(0), score(metric, y, probs, task))
    if task == "multiclass":
        if tune_bias and metric not in PROB_METRICS:
            return multiclass_bias(y, probs, metric)
        cuts = np.zeros(n_labels)
    elif metric in PROB_METRICS:
        cuts = np.full(n_labels, 0.5)
    elif strategy == "fixed":
        cuts = np.full(n_labels, value)
    elif task == "binary":  # one label: per_label and global are the same search
        return binary_cut(y, probs, metric)
    elif strategy == "global":
        cut, best = global_cut(y, probs, metric)
        return np.full(n_labels, cut), best
    elif metric in LABELWISE:
        return LabelF1(y, probs).value(metric)
    elif metric == "f1_micro":
        return ascend_micro(Ranked.of(y, probs))
    else:
        return ascend_rows(Ranked.of(y, probs), ROW_METRICS[metric])
    return cuts, evaluate(y, probs, task, metric, cuts)


def cut_objective(
    y: np.ndarray, task: str, metric: str, strategy: str = "per_label", value: float = 0.5, tune_bias: bool = False
) -> Callable[[np.ndarray], float]:
    """probs -> `fit_cuts(y, probs, task, metric, strategy, value, tune_bias)[1]`: the metric after tuning the
    decision on these rows (`label_f1.BestF1` where it applies)."""
    check_metric(metric, task)
    # each label its own best F1 cut: multilabel macro / weighted F1, and the positive class's F1 of a binary task
    own_f1 = task == "multilabel" and metric in LABELWISE or task == "binary" and metric == "f1"
    if strategy == "per_label" and own_f1:
        return BestF1(y, metric)
    return lambda probs: fit_cuts(y, probs, task, metric, strategy, value, tune_bias)[1]
