"""task: regression — numeric targets, regression losses and metrics (each equal to scikit-learn's / scipy's), folds
on binned targets, QWK grades with cut points tuned on the OOF, and the example essay-grading competition run end
to end through `kagglemlc run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from conftest import FILLER, make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.folds import assign_folds, strata
from kagglemlc.scoring.cuts import apply_cuts, evaluate, fit_cuts, untuned
from kagglemlc.scoring.metrics import score
from tiny_models import make_encoder

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 60), st.integers(1, 3), st.integers(0, 10_000))
def test_regression_metrics_equal_sklearn_and_scipy(n, targets, seed):
    rng = np.random.default_rng(seed)
    y, p = rng.normal(size=(n, targets)), rng.normal(size=(n, targets))
    assert score("rmse", y, p, "regression") == pytest.approx(-np.sqrt(skm.mean_squared_error(y.ravel(), p.ravel())))
    assert score("mcrmse", y, p, "regression") == pytest.approx(
        -np.mean([np.sqrt(skm.mean_squared_error(y[:, j], p[:, j])) for j in range(targets)])
    )
    assert score("mae", y, p, "regression") == pytest.approx(-skm.mean_absolute_error(y, p))
    pearson = np.mean([stats.pearsonr(y[:, j], p[:, j])[0] for j in range(targets)])
    spearman = np.mean([stats.spearmanr(y[:, j], p[:, j])[0] for j in range(targets)])
    assert score("pearson", y, p, "regression") == pytest.approx(pearson)
    assert score("spearman", y, p, "regression") == pytest.approx(spearman)
    grades = rng.integers(1, 7, size=(n, 1)).astype(float)
    scores = grades + rng.normal(0, 1, size=(n, 1))
    rounded = np.clip(np.rint(scores[:, 0]), grades.min(), grades.max())
    expected = skm.cohen_kappa_score(grades[:, 0].astype(int), rounded.astype(int), weights="quadratic")
    assert score("qwk", grades, scores, "regression") == pytest.approx(expected)


def test_qwk_cut_points_tuned_on_the_oof_beat_rounding():
    rng = np.random.default_rng(0)
    y = rng.choice([1, 2, 3, 4, 5, 6], size=(800, 1), p=[0.07, 0.27, 0.36, 0.22, 0.06, 0.02]).astype(float)
    scores = 0.6 * y + 1.3 + rng.normal(0, 0.45, y.shape)  # a model that shrinks toward the mean, as MSE models do
    rounding = evaluate(y, scores, "regression", "qwk", untuned("regression", 1))
    cuts, tuned = fit_cuts(y, scores, "regression", "qwk")
    assert cuts[0] == 1 and len(cuts) == 6 and np.all(np.diff(cuts[1:]) > 0)
    assert tuned > rounding + 0.02, (rounding, tuned)
    graded = apply_cuts(scores, "regression", cuts)
    assert set(np.unique(graded)) <= {1, 2, 3, 4, 5, 6}
    assert score("qwk", y, graded, "regression") == pytest.approx(tuned)  # the grades score what tuning said
    _, rmse = fit_cuts(y, scores, "regression", "rmse")  # nothing to tune for other metrics
    assert rmse == pytest.approx(score("rmse", y, scores, "regression"))


def test_folds_stratify_on_binned_targets():
    rng = np.random.default_rng(1)
    y = np.column_stack([rng.normal(size=300), rng.integers(1, 4, 300)]).astype(np.float32)
    fold = assign_folds(y, "regression", 3, seed=0)
    bins = strata(y)
    assert bins.shape == (300, 5 + 3)  # five quantile bins of the continuous target, three grades of the other
    per_fold = np.stack([bins[fold == k].sum(axis=0) for k in range(3)])
    assert np.ptp(per_fold, axis=0).max() <= 2  # every bin spread evenly over the folds


def _two_targets(n: int, seed: int) -> pd.DataFrame:
    """Texts whose two targets are sums of planted words' values (joy: "happy" 3; fear: "scared" 3, "furious" 1.5):
    learnable by a tiny model, and scored as numbers."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        happy, scared, furious = rng.random(3) < 0.4
        words = list(rng.choice(FILLER, size=rng.integers(3, 10)))
        words += [w for w, on in (("happy", happy), ("scared", scared), ("furious", furious)) if on]
        rng.shuffle(words)
        joy, fear = 3.0 * happy, 3.0 * scared + 1.5 * furious
        rows.append({"id": f"r{i:04d}", "text": " ".join(words), "joy": joy, "fear": fear})
    return pd.DataFrame(rows)


