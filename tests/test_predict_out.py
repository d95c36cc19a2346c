"""`kagglemlc predict --out`: a read-only run folder (a Kaggle dataset), no folds.parquet, rows/s and an ETA, the same
probabilities as training wrote; two processes (torchrun, gloo on CPU: one model copy each) give the same rows.
Also `train.precision: auto` on a GPU that only emulates bf16 (T4, P100) is fp16."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import LABELS, make_competition
from kagglemlc import cli
from kagglemlc.models import precision
from tiny_models import make_encoder

LEARN = {
    "lr": 5e-3,
    "batch_size": 16,
    "eval_batch_size": 7,
    "early_stopping_patience": None,
    "precision": "no",
    "max_steps": 4,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 3-fold experiment on a tiny BERT, trained once for the module; returns its config."""
    root = tmp_path_factory.mktemp("predict_out")
    model = make_encoder(root / "bert", "bert")
    cfg = make_competition(
        root / "comp", n_train=90, n_test=23, config={"model": {"name": str(model), "max_length": 32}, "train": LEARN}
    )
    out = subprocess.run(
        [sys.executable, "-m", "kagglemlc", "train", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return cfg


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_predict_out_reads_the_run_folder_only_and_needs_no_folds(trained, tmp_path, cli):
    run = trained.parent / "run"
    (run / "folds.parquet").rename(tmp_path / "folds.parquet")  # a bundle has none
    try:
        before = _snapshot(run)
        code, _, err = cli("predict", trained, "--out", tmp_path / "out")
        assert code == 0, err
        assert _snapshot(run) == before  # nothing written, changed or added in the run folder
    finally:
        (tmp_path / "folds.parquet").rename(run / "folds.parquet")
    for k in range(3):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "out" / f"fold{k}" / "test.parquet"),
            pd.read_parquet(run / f"fold{k}/test.parquet"),
        )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out" / "test.parquet"), pd.read_parquet(run / "test.parquet")
    )
    assert "rows/s" in err and "ETA" in err and "fold0: 23 rows in" in err, err


def test_predict_out_with_train_rows_is_one_line_error(trained, tmp_path, cli):
    code, _, err = cli("predict", trained, "--out", tmp_path / "out", "--train-rows")
    assert code == 2 and err.count("\n") == 1 and "--train-rows" in err, err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_predict_every_row_once_as_one_does(trained, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on CPU): each process holds its own model copy and predicts every second of
    the length-sorted batches; the gathered rows are the one-process rows, none lost or doubled."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    cmd = [*launcher, str(_free_port()), "-m", "kagglemlc", "predict", str(trained), "--out", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = pd.read_parquet(tmp_path / "two" / "test.parquet")
    one = pd.read_parquet(trained.parent / "run" / "test.parquet")
    assert two["id"].tolist() == one["id"].tolist()
    np.testing.assert_allclose(two[LABELS].to_numpy(), one[LABELS].to_numpy(), atol=1e-6)
    assert done.stderr.count("rows/s") == 3  # one line per fold model, from the main process only


@pytest.mark.parametrize(("argv", "code"), [(["--version"], 0), (["predict", "missing.yaml"], 2)])
def test_the_command_closes_its_process_group_however_it_ends(monkeypatch, argv, code):
    """A torchrun process that exits with its Gloo group open can abort in the interpreter's teardown (SIGABRT after
    all its work was done, which failed CI once): `main` closes the group, after a barrier when the command
    finished, at once when it failed (the other processes may never reach a barrier)."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    monkeypatch.setattr(sys, "argv", ["kagglemlc", *argv])
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main()
        assert ended.value.code == code
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.parametrize(("major", "expected"), [(6, "fp16"), (7, "fp16"), (8, "bf16"), (9, "bf16")])
def test_auto_precision_is_fp16_where_bf16_is_only_emulated(monkeypatch, major, expected):
    """P100 (6.0), V100 and T4 (7.x) run bf16 by emulation only, which torch's default check counts as support."""
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        precision.torch.cuda, "get_device_properties", lambda device: type("Props", (), {"major": major})()
    )
    monkeypatch.setattr(precision.torch.cuda, "_check_bf16_tensor_supported", lambda device: True, raising=False)
    assert precision.resolve_precision("auto") == expected
