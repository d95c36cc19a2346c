"""Every metric equals its scikit-learn definition, for every task; tuned thresholds report what `score` gives.

The definitions (`metrics` module docstring): single-label tasks are scored on class indices with every class
counted (binary: classes 0 and 1), multilabel tasks on the label matrix, one label per column.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from kagglemlc.config.metric_names import METRIC_NAMES, metric_problem
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.scoring.cuts import cut_objective, fit_cuts
from kagglemlc.scoring.metrics import score
from kagglemlc.scoring.nested import cut_report

GRID = [0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]
"""Probabilities and thresholds drawn from a few values: ties, scores exactly at the threshold, 0 and 1."""
AVERAGES = {"f1_macro": "macro", "f1_micro": "micro", "f1_weighted": "weighted"}


# ---- the defects this module was written for -----------------------------------------------------


def test_multiclass_log_loss_is_the_cross_entropy_of_the_true_class():
    """It used to score every one-hot cell as its own binary prediction (0.416 here)."""
    y = np.eye(3, dtype=np.int8)[[0, 1, 2, 1]]
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    loss = -np.mean(np.log([0.7, 0.4, 0.6, 0.4]))  # mean -log p(true class): 0.675
    assert loss == pytest.approx(skm.log_loss([0, 1, 2, 1], probs, labels=[0, 1, 2]))
    assert score("log_loss", y, probs, "multiclass") == pytest.approx(-loss)  # negated: higher is better


def test_binary_f1_macro_averages_both_classes_and_f1_is_the_positive_class():
    """Binary f1_macro used to be the positive class's F1 (0.5 here, where the macro average is 0.583)."""
    y = np.array([[1], [1], [0], [0], [0]])
    probs = np.array([[0.9], [0.2], [0.8], [0.1], [0.3]])  # predicts 1, 0, 1, 0, 0
    assert score("f1_macro", y, probs, "binary") == pytest.approx((1 / 2 + 2 / 3) / 2)  # 0.583
    assert score("f1", y, probs, "binary") == pytest.approx(0.5)


# ---- every metric against scikit-learn, on random inputs -----------------------------------------


def _column(draw, n: int) -> list[int]:
    """A 0/1 label column: random, or empty, or all ones."""
    kind = draw(st.sampled_from(["random", "random", "empty", "full"]))
    if kind == "random":
        return draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return [int(kind == "full")] * n


