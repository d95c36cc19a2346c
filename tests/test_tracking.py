"""Tracking and progress never go silent: W&B (offline) and TensorBoard runs of a real `kagglemlc train` read
back, the one-line error when the tracker's package is absent, plain progress lines without a terminal."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_competition
from kagglemlc.engine.tracking import ProgressLog
from tiny_models import make_encoder

# about 80 training rows per fold / batch 16: 5 or 6 steps an epoch, an evaluation after each
TRAIN = {"lr": 5e-3, "batch_size": 16, "eval_batch_size": 40, "epochs": 2, "precision": "no", "log_every": 2}


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("models") / "bert")


def _setup(folder: Path, model: Path, cli, name: str, slug: str | None = None, folds: int = 3, **train) -> Path:
    cfg = make_competition(
        folder,
        n_train=80 * folds // (folds - 1),
        config={
            "name": name,
            "competition": {"slug": slug},
            "cv": {"folds": folds, "seed": 0},
            "model": {"name": str(model), "max_length": 32},
            "train": {**TRAIN, **train},
        },
    )
    assert cli("prepare", cfg)[0] == 0
    return cfg


def _expected_steps(run_dir: Path, fold: int) -> tuple[list[int], list[int]]:
    """The steps the trackers should have: every log_every (2) optimiser steps, and every evaluation."""
    metrics = json.loads((run_dir / f"fold{fold}" / "metrics.json").read_text())
    return list(range(2, metrics["steps"] + 1, 2)), [h["step"] for h in metrics["history"]]


# --- W&B -------------------------------------------------------------------------------------------------
def _wandb_records(path: Path):
    """The records of an offline run's .wandb file: a LevelDB-style log (32 KiB blocks; 7-byte chunk headers
    of crc32, length, type: 1 whole record, 2/3/4 its first/middle/last part) after a 7-byte file header.
    wandb 0.31 has no Python reader of its own (the Go core writes the file)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block tail too short for a header: zero padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _wandb_run(path: Path) -> dict:
    """project, group, name, config (top-level keys → values) and history (key → steps) of an offline run."""
    run = {"config": {}, "history": {}}
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(project=record.run.project, group=record.run.run_group, name=record.run.display_name)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    run["history"].setdefault(key, []).append(record.history.step.num)
            continue
        else:
            continue
        run["config"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates})
    return run


def test_wandb_one_project_a_group_per_experiment_a_run_per_fold(tmp_path, cli, bert, monkeypatch):
    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": tmp_path,
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
    }.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    cfg = _setup(tmp_path / "comp", bert, cli, "exp-a", slug="toy-comp", folds=2, report_to="wandb")
    code, _, err = cli("train", cfg)  # both folds in one process
    assert code == 0, err

    runs = [_wandb_run(p) for p in sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))]
    assert sorted(r["name"] for r in runs) == ["exp-a-fold0", "exp-a-fold1"]
    assert {r["project"] for r in runs} == {"toy-comp"}  # one project for the competition
    assert {r["group"] for r in runs} == {"exp-a"}
    for run in runs:
        history = run["history"]
        logged, evaluated = _expected_steps(tmp_path / "comp" / "run", int(run["name"][-1]))
        assert len(evaluated) == 2
        assert history["train/loss"] == history["train/lr"] == history["train/samples_per_s"] == logged
        for key in ("eval/f1_macro", "eval/f1_macro_at_0.5", "eval/best_f1_macro"):
            assert history[key] == evaluated, key
        # the resolved config
        assert run["config"]["name"] == "exp-a" and run["config"]["train"]["log_every"] == 2
        assert run["config"]["model"]["max_length"] == 32