def test_a_two_target_regression_is_learned(tmp_path, cli):
    train, test = _two_targets(240, 0), _two_targets(30, 1)
    sample = test[["id"]].assign(joy=0.0, fear=0.0)
    model = make_encoder(tmp_path / "bert", "bert")
    settings_ = {
        "competition": {"task": "regression", "metric": "mcrmse"},
        "model": {"name": str(model), "max_length": 32},
        "train": {"epochs": 15, "lr": 5e-3, "batch_size": 16, "precision": "no", "early_stopping_patience": None},
    }
    config = make_competition(
        tmp_path / "comp", train=train, test=test[["id", "text"]], sample_submission=sample, config=settings_
    )
    code, _, err = cli("run", config)
    assert code == 0, err
    run = tmp_path / "comp" / "run"
    oof = pd.read_parquet(run / "oof.parquet").set_index("id").loc[train["id"]]
    y = train[["joy", "fear"]].to_numpy()
    mcrmse = np.mean(np.sqrt(((oof[["joy", "fear"]].to_numpy() - y) ** 2).mean(axis=0)))
    constant = np.mean(y.std(axis=0))  # the best constant predictor's MCRMSE
    print(f"OOF MCRMSE {mcrmse:.3f} vs the constant predictor's {constant:.3f}")
    assert mcrmse < 0.6 * constant  # measured: 0.87 vs 1.58
    thresholds = json.loads((run / "thresholds.json").read_text())
    assert thresholds["cv_tuned"] == pytest.approx(-mcrmse, abs=1e-4) and thresholds["grade_cuts"] == []
    sub = pd.read_csv(next((tmp_path / "comp" / "submissions").glob("run-*.csv")))
    assert list(sub.columns) == ["id", "joy", "fear"] and sub["id"].tolist() == test["id"].tolist()
    assert sub[["joy", "fear"]].dtypes.eq(np.float64).all()  # scores, not grades


def test_the_essay_grading_example_runs_end_to_end(tmp_path, cli):
    """configs/essay-grades.yaml through `kagglemlc run` (a tiny model instead of MiniLM, for time): QWK of the
    rounded OOF, then of tuned cut points; the submission holds integer grades in the sample's order."""
    model = make_encoder(tmp_path / "bert", "bert")
    overrides = [
        f"model.name={model}", "model.max_length=64", f"output_dir={tmp_path / 'run'}",
        f"submission.dir={tmp_path / 'subs'}", "train.epochs=8", "train.lr=1e-3", "train.batch_size=16",
        "train.precision=no",
    ]  # fmt: skip
    code, _, err = cli("run", ROOT / "configs" / "essay-grades.yaml", *overrides)
    assert code == 0, err
    th = json.loads((tmp_path / "run" / "thresholds.json").read_text())
    print({k: round(th[k], 4) for k in ("cv_at_0.5", "cv_tuned", "cv_nested")})
    assert th["metric"] == "qwk" and th["cv_tuned"] >= th["cv_at_0.5"] and th["cv_nested"] > 0.4
    sub = pd.read_csv(next((tmp_path / "subs").glob("run-*.csv")))
    sample = pd.read_csv(ROOT / "examples" / "essay-grades" / "sample_submission.csv")
    assert list(sub.columns) == ["essay_id", "score"] and sub["essay_id"].tolist() == sample["essay_id"].tolist()
    assert sub["score"].dtype == np.int64 and sub["score"].between(1, 6).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["competition.metric=f1_macro"], "cannot score a regression task"),
        (["train.loss=bce"], "regression uses mse, huber or smooth_l1"),
        (["competition.task=multilabel", "competition.metric=f1_macro", "train.loss=mse"], "is for task: regression"),
    ],
)
def test_regression_settings_that_cannot_work_are_one_line(overrides, message):
    with pytest.raises(KaggleMLCError, match=message):
        load_config(ROOT / "configs" / "essay-grades.yaml", overrides)


def test_qwk_needs_integer_grades_in_one_column(tmp_path, cli):
    train = _two_targets(30, 0)
    config = make_competition(
        tmp_path,
        train=train,
        sample_submission=pd.DataFrame({"id": ["t0"], "joy": [0], "fear": [0]}),
        test=pd.DataFrame({"id": ["t0"], "text": ["a day"]}),
        config={"competition": {"task": "regression", "metric": "qwk"}},
    )
    code, _, err = cli("prepare", config)
    assert code == 2 and "qwk scores one integer grade per row" in err