@st.composite
def cases(draw, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, probs, thresholds) of a task: few rows, tied probabilities, empty classes and constant labels."""
    n = draw(st.integers(1, 10))
    if task == "multiclass":
        n_labels = draw(st.integers(2, 4))
        y = np.eye(n_labels, dtype=np.int8)[draw(st.lists(st.integers(0, n_labels - 1), min_size=n, max_size=n))]
    else:
        n_labels = 1 if task == "binary" else draw(st.integers(2, 4))
        y = np.array([_column(draw, n) for _ in range(n_labels)], dtype=np.int8).T
    cells = st.lists(st.sampled_from(GRID), min_size=n * n_labels, max_size=n * n_labels)
    probs = np.array(draw(cells), dtype=draw(st.sampled_from([np.float32, np.float64]))).reshape(n, n_labels)
    if task == "multiclass":  # softmax rows: sum to one
        probs[probs.sum(axis=1) == 0] = 1
        probs = probs / probs.sum(axis=1, keepdims=True)
    thresholds = np.array(draw(st.lists(st.sampled_from(GRID), min_size=n_labels, max_size=n_labels)))
    return y, probs, thresholds


def reference(metric: str, y: np.ndarray, probs: np.ndarray, task: str, thresholds: np.ndarray) -> float:
    """The metric as scikit-learn computes it from its definition (higher is better: log loss negated)."""
    n, n_labels = y.shape
    if metric == "log_loss":
        if task == "multiclass":
            return -skm.log_loss(y.argmax(axis=1), probs, labels=range(n_labels))
        return -np.mean([skm.log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(n_labels)])
    if metric == "roc_auc":  # documented: the mean over labels with both classes present, NaN when none has
        both = [j for j in range(n_labels) if 0 < y[:, j].sum() < n]
        return np.mean([skm.roc_auc_score(y[:, j], probs[:, j]) for j in both]) if both else np.nan
    if task == "multilabel":
        pred = (probs >= thresholds).astype(np.int8)
        if metric == "accuracy":
            return skm.accuracy_score(y, pred)
        if metric == "jaccard":
            return skm.jaccard_score(y, pred, average="samples", zero_division=0)
        average = AVERAGES.get(metric, "samples")
        return skm.f1_score(y, pred, average=average, zero_division=0)
    # single-label: class indices, every class counted
    if task == "multiclass":
        truth, pred, classes = y.argmax(axis=1), probs.argmax(axis=1), list(range(n_labels))
    else:
        truth, pred, classes = y[:, 0], (probs[:, 0] >= thresholds[0]).astype(np.int8), [0, 1]
    if metric == "f1":
        return skm.f1_score(truth, pred, zero_division=0)
    if metric in AVERAGES:
        return skm.f1_score(truth, pred, labels=classes, average=AVERAGES[metric], zero_division=0)
    if metric == "accuracy":
        return skm.accuracy_score(truth, pred)
    # f1_samples / jaccard: rows' sets of classes, one class each (documented: they equal accuracy)
    one_hot = np.eye(len(classes), dtype=np.int8)
    samples = skm.jaccard_score if metric == "jaccard" else skm.f1_score
    value = samples(one_hot[truth], one_hot[pred], average="samples", zero_division=0)
    assert value == pytest.approx(skm.accuracy_score(truth, pred))
    return value


def check_every_metric(y: np.ndarray, probs: np.ndarray, task: str, thresholds: np.ndarray) -> None:
    for metric in METRIC_NAMES:
        if metric_problem(metric, task):
            with pytest.raises(KaggleMLCError, match=metric):
                score(metric, y, probs, task, thresholds)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no sklearn warning leaks (undefined F1, probabilities not summing to 1)
            got = score(metric, y, probs, task, thresholds)
        expected = reference(metric, y, probs, task, thresholds)
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9, nan_ok=True), (metric, task)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cases("multilabel"))
def test_multilabel_metrics_equal_sklearn(case):
    check_every_metric(*case[:2], "multilabel", case[2])


@PROPERTY
@given(cases("multiclass"))
def test_multiclass_metrics_equal_sklearn(case):
    check_every_metric(*case[:2], "multiclass", case[2])


@PROPERTY
@given(cases("binary"))
def test_binary_metrics_equal_sklearn(case):
    check_every_metric(*case[:2], "binary", case[2])


def test_multiclass_roc_auc_is_sklearns_one_vs_rest_when_every_class_occurs():
    rng = np.random.default_rng(0)
    truth = np.r_[0, 1, 2, rng.integers(0, 3, 37)]
    probs = rng.dirichlet(np.ones(3), size=40)
    expected = skm.roc_auc_score(truth, probs, multi_class="ovr", average="macro")
    assert score("roc_auc", np.eye(3)[truth], probs, "multiclass") == pytest.approx(expected)


def test_multilabel_with_one_label_scores_that_label():
    """sklearn reads a single column as the classes 0 and 1 of a binary task; a multilabel metric averages over
    labels, so one label's f1_macro is its F1 and the sample-wise metrics count its rows."""
    y = np.array([[1], [0], [1], [0]])
    probs = np.array([[0.9], [0.8], [0.1], [0.2]])  # predicts 1, 1, 0, 0
    assert score("f1_macro", y, probs, "multilabel") == pytest.approx(0.5)  # binary macro would be 0.5 too
    y, probs = np.array([[1], [1], [1], [0]]), np.array([[0.9], [0.8], [0.1], [0.2]])  # TP 2, FN 1, TN 1
    assert score("f1_macro", y, probs, "multilabel") == pytest.approx(0.8)  # binary macro: (0.8 + 2/3) / 2
    assert score("f1_weighted", y, probs, "multilabel") == pytest.approx(0.8)
    assert score("f1_micro", y, probs, "multilabel") == pytest.approx(0.8)
    assert score("f1_samples", y, probs, "multilabel") == pytest.approx(0.5)  # the rows with the label right
    assert score("jaccard", y, probs, "multilabel") == pytest.approx(0.5)
    assert score("accuracy", y, probs, "multilabel") == pytest.approx(0.75)


def test_f1_is_for_binary_tasks_only():
    assert metric_problem("f1", "binary") is None
    for task in ("multilabel", "multiclass"):
        assert "f1_macro" in metric_problem("f1", task)
        with pytest.raises(KaggleMLCError, match="'f1'"):
            score("f1", np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 1, 2]], task)
        with pytest.raises(KaggleMLCError, match="'f1'"):
            fit_cuts(np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 1, 2]], task, "f1")


# ---- tuned thresholds report the metric `score` gives at them ------------------------------------


