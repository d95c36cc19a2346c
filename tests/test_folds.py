"""Folds: every row in exactly one fold, balanced positives, deterministic per seed, groups kept whole."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.folds import assign_folds, fold_counts

MULTICLASS = {"competition": {"task": "multiclass", "metric": "accuracy"}, "train": {"loss": "ce"}}


def synthetic_multilabel(n: int = 5000, n_labels: int = 10, seed: int = 0) -> np.ndarray:
    """n × L 0/1 matrix with uneven label frequencies (1% .. 40%)."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, n_labels)) < np.geomspace(0.01, 0.4, n_labels)).astype(np.int8)


def read_folds(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "run" / "folds.parquet")


def prepare(cli, path: Path, *overrides: str) -> tuple[pd.DataFrame, str]:
    """Runs `kagglemlc prepare`; returns folds.parquet (of the default output dir `run/`) and stderr."""
    code, _, err = cli("prepare", path, *overrides)
    assert code == 0, err
    return read_folds(path.parent), err


def test_every_row_in_exactly_one_fold(tmp_path, cli):
    train = toy_frame(200)
    folds, _ = prepare(cli, make_competition(tmp_path, train=train), "cv.folds=4")
    assert list(folds.columns) == ["id", "fold"]
    assert len(folds) == len(train) and folds["id"].is_unique
    assert set(folds["id"]) == set(train["id"])
    assert set(folds["fold"]) == {0, 1, 2, 3}
    assert np.ptp(np.bincount(folds["fold"])) <= 1


def test_assign_folds_covers_every_row_once():
    y = synthetic_multilabel()
    fold = assign_folds(y, "multilabel", 5, seed=0)
    assert fold.shape == (len(y),)
    assert set(np.unique(fold)) == set(range(5))
    assert np.bincount(fold).sum() == len(y)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_multilabel_positives_balanced(seed):
    y = synthetic_multilabel(seed=seed)
    fold = assign_folds(y, "multilabel", 5, seed=seed)
    counts = fold_counts(y, fold, 5)
    assert counts.shape == (10, 5)
    np.testing.assert_array_equal(counts.sum(axis=1), y.sum(axis=0))
    assert np.ptp(counts, axis=1).max() <= 2, counts
    assert np.ptp(np.bincount(fold)) <= 2


