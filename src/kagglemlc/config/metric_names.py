"""The metrics a config may name, and which task each can score: the schema validates `competition.metric`
against these, and `kagglemlc.scoring.metrics` implements exactly these names."""

from __future__ import annotations

METRIC_NAMES = (
    "f1", "f1_macro", "f1_micro", "f1_samples", "f1_weighted", "jaccard", "accuracy", "roc_auc", "log_loss",
    "rmse", "mcrmse", "mae", "pearson", "spearman", "qwk",
)  # fmt: skip
REGRESSION_METRICS = ("rmse", "mcrmse", "mae", "pearson", "spearman", "qwk")


def metric_problem(metric: str, task: str) -> str | None:
    """Why `metric` cannot score a `task` competition, or None when it can."""
    if (task == "regression") != (metric in REGRESSION_METRICS):
        wanted = "one of " + ", ".join(REGRESSION_METRICS) if task == "regression" else "a classification metric"
        return f"metric '{metric}' cannot score a {task} task; choose {wanted}"
    if metric == "f1" and task != "binary":
        others = "f1_macro, f1_micro, f1_weighted" + (", f1_samples" if task == "multilabel" else "")
        return f"metric 'f1' is the positive class's F1 of a binary task; for a {task} task choose one of {others}"
    return None
