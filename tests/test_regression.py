"""task: regression — numeric targets, regression losses and metrics (each equal to scikit-learn's / scipy's), folds
on binned targets, QWK grades with cut points tuned on the OOF, blends of scores with OOF-fitted weights, and the
example essay-grading competition run end to end through `kagglemlc run`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from conftest import FILLER, make_competition
from kagglemlc.config import TrainConfig, load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.folds import assign_folds, strata
from kagglemlc.models.losses import build_loss
from kagglemlc.scoring.cuts import apply_cuts, evaluate, fit_cuts, untuned
from kagglemlc.scoring.metrics import quadratic_kappa, score
from kagglemlc.stages.ensemble import ensemble
from test_ensemble import sibling_config
from test_thresholds import write_predictions
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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 8), st.integers(-3, 8)), min_size=1, max_size=60),
)
def test_quadratic_kappa_is_sklearns(pairs):
    """Every pair of integer grade lists, grades missing in between and one grade in all (undefined: nan) too."""
    truth, graded = (np.array(column, dtype=np.int64) for column in zip(*pairs, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one grade in all
        warnings.simplefilter("ignore", UserWarning)  # "a single label was found"
        expected = skm.cohen_kappa_score(truth, graded, weights="quadratic")
    got = quadratic_kappa(truth, graded)
    assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


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


def _graded_member(seed: int):
    """A member's OOF scores: the grade shrunk toward the mean (as MSE models do) plus its own noise."""
    return lambda y: 0.6 * y + 1.3 + np.random.default_rng(seed).normal(0, 0.7, y.shape)


def test_a_blend_of_graded_experiments_fits_weights_and_cuts_out_of_fold(tmp_path, cli):
    """Two QWK experiments blend their scores with weights fitted on the OOF (never below the better member), the
    blend's own grade cuts are tuned, and `submit` writes its integer grades — or its raw scores with
    submission.kind=probabilities."""
    rng = np.random.default_rng(0)
    grades = rng.choice([1, 2, 3, 4, 5, 6], size=300, p=[0.07, 0.27, 0.36, 0.22, 0.06, 0.02])
    train = pd.DataFrame({"id": [f"r{i}" for i in range(300)], "text": "an essay", "score": grades})
    test = pd.DataFrame({"id": [f"t{i}" for i in range(40)], "text": "another essay"})
    first = make_competition(
        tmp_path, train=train, test=test, sample_submission=test[["id"]].assign(score=0),
        config={"competition": {"task": "regression", "metric": "qwk"}},
    )  # fmt: skip
    second = sibling_config(first, "other")
    for config, seed in ((first, 1), (second, 2)):
        assert cli("prepare", config)[0] == 0
        write_predictions(config, _graded_member(seed), seed=seed)
        spread = pd.DataFrame({"id": test["id"], "score": np.random.default_rng(seed).uniform(0.5, 6.5, 40)})
        spread.astype({"score": np.float32}).to_parquet(load_config(config).run_dir / "test.parquet", index=False)

    out = ensemble([first, second], name="essays")
    weights = np.array(yaml.safe_load((out / "config.yaml").read_text())["meta"]["ensemble"]["weights"])
    assert weights.sum() == pytest.approx(1) and (weights > 0).all()
    y = train[["score"]].to_numpy(dtype=float)
    members = [_graded_member(seed)(y) for seed in (1, 2)]
    blended = pd.read_parquet(out / "oof.parquet").set_index("id").loc[train["id"], ["score"]].to_numpy()
    np.testing.assert_allclose(blended, weights[0] * members[0] + weights[1] * members[1], rtol=1e-5)
    tuned = json.loads((out / "thresholds.json").read_text())
    best_member = max(fit_cuts(y, m, "regression", "qwk")[1] for m in members)
    assert tuned["metric"] == "qwk" and tuned["cv_tuned"] >= best_member and len(tuned["grade_cuts"]) == 6

    code, _, err = cli("submit", out / "config.yaml")
    assert code == 0, err
    submitted = sorted((tmp_path / "submissions").glob("blend-essays-*.csv"))
    sub = pd.read_csv(submitted[-1])
    test_scores = pd.read_parquet(out / "test.parquet").set_index("id").loc[test["id"], ["score"]].to_numpy()
    cuts = np.array(tuned["grade_cuts"])
    expected = apply_cuts(test_scores, "regression", cuts)[:, 0]
    assert sub["id"].tolist() == test["id"].tolist() and sub["score"].dtype == np.int64
    np.testing.assert_array_equal(sub["score"].to_numpy(), expected)
    assert not np.array_equal(expected, np.clip(np.rint(test_scores[:, 0]), 1, 6))  # the cuts, not rounding
    code, _, err = cli("submit", out / "config.yaml", "submission.kind=probabilities")
    assert code == 0, err
    raw = pd.read_csv(max((tmp_path / "submissions").glob("blend-essays-*.csv"), key=lambda f: f.stat().st_mtime_ns))
    np.testing.assert_allclose(raw["score"].to_numpy(), test_scores[:, 0], rtol=1e-6)


@pytest.mark.parametrize("loss", ["mse", "huber", "smooth_l1"])
def test_regression_losses_match_their_definitions(loss):
    """On the raw outputs, the mean over rows and targets; huber (delta 1) and smooth-L1 (beta 1) are squares below
    an error of 1 and absolute errors above it. Row weights scale each row's mean over its targets."""
    out = np.array([[0.2, 3.0], [-1.5, 0.4], [2.0, 2.1]])
    target = np.array([[0.0, 0.5], [0.5, 0.4], [2.5, -1.0]])
    err = np.abs(out - target)
    elementwise = err**2 if loss == "mse" else np.where(err < 1, 0.5 * err**2, err - 0.5)
    built = build_loss(TrainConfig(loss=loss), "regression", target)
    x, t = torch.tensor(out, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
    assert built(x, t).item() == pytest.approx(elementwise.mean(), rel=1e-6)
    row_weights = np.array([2.0, 0.0, 1.0])
    expected = np.mean(elementwise.mean(axis=1) * row_weights)
    assert built(x, t, torch.tensor(row_weights, dtype=torch.float32)).item() == pytest.approx(expected, rel=1e-6)


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
