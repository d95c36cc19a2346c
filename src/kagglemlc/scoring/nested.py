"""What tuning the decision gains, measured on the folds: the metric untuned, tuned on all rows, and nested (each
fold decided with cuts tuned on the other folds), overall and per fold.

    report = cut_report(y, oof, fold, label_names, "multilabel", "f1_macro", strategy="per_label", value=0.5,
                        tune_bias=False)
    report["cv_at_0.5"], report["cv_tuned"], report["cv_nested"]   # before, after, honest estimate

`cv_nested` tunes on K−1 folds' OOF and scores the held-out fold, so the gap to `cv_tuned` shows how
much of the gain is the thresholds fitting noise. thresholds.json holds this report (`data.thresholds`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kagglemlc.scoring.cuts import apply_cuts, evaluate, fit_cuts, untuned
from kagglemlc.scoring.label_f1 import LabelF1
from kagglemlc.scoring.metrics import PROB_METRICS, labelwise_f1, score
from kagglemlc.scoring.sweep import LABELWISE


def _named(cuts: np.ndarray, task: str, label_names: list[str]) -> dict[str, Any]:
    if task == "regression":  # qwk: [lowest grade, cut points]; other metrics: none
        return {"thresholds": {}, "grade_cuts": [float(c) for c in cuts]}
    mapping = {name: float(c) for name, c in zip(label_names, cuts, strict=True)}
    return {"thresholds": {}, "bias": mapping} if task == "multiclass" else {"thresholds": mapping}


def _rows(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`a[keep]` of an (n, L) array stored label-major, stored so too: the searches' label-major copies are free."""
    return np.compress(keep, a.T, axis=1).T


class _ByFold:
    """Tuning on some folds and scoring others, as `cut_report` asks: any task, metric and strategy."""

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
        hard = np.zeros_like(self.y, dtype=np.float64 if self.task == "regression" else np.int8)
        for k, cuts in zip(self.groups, cuts_of_fold, strict=True):
            hard[self.fold == k] = apply_cuts(self.held(k)[1], self.task, cuts)
        return score(self.metric, self.y, hard, self.task)


class _ByFoldSorted:
    """`_ByFold` for per-label F1 cuts (f1_macro / f1_weighted, multilabel): every fit and score comes from
    one sort of each fold's scores (`label_f1.LabelF1`), the same values the row-wise way gives."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, fold: np.ndarray, task: str, metric: str, **tuning):
        self.sorted, self.metric = LabelF1(y, probs, fold), metric
        self.groups = self.sorted.groups
        self._rows = {k: len(a) for k, a in zip(self.groups, self.sorted.scores[0], strict=True)}

    def rows(self, k: Any) -> int:
        return self._rows[k]

    def fit(self, held: Any = None) -> np.ndarray:
        return self.sorted.fit(held)[0]

    def score_fold(self, k: Any, cuts: np.ndarray) -> float:
        g = int(np.flatnonzero(self.groups == k)[0])
        tp, predicted, positives = self.sorted.counts(cuts)
        return labelwise_f1(tp[:, g], predicted[:, g], positives[:, g], self.metric)

    def score(self, cuts_of_fold: list[np.ndarray]) -> float:
        total = np.zeros((3, len(self.sorted.scores)), dtype=np.int64)
        for g, cuts in enumerate(cuts_of_fold):
            total += np.stack(self.sorted.counts(cuts))[:, :, g]
        return labelwise_f1(*total, self.metric)


def cut_report(
    y: np.ndarray,
    probs: np.ndarray,
    fold: np.ndarray,
    label_names: list[str],
    task: str,
    metric: str,
    **tuning: Any,
) -> dict[str, Any]:
    """The cuts tuned on all rows and on every fold but one, and the metric they give.

    Args:
        y, probs: (n, L) truth and out-of-fold probabilities (`cuts.fit_cuts`).
        fold: (n,) the fold of each row.
        label_names: the labels, in column order (the keys of the cuts).
        task, metric: as for `cuts.fit_cuts`.
        **tuning: `fit_cuts`' strategy, value and tune_bias.

    Returns:
        What thresholds.json holds, less the fingerprint: strategy, metric, task, thresholds (and multiclass
        bias), cv_at_0.5, cv_tuned, cv_nested, cv_nested_fold_mean, per_fold (those per fold, with its cuts).
    """
    sortable = task == "multilabel" and metric in LABELWISE and tuning["strategy"] == "per_label"
    by_fold = (_ByFoldSorted if sortable else _ByFold)(y, probs, fold, task, metric, **tuning)
    cuts = by_fold.fit()
    at_half = untuned(task, len(label_names))
    per_fold, fold_cuts = [], []
    for k in by_fold.groups:
        fold_cuts.append(by_fold.fit(held=k))
        per_fold.append(
            {
                "fold": int(k),
                "rows": by_fold.rows(k),
                "cv_at_0.5": by_fold.score_fold(k, at_half),
                "cv_tuned": by_fold.score_fold(k, cuts),
                "cv_nested": by_fold.score_fold(k, fold_cuts[-1]),
                **_named(fold_cuts[-1], task, label_names),
            }
        )
    is_prob = metric in PROB_METRICS or task == "regression" and metric != "qwk"  # nothing to decide
    strategy = tuning["strategy"] if task != "multiclass" else "argmax+bias" if tuning["tune_bias"] else "argmax"
    strategy = "grade cuts" if task == "regression" else strategy
    report = {
        "strategy": "none" if is_prob else strategy,
        "metric": metric,
        "task": task,
        **_named(cuts, task, label_names),
        "cv_at_0.5": by_fold.score([at_half] * len(by_fold.groups)),
        "cv_tuned": by_fold.score([cuts] * len(by_fold.groups)),
        "cv_nested": by_fold.score(fold_cuts),
        "cv_nested_fold_mean": float(np.mean([f["cv_nested"] for f in per_fold])),
        "per_fold": per_fold,
    }
    if is_prob:
        what = "scores" if task == "regression" else "probabilities"
        report["note"] = f"{metric} scores {what}: thresholds cannot change it; nothing is tuned"
    return report
