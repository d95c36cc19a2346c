"""The metrics a config may name, and which task each can score: the schema validates `competition.metric`
against these, and `kagglemlc.scoring.metrics` implements exactly these names."""

from __future__ import annotations

METRIC_NAMES = (
    "f1", "f1_macro", "f1_micro", "f1_samples", "f1_weighted", "jaccard", "accuracy", "roc_auc", "log_loss",
    "rmse", "mcrmse", "mae", "pearson", "spearman", "qwk", "exact_match",
)  # fmt: skip
REGRESSION_METRICS = ("rmse", "mcrmse", "mae", "pearson", "spearman", "qwk")
SPAN_METRICS = ("jaccard", "exact_match", "f1")  # word-level Jaccard, SQuAD's exact match and token F1


def metric_problem(metric: str, task: str) -> str | None:
    """Why `metric` cannot score a `task` competition, or None when it can."""
    if (task == "span") != (metric in SPAN_METRICS) or (task != "span" and metric == "exact_match"):
        if task == "span":
            return f"metric '{metric}' cannot score a span task; choose one of {', '.join(SPAN_METRICS)}"
        if metric == "exact_match":
            return f"metric 'exact_match' scores span answers (task: span), not a {task} task"
    if task == "span":
        return None
    if (task == "regression") != (metric in REGRESSION_METRICS):
        wanted = "one of " + ", ".join(REGRESSION_METRICS) if task == "regression" else "a classification metric"
        return f"metric '{metric}' cannot score a {task} task; choose {wanted}"
    if metric == "f1" and task != "binary":
        others = "f1_macro, f1_micro, f1_weighted" + (", f1_samples" if task == "multilabel" else "")
        return f"metric 'f1' is the positive class's F1 of a binary task; for a {task} task choose one of {others}"
    return None
