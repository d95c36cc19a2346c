"""`ensemble --method stack`: a per-label stacker on the members' OOF probabilities, fitted fold by fold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from kagglemlc.config import load_config
from kagglemlc.data.competition import load_competition
from kagglemlc.scoring.stack import stack
from kagglemlc.stages.ensemble import ensemble
from test_ensemble import two_members


def _members(n: int = 600, n_labels: int = 3, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.3).astype(np.int8)
    strong = np.clip(0.25 + 0.5 * y + rng.normal(0, 0.15, y.shape), 0, 1)
    weak = np.clip(0.4 + 0.1 * y + rng.normal(0, 0.3, y.shape), 0, 1)
    return y, [strong.astype(np.float32), weak.astype(np.float32)], np.arange(n) % 5


def test_a_folds_stacked_predictions_never_depend_on_that_folds_labels():
    """Each fold's stacker is fitted on the other folds only: relabelling fold 2 changes no prediction of fold 2
    (and does change the other folds', whose stackers read those labels)."""
    y, members, fold = _members()
    oof, _ = stack(members, y, fold, "multilabel")
    flipped = y.copy()
    flipped[fold == 2] = 1 - flipped[fold == 2]
    again, _ = stack(members, flipped, fold, "multilabel")
    np.testing.assert_array_equal(oof[fold == 2], again[fold == 2])
    assert not np.array_equal(oof[fold != 2], again[fold != 2])


def test_the_stacker_learns_to_trust_the_better_member():
    y, members, fold = _members(seed=1)
    tests = [m[:50] for m in members]
    oof, test = stack(members, y, fold, "multilabel", tests)
    auc = [roc_auc_score(y[:, j], oof[:, j]) for j in range(y.shape[1])]
    weak_auc = [roc_auc_score(y[:, j], members[1][:, j]) for j in range(y.shape[1])]
    strong_auc = [roc_auc_score(y[:, j], members[0][:, j]) for j in range(y.shape[1])]
    assert min(np.subtract(auc, weak_auc)) > 0.1 and min(np.subtract(auc, strong_auc)) > -0.01
    assert test.shape == (50, 3) and ((test >= 0) & (test <= 1)).all()


def test_multiclass_stacks_every_class_at_once():
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 3, 300)
    y = np.eye(3, dtype=np.int8)[classes]
    member = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, y.shape), 0.01, 1)
    member = (member / member.sum(axis=1, keepdims=True)).astype(np.float32)
    oof, _ = stack([member, member[::-1].copy()], y, np.arange(300) % 3, "multiclass")
    np.testing.assert_allclose(oof.sum(axis=1), 1, atol=1e-5)
    assert (oof.argmax(axis=1) == classes).mean() > 0.9


def test_ensemble_method_stack_writes_a_stacked_experiment(tmp_path, cli):
    members = two_members(tmp_path, cli)
    out = ensemble(members, name="stacked", method="stack")
    meta = yaml.safe_load((out / "config.yaml").read_text())["meta"]["ensemble"]
    assert meta["method"] == "stack" and meta["weights"] == []
    cfg = load_config(out / "config.yaml")
    data = load_competition(cfg.competition)
    runs = [load_config(c).run_dir for c in members]
    oofs = [pd.read_parquet(run / "oof.parquet").set_index("id").loc[data.train_ids] for run in runs]
    fold = pd.read_parquet(out / "folds.parquet").set_index("id").loc[data.train_ids, "fold"].to_numpy()
    expected, expected_test = stack([o.to_numpy() for o in oofs], data.y, fold, "multilabel", [
        pd.read_parquet(load_config(c).run_dir / "test.parquet").set_index("id").loc[data.test_ids].to_numpy()
        for c in members
    ])  # fmt: skip
    written = pd.read_parquet(out / "oof.parquet").set_index("id").loc[data.train_ids].to_numpy()
    np.testing.assert_array_equal(written, expected)
    test = pd.read_parquet(out / "test.parquet").set_index("id").loc[data.test_ids].to_numpy()
    np.testing.assert_array_equal(test, expected_test)
    tuned = json.loads((out / "thresholds.json").read_text())
    assert tuned["cv_nested"] is not None and tuned["cv_tuned"] >= tuned["cv_nested"] - 0.05
    code, _, err = cli("submit", out / "config.yaml")
    assert code == 0, err