def test_same_seed_same_folds_different_seed_different_folds(tmp_path, cli):
    path = make_competition(tmp_path, n_train=300)
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        code, _, err = cli("prepare", path, f"output_dir={tmp_path / out}", f"cv.seed={seed}")
        assert code == 0, err
    a = pd.read_parquet(tmp_path / "a" / "folds.parquet")
    b = pd.read_parquet(tmp_path / "b" / "folds.parquet")
    c = pd.read_parquet(tmp_path / "c" / "folds.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert list(a["id"]) == list(c["id"])
    assert (a["fold"] != c["fold"]).any()


def test_assign_folds_deterministic():
    y = synthetic_multilabel(n=1000)
    np.testing.assert_array_equal(assign_folds(y, "multilabel", 5, 3), assign_folds(y, "multilabel", 5, 3))
    assert (assign_folds(y, "multilabel", 5, 3) != assign_folds(y, "multilabel", 5, 4)).any()


def grouped_train(n: int, seed: int = 0) -> pd.DataFrame:
    """toy rows where consecutive rows share an author (groups of 1..6 rows)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n)
    author = np.repeat(np.arange(n), sizes)[:n]
    return toy_frame(n, seed=seed).assign(author=[f"u{a}" for a in author])


def assert_groups_whole(train: pd.DataFrame, folds: pd.DataFrame) -> None:
    merged = train[["id", "author"]].merge(folds, on="id", validate="one_to_one")
    assert len(merged) == len(train)
    assert (merged.groupby("author")["fold"].nunique() == 1).all()


def test_group_column_multilabel(tmp_path, cli):
    train = grouped_train(300)
    folds, _ = prepare(cli, make_competition(tmp_path, train=train, config={"cv": {"group_column": "author"}}))
    assert_groups_whole(train, folds)
    assert set(folds["fold"]) == {0, 1, 2}


def test_group_column_multiclass(tmp_path, cli):
    train = grouped_train(300)
    rng = np.random.default_rng(5)
    train[LABELS] = np.eye(3, dtype=int)[rng.integers(0, 3, len(train))]
    path = make_competition(tmp_path, train=train, config={**MULTICLASS, "cv": {"group_column": "author"}})
    folds, _ = prepare(cli, path)
    assert_groups_whole(train, folds)
    assert set(folds["fold"]) == {0, 1, 2}


def test_group_column_assign_folds_multilabel_balance():
    y = synthetic_multilabel(n=3000)
    groups = np.repeat(np.arange(1000), 3).astype(object)
    fold = assign_folds(y, "multilabel", 5, seed=0, groups=groups)
    assert (pd.Series(fold).groupby(groups).nunique() == 1).all()
    sizes = np.bincount(fold)
    assert np.abs(sizes - len(y) / 5).max() <= 0.1 * len(y) / 5, sizes


def test_group_column_binary_balance():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(1000), 2)
    y = (rng.random(1000) < 0.1).astype(np.int8)[groups][:, None]
    spreads = [np.ptp(fold_counts(y, assign_folds(y, "binary", 5, s, groups.astype(object)), 5)) for s in range(3)]
    assert max(spreads) <= 4, spreads


def test_group_column_missing_is_user_error(tmp_path, cli):
    path = make_competition(tmp_path, config={"cv": {"group_column": "author"}})
    code, _, err = cli("prepare", path)
    assert code == 2 and err.startswith("error:") and "'author'" in err and "cv.group_column" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_fewer_groups_than_folds_is_user_error():
    y = synthetic_multilabel(n=20)
    with pytest.raises(KaggleMLCError, match="cv.group_column"):
        assign_folds(y, "multilabel", 5, 0, groups=np.array(["a", "b"] * 10, dtype=object))


def test_multiclass_uses_stratified_kfold_balance(tmp_path, cli):
    rng = np.random.default_rng(2)
    cls = rng.choice(3, size=301, p=[0.6, 0.3, 0.1])
    train = toy_frame(301)
    train[LABELS] = np.eye(3, dtype=int)[cls]
    folds, _ = prepare(cli, make_competition(tmp_path, train=train, config=MULTICLASS), "cv.folds=5")
    fold = folds.set_index("id").loc[train["id"], "fold"].to_numpy()
    per_fold = fold_counts(train[LABELS].to_numpy(), fold, 5)
    assert np.ptp(per_fold, axis=1).max() <= 1, per_fold  # StratifiedKFold: each class within one row
    assert np.ptp(np.bincount(fold)) <= 1


def test_binary_balance():
    rng = np.random.default_rng(4)
    y = (rng.random((997, 1)) < 0.07).astype(np.int8)
    fold = assign_folds(y, "binary", 5, seed=0)
    assert np.ptp(fold_counts(y, fold, 5)) <= 1


def test_rare_label_warns(tmp_path, cli):
    train = toy_frame(120).assign(fear=0)
    train.loc[[5, 50], "fear"] = 1
    _, err = prepare(cli, make_competition(tmp_path, train=train), "cv.folds=3")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "'fear'" in warnings[0] and "2 positives" in warnings[0] and "cv.folds=3" in warnings[0]


@pytest.mark.filterwarnings("ignore:The least populated class")  # sklearn's own copy of the warning
def test_rare_class_warns_multiclass(tmp_path, cli):
    train = toy_frame(120)
    cls = np.zeros(120, dtype=int)
    cls[1::2] = 1
    cls[[10, 20]] = 2
    train[LABELS] = np.eye(3, dtype=int)[cls]
    _, err = prepare(cli, make_competition(tmp_path, train=train, config=MULTICLASS), "cv.folds=3")
    assert "warning:" in err and "'fear'" in err and "2 positives" in err and "cv.folds=3" in err
