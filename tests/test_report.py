"""Report: fabricated experiment directories → report.md with every label and the CV numbers, valid PNG
plots, the same numbers as JSON; missing stage outputs leave cells empty instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import precision_recall_fscore_support

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.stages.report import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THRESHOLDS = {"joy": 0.35, "anger": 0.5, "fear": 0.65}


def fabricate_run(config: Path, cv: float, seed: int = 0, folds_with_metrics: tuple[int, ...] = (0, 1)) -> None:
    """What prepare/train/tune-thresholds leave in the output dir: folds, OOF, thresholds, fold metrics."""
    cfg = load_config(config)
    run = cfg.run_dir
    run.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(config.parent / "train.csv", dtype={"id": str})
    rng = np.random.default_rng(seed)
    y = train[LABELS].to_numpy()
    probs = np.clip(0.6 * y + 0.5 * rng.random(y.shape), 0, 1)  # informative, imperfect
    oof = pd.DataFrame(probs, columns=LABELS)
    oof.insert(0, "id", train["id"])
    oof.to_parquet(run / "oof.parquet", index=False)
    pd.DataFrame({"id": train["id"], "fold": np.arange(len(train)) % 3}).to_parquet(run / "folds.parquet", index=False)
    tuned = {"strategy": "per_label", "metric": "f1_macro", "task": "multilabel", "thresholds": THRESHOLDS}
    tuned |= {"cv_at_0.5": cv - 0.05, "cv_tuned": cv, "cv_nested": cv - 0.02}
    (run / "thresholds.json").write_text(json.dumps(tuned))
    for k in folds_with_metrics:
        (run / f"fold{k}").mkdir(exist_ok=True)
        metrics = {
            "history": [{"step": 10, "metric": cv - 0.1}, {"step": 20, "metric": cv - 0.05}],
            "best_metric": cv - 0.05 + k / 100,
            "best_step": 20,
            "trainable_params": 1_234_567,
            "total_params": 22_713_216,
            "wall_seconds": 61.5,
            "samples_per_second": 100.0 + k,
            "peak_memory_mb": {"cpu_rss": 1500.0 + k, "gpu_max_allocated": None},
        }
        (run / f"fold{k}" / "metrics.json").write_text(json.dumps(metrics))


def another_experiment(config: Path, name: str) -> Path:
    """A second config of the same competition writing to its own output dir."""
    raw = yaml.safe_load(config.read_text())
    raw["output_dir"] = name
    path = config.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def log_public_score(config: Path, experiment: str, score: str) -> None:
    pd.DataFrame(
        [
            {
                "file": f"{experiment}-x.csv",
                "experiment": experiment,
                "cv": "0.7",
                "message": "m",
                "time": "2026-01-01T00:00:00+00:00",
                "public_score": score,
            }
        ]
    ).to_csv(load_config(config).submission.dir / "log.csv", index=False)


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    first = make_competition(tmp_path / "comp", train=toy_frame(90))
    second = another_experiment(first, "run2")
    fabricate_run(first, cv=0.71)
    fabricate_run(second, cv=0.64, seed=1, folds_with_metrics=())
    (tmp_path / "comp" / "submissions").mkdir()
    log_public_score(first, "run", "0.6543")
    return first, second


def test_markdown_has_every_label_and_the_cv_numbers(two_runs):
    first, second = two_runs
    path = report([first, second])
    assert path == load_config(first).run_dir / "report.md"
    text = path.read_text()
    for name in LABELS:
        assert text.count(f"| {name} |") == 2  # one per-label table per experiment
    for cv in ("0.6600", "0.7100", "0.6900", "0.5900", "0.6400", "0.6200"):
        assert cv in text
    assert "| 0.6543 |" in text  # the public score of the first run
    assert "1.2M / 22.7M" in text and "2m 03s" in text and "2/3" in text and "0/3" in text
    assert "| joy | 0.350 |" in text


def test_plots_are_valid_pngs(two_runs):
    first, second = two_runs
    report([first, second])
    run = load_config(first).run_dir
    for name in ("report-f1.png", "report-labels.png", "report-cv-public.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in (run / "report.md").read_text()


def test_no_public_scores_no_cv_plot(two_runs):
    first, _ = two_runs
    (first.parent / "submissions" / "log.csv").unlink()
    path = report([first], output=first.parent / "out" / "summary.md")
    assert path.is_file() and (path.parent / "summary-f1.png").read_bytes()[:8] == PNG_MAGIC
    assert not (path.parent / "summary-cv-public.png").exists()


def test_json_matches_an_independent_computation(two_runs):
    first, second = two_runs
    data = json.loads(json.dumps(report([first, second], as_json=True), allow_nan=False))
    assert not (load_config(first).run_dir / "report.md").exists()  # --json writes nothing
    run, run2 = data["experiments"]
    assert [run["name"], run2["name"]] == ["run", "run2"]
    assert run["cv"] == pytest.approx({"at_0.5": 0.66, "tuned": 0.71, "nested": 0.69})
    assert run["public_score"] == 0.6543 and run2["public_score"] is None
    assert run["trainable_params"] == 1_234_567 and run["train_seconds"] == 123.0
    assert run["peak_memory_mb"] == {"cpu_rss": 1501.0, "gpu_max_allocated": None}
    assert run2["folds_trained"] == 0 and run2["trainable_params"] is None

    train = pd.read_csv(first.parent / "train.csv", dtype={"id": str})
    oof = pd.read_parquet(load_config(first).run_dir / "oof.parquet")
    hard = (oof[LABELS].to_numpy() >= np.array([THRESHOLDS[n] for n in LABELS])).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(train[LABELS], hard, zero_division=0)
    rows = {r["label"]: r for r in run["labels"]}
    for j, name in enumerate(LABELS):
        assert rows[name]["threshold"] == THRESHOLDS[name]
        assert rows[name]["precision"] == pytest.approx(precision[j])
        assert rows[name]["recall"] == pytest.approx(recall[j])
        assert rows[name]["f1"] == pytest.approx(f1[j])
        assert rows[name]["support"] == support[j]


def test_missing_stage_outputs_are_tolerated(tmp_path):
    config = make_competition(tmp_path)  # prepared nothing, trained nothing
    data = report([config], as_json=True)
    exp = data["experiments"][0]
    assert exp["labels"] == [] and exp["cv"] == {"at_0.5": None, "tuned": None, "nested": None}
    text = report([config]).read_text()
    assert "No oof.parquet" in text and "0/3" in text


def test_untuned_run_reports_cv_at_half(tmp_path):
    config = make_competition(tmp_path)
    fabricate_run(config, cv=0.7, folds_with_metrics=())
    (load_config(config).run_dir / "thresholds.json").unlink()
    exp = report([config], as_json=True)["experiments"][0]
    assert exp["cv"]["tuned"] is None and 0 < exp["cv"]["at_0.5"] <= 1
    assert {r["threshold"] for r in exp["labels"]} == {0.5}
