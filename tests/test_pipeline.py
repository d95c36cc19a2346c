"""`kagglemlc run`: the whole chain, skipping what is current, redoing only what an edit touched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import LABELS, make_competition, toy_frame
from tiny_models import make_encoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("models") / "bert", "bert")


def _skipped(err: str) -> set[str]:
    return {line.split(":")[0] for line in err.splitlines() if "up to date" in line}


def test_run_chain_submits_then_skips_and_redoes_only_what_changed(tmp_path, cli, bert):
    train = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "precision": "no"}
    cfg = make_competition(tmp_path, config={"model": {"name": str(bert), "max_length": 32}, "train": train})
    code, _, err = cli("run", cfg)
    assert code == 0, err
    run = tmp_path / "run"
    for name in ["config.yaml", "folds.parquet", "oof.parquet", "test.parquet", "thresholds.json", "stages.json"]:
        assert (run / name).is_file(), name
    subs = sorted((tmp_path / "submissions").glob("run-*.csv"))
    assert len(subs) == 1
    sub, sample = pd.read_csv(subs[0], dtype=str), pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert set(sub[LABELS].stack()) <= {"0", "1"}

    code, _, err = cli("run", cfg)
    assert code == 0 and _skipped(err) == {"prepare", "train", "full-fit", "predict", "tune-thresholds", "submit"}, err

    # a thresholds edit reruns thresholds and submit only
    code, _, err = cli("run", cfg, "thresholds.strategy=global")
    assert code == 0 and _skipped(err) == {"prepare", "train", "full-fit", "predict"}, err
    assert json.loads((run / "thresholds.json").read_text())["strategy"] == "global"

    # a training edit stops before anything is written: one line naming the key and the two ways on
    trained = _snapshot(run)
    resolved = (run / "config.yaml").read_text()
    code, _, err = cli("run", cfg, "thresholds.strategy=global", "train.lr=1e-3")
    assert code == 2 and err.count("\n") == 1, err
    assert "train.lr 0.005 → 0.001" in err and "--restart" in err and "output_dir" in err, err
    assert _snapshot(run) == trained and (run / "config.yaml").read_text() == resolved

    # --restart is the user asking: the folds are retrained with the new settings
    code, _, err = cli("run", cfg, "thresholds.strategy=global", "train.lr=1e-3", "--restart")
    assert code == 0 and _skipped(err) == {"prepare"}, err
    assert "discarded fold0, fold1, fold2" in err
    assert _snapshot(run) != trained
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 1e-3


def _snapshot(run: Path) -> dict[str, int]:
    """Every file of the fold folders with its modification time: what training wrote."""
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.glob("fold*/**/*")) if p.is_file()}


def test_run_after_a_new_test_set_keeps_every_fold_model_and_submits_the_new_ids(tmp_path, cli, bert):
    train = {"epochs": 1, "lr": 5e-3, "batch_size": 16, "precision": "no"}
    cfg = make_competition(tmp_path, config={"model": {"name": str(bert), "max_length": 32}, "train": train})
    assert cli("run", cfg)[0] == 0
    run = tmp_path / "run"
    models = {p: m for p, m in _snapshot(run).items() if "/model/" in p}
    assert len(models) > 3
    # the competition publishes a new test set (other ids, other texts) and its sample submission
    new_test = toy_frame(25, seed=9, id_prefix="n")[["id", "text"]]
    new_test.to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": new_test["id"], **{name: 0 for name in LABELS}}).to_csv(
        tmp_path / "sample_submission.csv", index=False
    )
    code, _, err = cli("run", cfg)
    assert code == 0, err
    assert _skipped(err) == {"prepare", "train", "full-fit", "tune-thresholds"}, err
    assert "removed" not in err and "settings changed" not in err
    assert {p: m for p, m in _snapshot(run).items() if "/model/" in p} == models  # no fold retrained
    for k in range(3):
        assert pd.read_parquet(run / f"fold{k}" / "test.parquet")["id"].tolist() == new_test["id"].tolist()
    subs = sorted((tmp_path / "submissions").glob("run-*.csv"))
    assert len(subs) == 2
    newest = max(subs, key=lambda path: path.stat().st_mtime_ns)  # names in one second: run-<t>.csv, run-<t>-2.csv
    assert pd.read_csv(newest, dtype=str)["id"].tolist() == new_test["id"].tolist()


def test_demo_config_runs_end_to_end_with_the_bundled_model(tmp_path, cli):
    """The README's first command, shortened to a few steps per fold: the real MiniLM, offline."""
    out = tmp_path / "demo"
    code, _, err = cli(
        "run",
        ROOT / "configs" / "demo.yaml",
        "train.max_steps=3",
        f"output_dir={out}",
        f"submission.dir={tmp_path / 'subs'}",
    )
    assert code == 0, err
    assert len(list((tmp_path / "subs").glob("demo-*.csv"))) == 1
    metrics = json.loads((out / "fold0" / "metrics.json").read_text())
    assert metrics["total_params"] > 20_000_000  # MiniLM-L6, not a toy
