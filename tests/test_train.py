"""`kagglemlc train` / `predict` end to end on tiny random encoders (CPU, seconds each)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import LABELS, make_competition, toy_frame
from tiny_models import make_encoder

LEARN = {"lr": 5e-3, "batch_size": 16, "eval_batch_size": 7, "early_stopping_patience": None, "precision": "no"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: make_encoder(root / arch, arch) for arch in ("bert", "roberta", "deberta-v2")}


def _setup(folder: Path, model: Path, cli, n_train: int = 240, **train) -> Path:
    cfg = make_competition(
        folder, n_train=n_train, config={"model": {"name": str(model), "max_length": 32}, "train": {**LEARN, **train}}
    )
    assert cli("prepare", cfg)[0] == 0
    return cfg


def _metrics(run: Path, fold: int) -> dict:
    return json.loads((run / f"fold{fold}" / "metrics.json").read_text())


@pytest.mark.parametrize("arch", ["roberta", "deberta-v2"])
def test_each_encoder_architecture_learns_one_fold(tmp_path, cli, models, arch):
    cfg = _setup(tmp_path, models[arch], cli, epochs=6, eval_every=10)
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 0, err
    history = _metrics(tmp_path / "run", 0)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    oof = pd.read_parquet(tmp_path / "run" / "fold0" / "oof.parquet")
    folds = pd.read_parquet(tmp_path / "run" / "folds.parquet")
    assert sorted(oof["id"]) == sorted(folds.loc[folds.fold == 0, "id"])
    assert list(oof.columns) == ["id", *LABELS]
    assert ((oof[LABELS] >= 0) & (oof[LABELS] <= 1)).all().all()


def test_all_folds_give_complete_oof_and_fold_averaged_test(tmp_path, cli, models):
    cfg = _setup(tmp_path, models["bert"], cli, n_train=300, epochs=30, eval_every=20)
    code, _, err = cli("train", cfg)
    assert code == 0, err
    run = tmp_path / "run"
    train = pd.read_csv(tmp_path / "train.csv", dtype=str)
    oof = pd.read_parquet(run / "oof.parquet")
    assert oof["id"].tolist() == train["id"].tolist()  # every row once, in train order
    assert oof[LABELS].notna().all().all() and ((oof[LABELS] >= 0) & (oof[LABELS] <= 1)).all().all()
    # learnable toy task: the keyword decides the label
    best = [_metrics(run, k)["best_metric"] for k in range(3)]
    assert min(best) > 0.6, best
    tests = [pd.read_parquet(run / f"fold{k}" / "test.parquet").set_index("id") for k in range(3)]
    test = pd.read_parquet(run / "test.parquet").set_index("id")
    np.testing.assert_allclose(test.to_numpy(), sum(t.loc[test.index].to_numpy() for t in tests) / 3, rtol=1e-6)
    m = _metrics(run, 0)
    assert m["trainable_params"] == m["total_params"] > 0
    assert m["samples_per_second"] > 0 and m["peak_memory_mb"]["cpu_rss"] > 0
    assert not (run / "fold0" / "checkpoint").exists()  # removed once the fold is complete

    # predict rebuilds the same test probabilities from the saved best model
    before = pd.read_parquet(run / "fold1" / "test.parquet")
    (run / "fold1" / "test.parquet").unlink()
    assert cli("predict", cfg, "--fold", "1")[0] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(run / "fold1" / "test.parquet"), before, rtol=1e-5)

    # a second train is a no-op for complete folds
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 0 and "already complete" in err


def test_early_stopping_stops_after_patience(tmp_path, cli, models):
    cfg = _setup(tmp_path, models["bert"], cli, epochs=20, lr=1e-12, eval_every=2, early_stopping_patience=2)
    assert cli("train", cfg, "--fold", "0")[0] == 0
    m = _metrics(tmp_path / "run", 0)
    assert m["stopped_early"] is True
    assert len(m["history"]) == 3  # first eval sets the best, two more without improvement
    assert m["steps"] == 6


def test_missing_model_is_one_line_error(tmp_path, cli):
    cfg = make_competition(tmp_path, config={"model": {"name": "nobody/no-such-model"}})
    assert cli("prepare", cfg)[0] == 0
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 2
    assert err.count("\n") == 1 and "nobody/no-such-model" in err and "cache" in err
    assert not (tmp_path / "run" / "fold0").exists()


def _kagglemlc(*args: str, launcher: list[str] | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*(launcher or [sys.executable, "-m"]), "kagglemlc", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, cli, models):
    # 400 steps; the best model comes well after the kill, so the final OOF depends on the resumed part
    cfg = _setup(
        tmp_path, models["bert"], cli, n_train=300, batch_size=8, epochs=16, eval_every=25, checkpoint_every=10
    )
    base = ["train", cfg, "--fold", "0"]
    # reference: uninterrupted
    ref = _kagglemlc(*base, "output_dir=" + str(tmp_path / "ref"))
    assert cli("prepare", cfg, "output_dir=" + str(tmp_path / "ref"))[0] == 0
    ref.communicate(timeout=300)
    # killed with SIGKILL mid-epoch once a checkpoint exists, then started again with the same command
    proc = _kagglemlc(*base)
    progress = tmp_path / "run" / "fold0" / "checkpoint" / "progress.json"
    deadline = time.time() + 120
    killed_at = None
    while proc.poll() is None and time.time() < deadline:
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            time.sleep(0.002)
            continue
        if state["step"] >= 60:
            # a second run on the same directory is refused while the first holds it ...
            code, _, err = cli(*base)
            assert code == 2 and "in use by `kagglemlc train` (pid" in err and err.count("\n") == 1, err
            proc.send_signal(signal.SIGKILL)
            killed_at = state["step"]
            break
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "run" / "fold0" / "metrics.json").exists()
    # ... and the lock of the killed process is not stale: the same command resumes
    out, err = _kagglemlc(*base).communicate(timeout=300)
    assert "resuming at step" in err, err
    a = pd.read_parquet(tmp_path / "ref" / "fold0" / "oof.parquet")
    b = pd.read_parquet(tmp_path / "run" / "fold0" / "oof.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # bit-identical on CPU
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ref" / "fold0" / "test.parquet"),
        pd.read_parquet(tmp_path / "run" / "fold0" / "test.parquet"),
        check_exact=True,
    )
    ref_m, run_m = _metrics(tmp_path / "ref", 0), _metrics(tmp_path / "run", 0)
    assert [(h["step"], h["metric"]) for h in ref_m["history"]] == [(h["step"], h["metric"]) for h in run_m["history"]]
    assert ref_m["best_step"] > killed_at and ref_m["best_metric"] > 0.6


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_processes_matches_one_process(tmp_path, cli, models):
    """Same global batch (2 × 8 vs 1 × 16) without dropout: the same maths up to float summation order, so
    complete, duplicate-free OOF and a validation metric within 0.02 of the 1-process run."""
    model = make_encoder(tmp_path / "nodrop", "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg = _setup(tmp_path, model, cli, n_train=300, epochs=24, eval_every=26)
    one = str(tmp_path / "one")
    assert cli("prepare", cfg, "output_dir=" + one)[0] == 0
    out, err = _kagglemlc("train", cfg, "--fold", "0", "output_dir=" + one, "train.batch_size=16").communicate(
        timeout=300
    )
    port = str(_free_port())  # a fixed port fails whenever another run (a second CI job) holds it
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, "-m"]
    proc = _kagglemlc("train", cfg, "--fold", "0", "train.batch_size=8", launcher=launcher)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    folds = pd.read_parquet(tmp_path / "run" / "folds.parquet")
    val_ids = sorted(folds.loc[folds.fold == 0, "id"])
    two_oof = pd.read_parquet(tmp_path / "run" / "fold0" / "oof.parquet")
    assert sorted(two_oof["id"]) == val_ids and not two_oof["id"].duplicated().any()
    assert two_oof[LABELS].notna().all().all()
    assert _metrics(tmp_path / "run", 0)["processes"] == 2
    m1, m2 = _metrics(Path(one), 0)["best_metric"], _metrics(tmp_path / "run", 0)["best_metric"]
    assert abs(m1 - m2) <= 0.02, (m1, m2)


# --- the first command, and runs that never lose or misdescribe training ----------------------------------------
def _fresh(folder: Path, model: Path, **train) -> Path:
    """A competition folder as users have it: the files and a config, nothing prepared."""
    return make_competition(
        folder, n_train=120, config={"model": {"name": str(model), "max_length": 32}, "train": {**LEARN, **train}}
    )


def test_train_fold_0_is_the_first_command_in_a_fresh_folder(tmp_path, cli, models):
    cfg = _fresh(tmp_path, models["bert"], max_steps=3)
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 0, err
    run = tmp_path / "run"
    assert "folds.parquet: not found; splitting as `kagglemlc prepare` does" in err
    assert (run / "fold0" / "metrics.json").is_file()
    # exactly the folds `prepare` writes
    assert cli("prepare", cfg, f"output_dir={tmp_path / 'prepared'}")[0] == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(run / "folds.parquet"), pd.read_parquet(tmp_path / "prepared" / "folds.parquet")
    )


def test_two_processes_start_two_folds_at_once_on_one_folder(tmp_path, cli, models):
    cfg = _fresh(tmp_path, models["bert"], max_steps=2)
    procs = [_kagglemlc("train", cfg, "--fold", str(k)) for k in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    run = tmp_path / "run"
    assert cli("prepare", cfg, f"output_dir={tmp_path / 'prepared'}")[0] == 0
    folds = pd.read_parquet(run / "folds.parquet")
    pd.testing.assert_frame_equal(folds, pd.read_parquet(tmp_path / "prepared" / "folds.parquet"))
    for k in (0, 1):  # each process validated on the rows the shared folds file gives its fold
        oof = pd.read_parquet(run / f"fold{k}" / "oof.parquet")
        assert sorted(oof["id"]) == sorted(folds.loc[folds.fold == k, "id"])


def test_a_changed_setting_over_a_complete_fold_stops_and_keeps_config_and_model(tmp_path, cli, models):
    cfg = _fresh(tmp_path, models["bert"], max_steps=2)
    assert cli("train", cfg, "--fold", "0")[0] == 0
    run = tmp_path / "run"
    code, _, err = cli("train", cfg, "--fold", "0")  # unchanged: skipped, and the way to retrain is named
    assert code == 0 and "already complete" in err and "--restart" in err, err
    resolved, model = (run / "config.yaml").read_text(), (run / "fold0" / "model").stat().st_mtime_ns

    code, _, err = cli("train", cfg, "train.lr=1e-3", "--fold", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert "train.lr 0.005 → 0.001" in err and "--restart" in err and "output_dir" in err
    assert (run / "config.yaml").read_text() == resolved  # still the settings the saved model used
    assert (run / "fold0" / "model").stat().st_mtime_ns == model
    code, _, err = cli("train", cfg, "train.lr=1e-3", "--fold", "1")  # another fold: the same answer
    assert code == 2 and not (run / "fold1").exists(), err

    code, _, err = cli("train", cfg, "train.lr=1e-3", "--fold", "0", "--restart")
    assert code == 0 and "discarded fold0" in err, err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 1e-3
    assert json.loads((run / "fold0" / "metrics.json").read_text())["history"]

    # a record by a kagglemlc from before some settings existed: at their defaults they are no change
    def forget_newer_settings() -> None:
        raw = yaml.safe_load((run / "config.yaml").read_text())
        for key in ("model.reinit_layers", "train.llrd", "model.pooling"):
            del raw["meta"]["stages"]["train"][key]
        (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    forget_newer_settings()
    code, _, err = cli("train", cfg, "train.lr=1e-3", "--fold", "0")
    assert code == 0 and "already complete" in err, err
    forget_newer_settings()
    code, _, err = cli("train", cfg, "train.lr=1e-3", "model.reinit_layers=1", "--fold", "0")
    assert code == 2 and "model.reinit_layers None → 1" in err, err


def test_a_folds_file_that_does_not_match_cv_folds_is_one_error_line(tmp_path, cli, models):
    cfg = _setup(tmp_path, models["bert"], cli, max_steps=2)  # prepared with 3 folds
    code, _, err = cli("train", cfg, "cv.folds=5", "--fold", "0")
    assert code == 2 and err.count("\n") == 1 and "cv.folds 3 → 5" in err and "kagglemlc prepare" in err, err
    assert not (tmp_path / "run" / "fold0").exists()
    # a folds file with no record of its settings (an older kagglemlc) is checked by its content
    (tmp_path / "run" / "config.yaml").unlink()
    code, _, err = cli("train", cfg, "cv.folds=5", "--fold", "0")
    assert code == 2 and err.count("\n") == 1 and "has 3 folds but cv.folds is 5" in err, err


def test_predict_takes_overrides_for_another_test_file(tmp_path, cli, models):
    cfg = _setup(tmp_path, models["bert"], cli, max_steps=2)
    assert cli("train", cfg)[0] == 0
    other = tmp_path / "elsewhere"
    other.mkdir()
    test = toy_frame(11, seed=5, id_prefix="x")[["id", "text"]]
    test.to_csv(other / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}}).to_csv(other / "sample.csv", index=False)
    paths = [f"competition.test={other / 'test.csv'}", f"competition.sample_submission={other / 'sample.csv'}"]
    code, _, err = cli("predict", cfg, *paths)
    assert code == 0, err
    assert pd.read_parquet(tmp_path / "run" / "test.parquet")["id"].tolist() == test["id"].tolist()
    code, _, err = cli("predict", cfg, "train.no_such_key=1")
    assert code == 2 and "unknown key 'train.no_such_key'" in err, err
