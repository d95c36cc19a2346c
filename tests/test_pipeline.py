"""`kagglemlc run`: the whole chain, skipping what is current, redoing only what an edit touched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import LABELS, make_competition
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
    assert code == 0 and _skipped(err) == {"prepare", "train", "tune-thresholds", "submit"}, err

    # a thresholds edit reruns thresholds and submit only
    code, _, err = cli("run", cfg, "thresholds.strategy=global")
    assert code == 0 and _skipped(err) == {"prepare", "train"}, err
    assert json.loads((run / "thresholds.json").read_text())["strategy"] == "global"

    # a training edit retrains every fold (the old models no longer match the config)
    before = (run / "fold0" / "metrics.json").stat().st_mtime_ns
    code, _, err = cli("run", cfg, "thresholds.strategy=global", "train.lr=1e-3")
    assert code == 0 and _skipped(err) == {"prepare"}, err
    assert (run / "fold0" / "metrics.json").stat().st_mtime_ns != before
    assert "removed it to retrain" in err


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
