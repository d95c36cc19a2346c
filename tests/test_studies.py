"""Studies: `kagglemlc sweep` and `kagglemlc search` on a tiny model — killed and resumed, a failing cell recorded, the
best config reproducing its trial's score."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.data.competition import load_competition
from kagglemlc.data.subsets import most_frequent_labels, stratified_rows
from tiny_models import make_encoder

FAST = {"max_steps": 6, "eval_every": 3, "checkpoint_every": 1, "batch_size": 16, "precision": "no", "lr": 1e-3}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("models") / "bert", "bert")


def _base(folder: Path, encoder: Path, n_train: int = 120) -> Path:
    return make_competition(folder, n_train=n_train, config={"model": {"name": str(encoder)}, "train": FAST})


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _kill_when(args: list[str], cwd: Path, ready, timeout: float = 240) -> None:
    """Starts `python -m kagglemlc ARGS`, kills its process group (kill -9) as soon as `ready()` holds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kagglemlc", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before the moment to kill it"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_data_subsets_keep_the_most_frequent_labels_and_the_same_rows(tmp_path):
    cfg = load_config(make_competition(tmp_path, n_train=150))
    data = load_competition(cfg.competition, with_test=False)
    counts = dict(zip(data.label_names, data.y.sum(axis=0)))
    two = most_frequent_labels(data, 2)
    assert len(two) == 2 and min(counts[n] for n in two) >= max(counts[n] for n in data.label_names if n not in two)
    rows = stratified_rows(data, 60, seed=3)
    assert len(rows) == len(set(rows)) == 60 and (rows == stratified_rows(data, 60, seed=3)).all()
    share = data.y[rows].mean(axis=0) / data.y.mean(axis=0)
    assert abs(share - 1).max() < 0.2  # every label keeps its share


def test_sweep_killed_midway_resumes_and_records_a_failing_cell(tmp_path, encoder, cli):
    _base(tmp_path / "comp", encoder)
    spec = _write(
        tmp_path / "sweep.yaml",
        {
            "base": "comp/config.yaml",
            "axes": {"data.labels": [2, 3], "model.name": [str(encoder), str(tmp_path / "no-such-model")]},
            "folds": 1,
            "output_dir": "study",
        },
    )
    cells = tmp_path / "study" / "cells"
    _kill_when(["sweep", str(spec)], tmp_path, lambda: len(list(cells.glob("*/cell.json"))) >= 1)
    first = next(cells.glob("*/cell.json"))
    first_metrics = first.parent / "fold0" / "metrics.json"
    stamp = first_metrics.stat().st_mtime_ns

    code, out, err = cli("sweep", spec)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "study" / "sweep.csv")
    assert len(table) == 4 and table["cell"].is_unique  # every cell once
    assert first_metrics.stat().st_mtime_ns == stamp  # the complete cell was not trained again
    assert "skipped" in err
    failed = table[table["status"] == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("no-such-model").all()
    ok = table[table["status"] == "ok"]
    assert len(ok) == 2 and ok["tuned"].notna().all() and (ok["trainable_params"] > 0).all()
    assert sorted(ok["setting:data.labels"]) == [2, 3]
    page = (tmp_path / "study" / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the heatmap (labels × model) and the cells' bars, inlined
    assert (tmp_path / "study" / "sweep-heatmap.png").is_file() and "no-such-model" in page
    for cell in ok["output_dir"]:
        labels = yaml.safe_load((Path(cell) / "config.yaml").read_text())["competition"]["labels"]
        assert len(labels) in (2, 3)


def test_search_resumes_after_a_kill_and_its_best_config_reproduces_the_score(tmp_path, encoder, cli):
    _base(tmp_path / "comp", encoder, n_train=90)
    spec = _write(
        tmp_path / "search.yaml",
        {
            "base": "comp/config.yaml",
            "space": {"train.lr": {"log": [1e-4, 3e-3]}, "train.warmup_ratio": {"float": [0.0, 0.2]}},
            "trials": 3,
            "folds": "all",
            "output_dir": "search",
            "pruning": False,
        },
    )
    cells = tmp_path / "search" / "cells"
    # killed while the second trial trains (the first is complete)
    _kill_when(
        ["search", str(spec)],
        tmp_path,
        lambda: len(list(cells.glob("*/cell.json"))) >= 1 and len(list(cells.glob("*/fold0"))) >= 2,
    )
    code, out, err = cli("search", spec)
    assert code == 0, err
    assert "was interrupted; run again with the same settings" in err
    trials = pd.read_csv(tmp_path / "search" / "search.csv")
    assert len(trials) == 3 and (trials["state"] == "complete").all()
    assert trials["cell"].is_unique
    best = trials.loc[trials["value"].idxmax()]
    best_yaml = tmp_path / "search" / "best.yaml"
    chosen = yaml.safe_load(best_yaml.read_text())
    assert chosen["train"]["lr"] == pytest.approx(best["setting:train.lr"])
    assert chosen["competition"]["test"] is not None  # ready for a submission, not only for scoring

    assert (tmp_path / "search" / "search.html").is_file() and (tmp_path / "search" / "search-bars.png").is_file()
    code, out, err = cli("run", best_yaml)
    assert code == 0, err
    tuned = json.loads((tmp_path / "search" / "best" / "thresholds.json").read_text())
    assert tuned["cv_tuned"] == pytest.approx(best["value"], abs=1e-9)


def test_study_files_with_mistakes_are_one_line(tmp_path, encoder, cli):
    _base(tmp_path / "comp", encoder)
    base = "comp/config.yaml"
    bad_axis = _write(tmp_path / "a.yaml", {"base": base, "axes": {"train.nope": [1]}, "output_dir": "s"})
    code, _, err = cli("sweep", bad_axis)
    assert code == 2 and "train.nope" in err and len(err.strip().splitlines()) == 1
    too_many = _write(tmp_path / "b.yaml", {"base": base, "axes": {"data.labels": [9]}, "output_dir": "s"})
    code, _, err = cli("sweep", too_many)
    assert code == 2 and "data.labels: 9 labels asked for, the competition has 3" in err
    kind = _write(tmp_path / "c.yaml", {"base": base, "space": {"train.lr": {"between": [1, 2]}}, "output_dir": "s"})
    code, _, err = cli("search", kind)
    assert code == 2 and "space.train.lr" in err


def test_a_pruned_trial_stops_its_cell_at_the_evaluation_that_pruned_it(tmp_path, encoder):
    """What `search` prunes with: the hook sees fold 0's evaluations; raising Optuna's TrialPruned stops training
    after that evaluation's checkpoint, and the cell is not recorded as complete."""
    import optuna

    from kagglemlc.studies.cells import Study, read_cell

    _base(tmp_path / "comp", encoder)
    study = Study(tmp_path / "comp" / "config.yaml", tmp_path / "study", folds="1")
    seen = []

    def prune(fold: int, entry: dict) -> None:
        seen.append((fold, entry["step"]))
        raise optuna.TrialPruned("trails the median")

    with pytest.raises(optuna.TrialPruned):
        study.run_cell({"train.lr": 1e-3}, on_evaluate=prune)
    cell = study.config({"train.lr": 1e-3}).run_dir
    assert seen == [(0, 3)]  # the first evaluation (eval_every 3), then nothing more
    assert read_cell(cell) is None and not (cell / "fold0" / "metrics.json").exists()
    assert json.loads((cell / "fold0" / "checkpoint" / "progress.json").read_text())["step"] == 3