def _toy(task: str, seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Informative, miscalibrated probabilities with ties: tuning has something to gain."""
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        y = np.eye(3, dtype=np.int8)[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
        probs = rng.dirichlet(np.ones(3), size=n) + 0.2 * y
        return y, probs / probs.sum(axis=1, keepdims=True)
    rates = [0.3] if task == "binary" else [0.3, 0.05, 0.5, 0.0, 1.0]
    y = (rng.random((n, len(rates))) < rates).astype(np.int8)
    return y, np.round(np.clip(0.15 + 0.25 * y + 0.15 * rng.normal(size=y.shape), 0, 1), 2).astype(np.float32)


TUNED = [
    ("binary", metric, strategy)
    for metric in ["f1", "f1_macro", "f1_weighted", "f1_micro", "accuracy", "jaccard"]
    for strategy in ["per_label", "global"]
] + [
    ("multilabel", metric, strategy)
    for metric in ["f1_macro", "f1_weighted", "f1_micro", "f1_samples", "jaccard", "accuracy"]
    for strategy in ["per_label", "global"]
]


@pytest.mark.parametrize(("task", "metric", "strategy"), TUNED)
@pytest.mark.parametrize("seed", [0, 1])
def test_tuned_thresholds_give_the_reported_value(task, metric, strategy, seed):
    y, probs = _toy(task, seed)
    cuts, value = fit_cuts(y, probs, task, metric, strategy)
    assert value == pytest.approx(score(metric, y, probs, task, cuts), abs=1e-12)
    assert value >= score(metric, y, probs, task) - 1e-12  # never below the untuned 0.5
    assert cut_objective(y, task, metric, strategy)(probs) == pytest.approx(value, abs=1e-12)
    if task == "binary":  # one label: the search is exact over every cut
        brute = max(score(metric, y, probs, task, t) for t in np.r_[np.unique(probs), 1.01])
        assert value == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("metric", ["f1_macro", "f1_weighted", "f1_micro", "accuracy", "jaccard", "f1_samples"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tuned_multiclass_bias_gives_the_reported_value(metric, seed):
    y, probs = _toy("multiclass", seed)
    bias, value = fit_cuts(y, probs, "multiclass", metric, tune_bias=True)
    assert value == pytest.approx(score(metric, y, probs + bias, "multiclass"), abs=1e-12)
    assert value >= score(metric, y, probs, "multiclass") - 1e-12


def test_binary_f1_macro_tuning_maximises_the_macro_average_not_the_positive_class():
    """The best cut for the positive class's F1 is not the best for the mean over both classes here."""
    y, probs = _toy("binary", 0)
    f1_cut, _ = fit_cuts(y, probs, "binary", "f1")
    macro_cut, macro = fit_cuts(y, probs, "binary", "f1_macro")
    assert macro == pytest.approx(max(score("f1_macro", y, probs, "binary", t) for t in np.unique(probs)))
    assert macro >= score("f1_macro", y, probs, "binary", f1_cut)


@pytest.mark.parametrize("task", ["multilabel", "multiclass", "binary"])
@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_probability_metrics_ignore_the_cuts(task, metric):
    y, probs = _toy(task, 0)
    cuts, value = fit_cuts(y, probs, task, metric)
    assert value == pytest.approx(score(metric, y, probs, task))


@pytest.mark.parametrize(
    ("task", "metric", "columns"),
    [
        ("binary", "f1", slice(None)),
        ("binary", "f1_macro", slice(None)),
        ("binary", "f1_weighted", slice(None)),
        ("binary", "accuracy", slice(None)),
        ("multilabel", "f1_macro", slice(None)),
        ("multilabel", "f1_macro", [0]),  # one label: scored as that label, also from the per-fold counts
        ("multilabel", "f1_micro", [0]),
        ("multiclass", "f1_macro", slice(None)),
        ("multiclass", "jaccard", slice(None)),
    ],
)
def test_thresholds_json_reports_the_score_at_its_cuts(task, metric, columns):
    """`cv_tuned` and `cv_at_0.5` of the stage's report are `metrics.score` at the cuts it writes."""
    y, probs = _toy(task, 0)
    y, probs = y[:, columns], probs[:, columns]
    names = [f"l{j}" for j in range(y.shape[1])]
    report = cut_report(y, probs, np.arange(len(y)) % 5, names, task, metric, **TUNING)
    if task == "multiclass":
        bias = np.array([report["bias"][name] for name in names])
        assert report["cv_tuned"] == pytest.approx(score(metric, y, probs + bias, task), abs=1e-12)
    else:
        cuts = np.array([report["thresholds"][name] for name in names])
        assert report["cv_tuned"] == pytest.approx(score(metric, y, probs, task, cuts), abs=1e-12)
    assert report["cv_at_0.5"] == pytest.approx(score(metric, y, probs, task), abs=1e-12)
    assert report["cv_tuned"] >= report["cv_at_0.5"] - 1e-12


TUNING = {"strategy": "per_label", "value": 0.5, "tune_bias": True}
