"""Threshold tuning: the exact searches against brute force and metrics.score, and the stage's thresholds.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.data.predictions import read_probs
from kagglemlc.data.thresholds import read_thresholds
from kagglemlc.scoring.cuts import apply_cuts, cut_objective, fit_cuts
from kagglemlc.scoring.metrics import score
from kagglemlc.scoring.nested import cut_report
from kagglemlc.stages.tune_thresholds import tune_thresholds

ROW_METRICS = ["f1_macro", "f1_weighted", "f1_micro", "jaccard", "f1_samples", "accuracy"]


def shifted_probs(y: np.ndarray, seed: int = 0, noise: float = 0.25) -> np.ndarray:
    """Informative but miscalibrated: positives ~0.4, negatives ~0.15, so 0.5 predicts almost nothing."""
    rng = np.random.default_rng(seed)
    return np.clip(0.15 + 0.25 * y + noise * rng.normal(size=y.shape) * 0.5, 0, 1).astype(np.float32)


def write_predictions(config: Path, oof_of_y, seed: int = 0) -> None:
    """Fabricates what `kagglemlc train` leaves behind: oof.parquet (from the truth) and test.parquet."""
    cfg = load_config(config)
    data = load_competition(cfg.competition)
    test_probs = np.random.default_rng(seed).random((len(data.test_ids), len(data.label_names)))
    for file, ids, probs in [("oof", data.train_ids, oof_of_y(data.y)), ("test", data.test_ids, test_probs)]:
        frame = pd.DataFrame(np.asarray(probs, dtype=np.float32), columns=data.label_names)
        frame.insert(0, "id", ids.astype(str))
        shuffled = frame.sample(frac=1, random_state=seed)  # the stages must not rely on row order
        shuffled.to_parquet(cfg.run_dir / f"{file}.parquet", index=False)


def experiment(folder: Path, cli, oof_of_y=shifted_probs, n_train: int = 240, **kwargs) -> Path:
    """A prepared toy competition with fabricated predictions; returns the config path."""
    config = make_competition(folder, n_train=n_train, **kwargs)
    code, _, err = cli("prepare", config)
    assert code == 0, err
    write_predictions(config, oof_of_y)
    return config


def single_label_competition(folder: Path, classes: list[str], n: int = 240, config: dict | None = None) -> Path:
    """A multiclass (several classes, one-hot columns) or binary (one column) competition."""
    rng = np.random.default_rng(0)
    if len(classes) == 1:
        y = (rng.random((n, 1)) < 0.3).astype(int)
    else:
        y = np.eye(len(classes), dtype=int)[rng.choice(len(classes), n, p=[0.6, 0.3, 0.1])]
    train = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": ["some text"] * n})
    test = pd.DataFrame({"id": [f"t{i}" for i in range(20)], "text": ["more text"] * 20})
    for j, name in enumerate(classes):
        train[name] = y[:, j]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in classes}})
    return make_competition(folder, train=train, test=test, sample_submission=sub, config=config)


def test_exact_f1_search_matches_brute_force():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 5)) < [0.05, 0.2, 0.5, 0.01, 0.0]).astype(np.int8)
    probs = np.round(rng.random((200, 5)) * 0.6 + 0.3 * y, 2).astype(np.float32)  # rounded: many ties
    cuts, value = fit_cuts(y, probs, "multilabel", "f1_macro")
    for j in range(5):
        candidates = np.r_[np.unique(probs[:, j]), 1.01]
        brute = max(score("f1_macro", y[:, [j]], probs[:, [j]], "multilabel", t) for t in candidates)
        assert score("f1_macro", y[:, [j]], probs[:, [j]], "multilabel", cuts[j]) == pytest.approx(brute, abs=1e-12)
    assert value == pytest.approx(score("f1_macro", y, probs, "multilabel", cuts), abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 3, 1])
def test_search_objective_is_the_tuned_metric(decimals):
    """The ensemble's weight search scores blends with `cut_objective`: exactly `fit_cuts`' value, for rare and
    common labels (their cuts searched in a window of the top scores), ties and a label without positives."""
    rng = np.random.default_rng(3)
    rates = [0.002, 0.01, 0.05, 0.2, 0.45, 0.0]
    y = (rng.random((5000, 6)) < rates).astype(np.int8)
    for noise in (0.1, 0.25, 1.0):  # from a sharp model (narrow windows) to an uninformative one
        probs = shifted_probs(y, noise=noise)
        probs = probs if decimals is None else np.round(probs, decimals)
        for task, metric, columns in [
            ("multilabel", "f1_macro", slice(None)),
            ("multilabel", "f1_weighted", slice(None)),
            ("multilabel", "f1_micro", slice(None)),
            ("binary", "f1", [3]),
            ("binary", "f1_macro", [3]),
            ("binary", "accuracy", [0]),
            ("binary", "roc_auc", [4]),
        ]:
            expected = fit_cuts(y[:, columns], probs[:, columns], task, metric)[1]
            assert cut_objective(y[:, columns], task, metric)(probs[:, columns]) == expected
        expected = fit_cuts(y, probs, "multilabel", "f1_macro", strategy="global")[1]
        assert cut_objective(y, "multilabel", "f1_macro", strategy="global")(probs) == expected


def test_labels_indexed_in_threads_give_the_same_thresholds_and_report(monkeypatch):
    """On large data `LabelF1` indexes labels concurrently; results must not depend on it."""
    from kagglemlc.scoring import label_f1

    rng = np.random.default_rng(2)
    y = (rng.random((3000, 6)) < [0.05, 0.2, 0.5, 0.01, 0.0, 0.3]).astype(np.int8)
    probs = np.round(rng.random((3000, 6)) * 0.6 + 0.3 * y, 3).astype(np.float32)
    fold = rng.integers(0, 5, 3000)

    def run() -> tuple:
        cuts, value = fit_cuts(y, probs, "multilabel", "f1_macro")
        report = cut_report(y, probs, fold, list("abcdef"), "multilabel", "f1_macro", **TUNING)
        return cuts, value, report

    monkeypatch.setattr(label_f1, "workers", lambda: 1)
    serial = run()
    monkeypatch.setattr(label_f1, "workers", lambda: 3)
    monkeypatch.setattr(label_f1, "PARALLEL_SCORES", 0)
    threaded = run()
    assert np.array_equal(serial[0], threaded[0]) and serial[1] == threaded[1]
    assert json.dumps(serial[2], sort_keys=True) == json.dumps(threaded[2], sort_keys=True)
    assert serial[2]["cv_tuned"] > serial[2]["cv_at_0.5"]  # a real search ran


TUNING = {"strategy": "per_label", "value": 0.5, "tune_bias": False}


@pytest.mark.parametrize("metric", ROW_METRICS)
@pytest.mark.parametrize("strategy", ["per_label", "global"])
def test_tuned_value_is_the_metric_and_beats_half(metric, strategy):
    rng = np.random.default_rng(2)
    y = (rng.random((150, 4)) < [0.3, 0.1, 0.5, 0.05]).astype(np.int8)
    probs = shifted_probs(y, seed=3)
    cuts, value = fit_cuts(y, probs, "multilabel", metric, strategy)
    assert value == pytest.approx(score(metric, y, probs, "multilabel", cuts), abs=1e-9)
    assert value >= score(metric, y, probs, "multilabel", 0.5)
    if strategy == "global":
        assert np.unique(cuts).size == 1
        brute = max(score(metric, y, probs, "multilabel", t) for t in np.r_[np.unique(probs), 1.01])
        assert value == pytest.approx(brute, abs=1e-9)


def test_tune_thresholds_writes_cv_before_after_and_nested(tmp_path, cli, capsys):
    config = experiment(tmp_path, cli)
    path = tune_thresholds(load_config(config))
    assert path == tmp_path / "run" / "thresholds.json"
    tuned = json.loads(path.read_text())
    assert {"strategy", "metric", "thresholds", "cv_at_0.5", "cv_tuned", "cv_nested", "per_fold"} <= set(tuned)
    assert tuned["strategy"] == "per_label" and tuned["metric"] == "f1_macro"
    assert list(tuned["thresholds"]) == ["joy", "anger", "fear"]
    assert all(t < 0.5 for t in tuned["thresholds"].values())  # positives sit near 0.4
    assert tuned["cv_tuned"] > tuned["cv_at_0.5"] + 0.2
    assert tuned["cv_at_0.5"] < tuned["cv_nested"] <= tuned["cv_tuned"]
    assert [f["fold"] for f in tuned["per_fold"]] == [0, 1, 2]
    assert sum(f["rows"] for f in tuned["per_fold"]) == 240
    assert "nested" in capsys.readouterr().err
    # what submit/report do with the file reproduces the tuned CV
    cfg = load_config(config)
    data = load_competition(cfg.competition, with_test=False)
    oof = pd.read_parquet(cfg.run_dir / "oof.parquet").set_index("id").loc[data.train_ids, data.label_names]
    preds = apply_cuts(oof.to_numpy(), "multilabel", read_thresholds(cfg.run_dir, data.label_names))
    assert score("f1_macro", data.y, preds, "multilabel") == pytest.approx(tuned["cv_tuned"])


def test_global_and_fixed_strategies(tmp_path, cli):
    config = experiment(tmp_path, cli, config={"competition": {"metric": "f1_micro"}})
    tuned = json.loads(tune_thresholds(load_config(config, ["thresholds.strategy=global"])).read_text())
    assert tuned["strategy"] == "global" and len(set(tuned["thresholds"].values())) == 1
    assert tuned["cv_tuned"] > tuned["cv_at_0.5"]
    fixed = json.loads(
        tune_thresholds(load_config(config, ["thresholds.strategy=fixed", "thresholds.value=0.3"])).read_text()
    )
    assert fixed["thresholds"] == {"joy": 0.3, "anger": 0.3, "fear": 0.3}
    assert fixed["cv_tuned"] == fixed["cv_nested"]


def test_multiclass_argmax_and_bias(tmp_path, cli):
    config = single_label_competition(
        tmp_path, ["a", "b", "c"], config={"train": {"loss": "ce"}, "competition": {"task": "multiclass"}}
    )
    code, _, err = cli("prepare", config)
    assert code == 0, err

    def skewed_softmax(y):  # informative, but biased towards class a
        logits = 1.5 * y + np.random.default_rng(4).normal(size=y.shape) + [1.5, 0.0, -1.0]
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    write_predictions(config, skewed_softmax)
    cfg = load_config(config)
    plain = json.loads(tune_thresholds(cfg).read_text())
    assert plain["strategy"] == "argmax" and set(plain["bias"].values()) == {0.0}
    assert plain["cv_tuned"] == plain["cv_at_0.5"]
    cfg.thresholds.multiclass_bias = True
    tuned = json.loads(tune_thresholds(cfg).read_text())
    assert tuned["strategy"] == "argmax+bias" and list(tuned["bias"]) == ["a", "b", "c"]
    assert tuned["cv_tuned"] > tuned["cv_at_0.5"] + 0.05
    assert isinstance(tuned["cv_nested"], float)
    bias = read_thresholds(cfg.run_dir, ["a", "b", "c"])
    assert bias[0] < bias[2]  # the bias undoes the skew


def test_binary_one_threshold(tmp_path, cli):
    config = single_label_competition(tmp_path, ["target"], config={"competition": {"task": "binary"}})
    code, _, err = cli("prepare", config)
    assert code == 0, err
    write_predictions(config, shifted_probs)
    tuned = json.loads(tune_thresholds(load_config(config)).read_text())
    assert list(tuned["thresholds"]) == ["target"] and tuned["thresholds"]["target"] < 0.5
    assert tuned["cv_tuned"] > tuned["cv_at_0.5"]


def test_probability_metric_keeps_half(tmp_path, cli, capsys):
    config = experiment(tmp_path, cli, config={"competition": {"metric": "roc_auc"}})
    tuned = json.loads(tune_thresholds(load_config(config)).read_text())
    assert tuned["thresholds"] == {"joy": 0.5, "anger": 0.5, "fear": 0.5}
    assert tuned["cv_at_0.5"] == tuned["cv_tuned"] == tuned["cv_nested"]
    assert "cannot change" in tuned["note"] and "cannot change" in capsys.readouterr().err


def test_missing_or_mismatched_oof_is_a_user_error(tmp_path, cli):
    config = make_competition(tmp_path)
    cli("prepare", config)
    with pytest.raises(KaggleMLCError, match=r"run/oof.parquet not found; run `kagglemlc train` first"):
        tune_thresholds(load_config(config))
    oof = pd.DataFrame({"id": ["r0000", "nope"], "joy": 0.1, "anger": 0.2, "fear": 0.3})
    oof.to_parquet(tmp_path / "run" / "oof.parquet")
    with pytest.raises(KaggleMLCError, match=r"ids do not match .*'r0001' missing") as exc:
        tune_thresholds(load_config(config))
    assert exc.value.exit_code == 2
    ids = load_competition(load_config(config).competition).train_ids.astype(str)
    for bad in (np.nan, np.inf, -np.inf):
        values = np.full(len(ids), 0.5)
        values[len(ids) // 2] = bad
        pd.DataFrame({"id": ids, "joy": 0.1, "anger": values, "fear": 0.3}).to_parquet(tmp_path / "run" / "oof.parquet")
        with pytest.raises(KaggleMLCError, match=r"oof.parquet: holds NaN or infinite probabilities"):
            tune_thresholds(load_config(config))
    huge = pd.DataFrame({"id": ids, "joy": 1e308, "anger": 0.5, "fear": 0.3})  # finite, but its sum overflows
    huge.to_parquet(tmp_path / "run" / "oof.parquet")
    probs = read_probs(tmp_path / "run" / "oof.parquet", ids, ["joy", "anger", "fear"], "")
    assert np.array_equal(probs, huge[["joy", "anger", "fear"]].to_numpy())


def test_thresholds_json_survives_a_resolved_config(tmp_path, cli):
    """A stage may be rerun from the resolved <output_dir>/config.yaml alone."""
    config = experiment(tmp_path, cli)
    resolved = tmp_path / "run" / "config.yaml"
    assert "meta" in yaml.safe_load(resolved.read_text())
    assert json.loads(tune_thresholds(load_config(resolved)).read_text())["cv_tuned"] > 0
    assert load_config(config).run_dir == load_config(resolved).run_dir