# --- TensorBoard -----------------------------------------------------------------------------------------
def test_tensorboard_one_project_folder_a_run_per_fold(tmp_path, cli, bert):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _setup(tmp_path, bert, cli, "exp-b", report_to="tensorboard", tracker_project="emotions")
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 0, err
    code, _, err = cli("train", cfg, "--fold", "2")
    assert code == 0, err

    root = tmp_path / "run" / "tensorboard"
    assert [p.name for p in root.iterdir()] == ["emotions"]
    runs = sorted(p for p in (root / "emotions").iterdir())
    assert [p.name for p in runs] == ["exp-b-fold0", "exp-b-fold2"]
    for run in runs:
        logged, evaluated = _expected_steps(tmp_path / "run", int(run.name[-1]))
        assert not [p for p in run.iterdir() if p.is_dir()]  # no extra folders that TensorBoard would list as runs
        events = EventAccumulator(str(run))
        events.Reload()
        steps = {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
        assert steps["train/loss"] == steps["train/lr"] == steps["train/samples_per_s"] == logged
        for tag in ("eval/f1_macro", "eval/f1_macro_at_0.5", "eval/best_f1_macro"):
            assert steps[tag] == evaluated, tag
        # the resolved config, as hyperparameters of the run
        hparams = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in hparams
        start = hparams["_hparams_/session_start_info"].decode("latin-1")
        assert "train.log_every" in start and "model.max_length" in start


# --- the package is absent -------------------------------------------------------------------------------
@pytest.mark.parametrize("tracker, modules", [("wandb", ["wandb"]), ("tensorboard", ["tensorboard", "tensorboardX"])])
def test_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, cli, bert, monkeypatch, tracker, modules):
    cfg = _setup(tmp_path, bert, cli, "exp-c")
    for module in modules:  # what accelerate's is_*_available find: nothing
        monkeypatch.setitem(sys.modules, module, None)
    code, _, err = cli("train", cfg, "--fold", "0", f"train.report_to={tracker}")
    assert code == 2
    assert err.count("\n") == 1, err
    assert f"train.report_to: {tracker} is not installed" in err and f"pip install 'kagglemlc[{tracker}]'" in err
    assert not (tmp_path / "run" / "fold0" / "metrics.json").exists()


# --- progress without a terminal -------------------------------------------------------------------------
PROGRESS = re.compile(r"^fold 0 step (\d+)/\d+: loss \d+\.\d{4} \d+ samples/s ETA \d+:\d\d$")


def test_progress_lines_before_the_first_evaluation_without_a_terminal(tmp_path, cli, bert):
    cfg = _setup(tmp_path, bert, cli, "exp-d")
    args = ["train", cfg, "--fold", "0", "train.epochs=1", "train.log_every_seconds=0.001"]
    run = subprocess.run(
        [sys.executable, "-m", "kagglemlc", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    first_eval = next(i for i, line in enumerate(lines) if line.startswith("fold 0 step ") and "best" in line)
    before = [m for m in map(PROGRESS.match, lines[:first_eval]) if m]
    assert before, run.stderr
    first_eval_step = int(lines[first_eval].split()[3].split("/")[0])
    assert all(1 <= int(m.group(1)) <= first_eval_step for m in before)


def test_progress_log_at_most_every_interval_with_eta(capsys):
    now = [0.0]
    lines = ProgressLog("fold 1", total_steps=100, start_step=20, every_seconds=30, enabled=True, clock=lambda: now[0])
    for step, t in [(21, 10.0), (22, 29.0), (23, 30.0), (24, 50.0), (25, 60.0)]:
        now[0] = t
        lines.maybe_log(step, 0.5, 12.3)
    err = capsys.readouterr().err.splitlines()
    # 30 s for 3 steps → 10 s a step, 77 steps to go; then 60 s for 5 steps → 12 s a step, 75 to go
    assert err == [
        "fold 1 step 23/100: loss 0.5000 12 samples/s ETA 12:50",
        "fold 1 step 25/100: loss 0.5000 12 samples/s ETA 15:00",
    ]
    silent = ProgressLog("fold 1", total_steps=100, start_step=0, every_seconds=30, enabled=False, clock=lambda: now[0])
    now[0] = 1000.0
    silent.maybe_log(5, 0.5, 1.0)
    assert capsys.readouterr().err == ""
