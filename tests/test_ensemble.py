"""Blends: averaging methods, the weight search, and `ensemble` writing a blend experiment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.data.predictions import average_folds, combine_fold_tests
from kagglemlc.scoring.blend import blend, fit_weights
from kagglemlc.scoring.cuts import fit_cuts
from kagglemlc.stages.ensemble import ensemble
from test_thresholds import experiment, write_predictions


def sibling_config(config: Path, name: str, **sections) -> Path:
    """Another experiment on the same competition files: output_dir `name`, sections updated."""
    raw = yaml.safe_load(config.read_text())
    raw["output_dir"] = name
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path = config.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(raw))
    return path


def test_blend_methods_on_small_arrays():
    a = np.array([[0.2, 0.9], [0.4, 0.1], [0.8, 0.1]])
    b = np.array([[0.8, 0.1], [0.4, 0.9], [0.2, 0.5]])
    np.testing.assert_allclose(blend([a, b]), (a + b) / 2)
    np.testing.assert_allclose(blend([a, b], [0.25, 0.75]), 0.25 * a + 0.75 * b)
    np.testing.assert_allclose(blend([a, b], method="geometric"), np.sqrt(a * b))
    # ranks per column scaled to [0, 1], ties share their average rank
    np.testing.assert_allclose(blend([a], method="rank"), [[0, 1], [0.5, 0.25], [1, 0.25]])
    np.testing.assert_allclose(blend([a, b], method="rank"), [[0.5, 0.5], [0.5, 0.625], [0.5, 0.375]])
    with pytest.raises(KaggleMLCError, match="choose one of mean, rank, geometric"):
        blend([a], method="median")


def test_average_folds_aligns_ids_and_combines_fold_files(tmp_path):
    f0 = pd.DataFrame({"id": ["x", "y"], "joy": [0.2, 0.6]})
    f1 = pd.DataFrame({"id": ["y", "x"], "joy": [0.4, 0.8]})
    out = average_folds([f0, f1])
    assert out["id"].tolist() == ["x", "y"]
    np.testing.assert_allclose(out["joy"], [0.5, 0.5])
    np.testing.assert_allclose(average_folds([f0, f1], "geometric")["joy"], [0.4, np.sqrt(0.24)], rtol=1e-6)
    for k, frame in enumerate([f0, f1]):
        (tmp_path / f"fold{k}").mkdir()
        frame.to_parquet(tmp_path / f"fold{k}" / "test.parquet")
    pd.testing.assert_frame_equal(combine_fold_tests(tmp_path, 2, "rank"), average_folds([f0, f1], "rank"))
    with pytest.raises(KaggleMLCError, match=r"fold2/test.parquet not found"):
        combine_fold_tests(tmp_path, 3)
    with pytest.raises(KaggleMLCError, match="other ids"):
        average_folds([f0, f1.assign(id=["y", "z"])])


def test_fit_weights_stay_on_the_simplex_and_never_lose_to_a_member():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < 0.3).astype(np.int8)
    members = [np.clip(y * 0.3 + rng.normal(0.35, 0.2, y.shape), 0, 1).astype(np.float32) for _ in range(3)]
    members.append(rng.random(y.shape).astype(np.float32))  # pure noise: should get (almost) no weight

    def objective(p):
        return fit_cuts(y, p, "multilabel", "f1_macro")[1]

    weights, value = fit_weights(members, objective)
    assert weights.sum() == pytest.approx(1) and (weights >= 0).all()
    assert weights[3] < 0.1
    assert value >= max(objective(m) for m in members)
    assert value == pytest.approx(objective(blend(members, weights).astype(np.float32)))


def noisy_view(seed: int):
    """A member: an independent noisy estimate of the truth (blends of such members beat each one)."""
    return lambda y: np.clip(0.2 + 0.35 * y + np.random.default_rng(seed).normal(0, 0.22, y.shape), 0, 1)


def test_ensemble_writes_a_blend_experiment(tmp_path, cli, capsys):
    first = experiment(tmp_path, cli, oof_of_y=noisy_view(1))
    second = sibling_config(first, "other")
    assert cli("prepare", second)[0] == 0
    write_predictions(second, noisy_view(2), seed=1)

    out = ensemble([first, second], name="mix")
    assert out == tmp_path / "blend-mix"
    assert {p.name for p in out.iterdir()} >= {
        "config.yaml",
        "folds.parquet",
        "oof.parquet",
        "test.parquet",
        "thresholds.json",
    }
    cfg = load_config(out / "config.yaml")  # a blend is an experiment like any other
    assert cfg.run_dir == out and cfg.name == "blend-mix"
    meta = yaml.safe_load((out / "config.yaml").read_text())["meta"]["ensemble"]
    assert meta["members"] == [str(first.resolve()), str(second.resolve())] and meta["method"] == "mean"
    weights = np.array(meta["weights"])
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1) and (weights > 0).all()

    data = load_competition(cfg.competition)
    members = [noisy_view(seed)(data.y).astype(np.float32) for seed in (1, 2)]
    member_cv = [fit_cuts(data.y, m, "multilabel", "f1_macro")[1] for m in members]
    tuned = json.loads((out / "thresholds.json").read_text())
    assert tuned["cv_tuned"] >= max(member_cv)
    test = pd.read_parquet(out / "test.parquet")
    assert test["id"].tolist() == data.test_ids.tolist() and list(test.columns[1:]) == data.label_names
    for file, ids in (("oof.parquet", data.train_ids), ("test.parquet", data.test_ids)):
        # the blend's files hold exactly `blend` of the members' (`_blend32` works a label at a time)
        members = [pd.read_parquet(load_config(c).run_dir / file).set_index("id").loc[ids] for c in (first, second)]
        expected = blend([m[data.label_names].to_numpy() for m in members], weights).astype(np.float32)
        written = pd.read_parquet(out / file).set_index("id").loc[ids, data.label_names].to_numpy()
        assert np.array_equal(written, expected)
    assert pd.read_parquet(out / "folds.parquet").equals(pd.read_parquet(tmp_path / "run" / "folds.parquet"))
    captured = capsys.readouterr()
    assert "blend-mix" in captured.out and "vs best member" in captured.err


def two_members(tmp_path: Path, cli) -> list[Path]:
    first = experiment(tmp_path, cli, oof_of_y=noisy_view(1))
    second = sibling_config(first, "other")
    assert cli("prepare", second)[0] == 0
    write_predictions(second, noisy_view(2), seed=1)
    return [first, second]


@pytest.mark.parametrize("method", ["rank", "geometric"])
def test_rank_and_geometric_blends_write_what_blend_gives(tmp_path, cli, method):
    members = two_members(tmp_path, cli)
    out = ensemble(members, name=method, method=method)
    weights = yaml.safe_load((out / "config.yaml").read_text())["meta"]["ensemble"]["weights"]
    data = load_competition(load_config(out / "config.yaml").competition)
    for file, ids in (("oof.parquet", data.train_ids), ("test.parquet", data.test_ids)):
        frames = [pd.read_parquet(load_config(c).run_dir / file).set_index("id").loc[ids] for c in members]
        expected = blend([f[data.label_names].to_numpy() for f in frames], weights, method).astype(np.float32)
        written = pd.read_parquet(out / file).set_index("id").loc[ids, data.label_names].to_numpy()
        assert np.array_equal(written, expected)


def test_a_subset_fit_that_loses_on_all_rows_falls_back_to_the_best_member(tmp_path, cli, monkeypatch):
    """Weights fitted on a subset of the OOF rows are checked on all of them: a blend below the best member is
    replaced by that member, and the files staged for the first blend are written again."""
    from kagglemlc.stages import ensemble as module

    members = two_members(tmp_path, cli)
    noise = sibling_config(members[0], "noise")
    assert cli("prepare", noise)[0] == 0
    write_predictions(noise, lambda y: np.random.default_rng(5).random(y.shape), seed=2)
    monkeypatch.setattr(module, "SEARCH_ROWS", 40)  # the toy data has more rows: the search sees a subset
    monkeypatch.setattr(module, "fit_weights", lambda oofs, objective, method: (np.array([0.0, 0.0, 1.0]), 0.0))

    out = ensemble([*members, noise], name="fallback")
    weights = yaml.safe_load((out / "config.yaml").read_text())["meta"]["ensemble"]["weights"]
    y = load_competition(load_config(out / "config.yaml").competition).y
    best = int(np.argmax([fit_cuts(y, noisy_view(seed)(y), "multilabel", "f1_macro")[1] for seed in (1, 2)]))
    assert weights == [1.0 if i == best else 0.0 for i in range(3)]
    for file in ("oof.parquet", "test.parquet"):
        chosen = pd.read_parquet(tmp_path / ("run", "other")[best] / file).set_index("id")
        written = pd.read_parquet(out / file).set_index("id")
        pd.testing.assert_frame_equal(written, chosen.loc[written.index])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("failing", ["threshold_report", "probability_table"])
def test_a_failing_blend_leaves_no_file(tmp_path, cli, monkeypatch, failing):
    """The blend's files are written while its thresholds are tuned; an error in either renames none of them."""
    from kagglemlc.stages import ensemble as module

    members = two_members(tmp_path, cli)

    def fail(*args, **kwargs):
        raise KaggleMLCError("disk on fire")

    monkeypatch.setattr(module, failing, fail)
    with pytest.raises(KaggleMLCError, match="disk on fire"):
        ensemble(members, name="broken")
    assert list((tmp_path / "blend-broken").iterdir()) == []


def test_members_with_different_folds_are_refused(tmp_path, cli):
    first = experiment(tmp_path, cli)
    second = sibling_config(first, "reseeded", cv={"seed": 7})
    assert cli("prepare", second)[0] == 0
    write_predictions(second, noisy_view(3))
    with pytest.raises(KaggleMLCError, match=r"experiments 'run' .* and 'reseeded' .* have different folds") as exc:
        ensemble([first, second])
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


def test_rank_blend_refuses_log_loss(tmp_path, cli):
    first = experiment(tmp_path, cli, config={"competition": {"metric": "log_loss"}})
    with pytest.raises(KaggleMLCError, match="log_loss needs probabilities"):
        ensemble([first, first], method="rank")
