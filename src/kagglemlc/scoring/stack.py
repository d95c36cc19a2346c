"""Stacking: a small model on the members' out-of-fold probabilities, fitted fold by fold so that the stacked OOF of
a fold comes from a stacker that never saw that fold's rows.

    oof, test = stack(oofs, y, fold, task, tests)     # members' (n, L) probabilities → stacked probabilities

Multilabel and binary: per label, a logistic regression on the members' logits for that label. Multiclass: one
multinomial logistic regression on every member's class log-probabilities. The test rows are predicted by the
stacker fitted on all OOF rows. L2-regularised (scikit-learn's default C=1), so a handful of members on a few
thousand rows cannot overfit much; a label without both classes in a fold's training rows keeps the members' mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _features(members: Sequence[np.ndarray], label: int | None) -> np.ndarray:
    """(n, M) logits of one label, or (n, M·C) log-probabilities of every class (multiclass: `label` None)."""
    if label is None:
        return np.log(np.clip(np.concatenate([m.astype(np.float64) for m in members], axis=1), EPS, 1.0))
    return np.column_stack([_logit(m[:, label]) for m in members])


def _fit_predict(
    x_fit: np.ndarray, y_fit: np.ndarray, x_out: np.ndarray, fallback: np.ndarray, n_classes: int | None
) -> np.ndarray:
    """The positive class's probability (`n_classes` None) or every class's, for the rows of `x_out`; `fallback`
    when `y_fit` holds one class only."""
    if len(np.unique(y_fit)) < 2:
        return fallback
    model = LogisticRegression(max_iter=1000).fit(x_fit, y_fit)
    probs = model.predict_proba(x_out)
    if n_classes is None:
        return probs[:, 1]
    full = np.zeros((len(x_out), n_classes))
    full[:, model.classes_] = probs  # a class absent from the fitted rows gets 0
    return full


def stack(
    oofs: Sequence[np.ndarray],
    y: np.ndarray,
    fold: np.ndarray,
    task: str,
    tests: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Stacked OOF probabilities (each fold's rows from a stacker fitted on the other folds' rows) and stacked test
    probabilities (from a stacker fitted on every OOF row).

    Args:
        oofs: each member's (n, L) OOF probabilities, rows in the order of `y` and `fold`.
        y: (n, L) 0/1 truth (one-hot for multiclass).
        fold: (n,) the fold of every row.
        tests: each member's (m, L) test probabilities, or None.
    """
    n, n_labels = y.shape
    out = np.zeros((n, n_labels), dtype=np.float64)
    test_out = None if tests is None else np.zeros((len(tests[0]), n_labels), dtype=np.float64)
    mean = np.mean([m.astype(np.float64) for m in oofs], axis=0)
    test_mean = None if tests is None else np.mean([t.astype(np.float64) for t in tests], axis=0)
    labels = [None] if task == "multiclass" else list(range(n_labels))
    for label in labels:
        x = _features(oofs, label)
        x_test = None if tests is None else _features(tests, label)
        target = y.argmax(axis=1) if label is None else y[:, label]
        cols = slice(None) if label is None else label
        classes = n_labels if label is None else None
        for k in np.unique(fold):
            held = fold == k
            out[held, cols] = _fit_predict(x[~held], target[~held], x[held], mean[held][:, cols], classes)
        if tests is not None:
            test_out[:, cols] = _fit_predict(x, target, x_test, test_mean[:, cols], classes)
    return out.astype(np.float32), None if test_out is None else test_out.astype(np.float32)
