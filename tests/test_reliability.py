"""Reliability (issue 7): kills between a submission's writes, concurrent submits, temp files of killed
writers, corrupted checkpoints and `train --restart`, `trust_remote_code`, and names that would leave their
folder. Hostile competition files are in test_fuzz_inputs.py, secrets in test_secrets.py.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import LABELS, make_competition
from kagglemlc.config import load_config
from kagglemlc.core import files as files
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_json
from kagglemlc.data.submissions import LOG_COLUMNS, read_log
from kagglemlc.stages import submit as submit_module
from kagglemlc.stages.submit import submit
from test_submit import random_probs, write_outputs
from tiny_models import make_encoder


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """The toy competition with test.parquet and thresholds.json: ready to submit."""
    config = make_competition(tmp_path / "comp", n_train=60, n_test=20)
    sample = pd.read_csv(tmp_path / "comp" / "sample_submission.csv", dtype=str)
    write_outputs(config, random_probs(list(sample["id"]), LABELS), {"joy": 0.3, "anger": 0.6, "fear": 0.9})
    return config


def logged_files(folder: Path) -> list[str]:
    """The files log.csv names, as written on disk (no journal replayed)."""
    return list(pd.read_csv(folder / "log.csv", dtype=str, keep_default_na=False)["file"])


def csv_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.csv") if p.name != "log.csv")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".log.lock")


# ---- a submission and its log row agree after any kill -----------------------------------------------


class Killed(BaseException):
    """Stands for a kill: nothing after it runs (not even `except Exception` handlers)."""


def _die(*args, **kwargs):
    raise Killed


@pytest.mark.parametrize("killed_before", ["_write_submission", "_write_log"])
def test_a_kill_between_the_csv_and_its_log_row_leaves_them_agreeing(experiment, monkeypatch, killed_before):
    """Killed before the CSV: no file and no row. Killed after the CSV but before the log: the journaled row
    counts as logged (read_log, report) and the next submit writes it into log.csv; no journal is left."""
    cfg = load_config(experiment)
    folder = cfg.submission.dir
    first = submit(cfg, message="first")
    with monkeypatch.context() as patch:
        patch.setattr(submit_module, killed_before, _die)
        with pytest.raises(Killed):
            submit(cfg, message="killed")
    on_disk, log = csv_names(folder), read_log(folder)
    assert sorted(log["file"]) == on_disk  # the files and the log agree right after the kill
    killed_csv_written = killed_before == "_write_log"
    assert len(on_disk) == 1 + killed_csv_written
    assert list(log["message"]) == ["first", "killed"][: 1 + killed_csv_written]

    third = submit(cfg, message="third")
    assert logged_files(folder) == read_log(folder)["file"].tolist()
    assert sorted(logged_files(folder)) == csv_names(folder)
    assert logged_files(folder)[0] == first.name and logged_files(folder)[-1] == third.name
    assert list(read_log(folder).columns) == LOG_COLUMNS
    assert leftovers(folder) == []  # the killed run's journal is spent or dropped


def _submit_many(config: Path, times: int) -> None:
    cfg = load_config(config)
    for i in range(times):
        submit(cfg, message=f"pid {os.getpid()} #{i}")


def test_concurrent_submits_lose_and_interleave_no_rows(experiment):
    """Two processes submitting at once (within the same second, so with the same file stem): every CSV
    gets its own name and its own complete log row."""
    submit(load_config(experiment))  # the competition cache, written once before the race
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_submit_many, args=(experiment, 6)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    folder = load_config(experiment).submission.dir
    log = pd.read_csv(folder / "log.csv", dtype=str, keep_default_na=False)
    assert len(log) == 13 and log["file"].is_unique
    assert sorted(log["file"]) == csv_names(folder)
    assert sorted(m.split(" #")[0] for m in log["message"][1:]) == sorted(
        f"pid {p.pid}" for p in procs for _ in range(6)
    )
    assert list(log.columns) == LOG_COLUMNS and (log["cv"] == "0.710000").all()


# ---- temp files of killed writers ----------------------------------------------------------------------

_KILLED_WRITER = """
import os, sys
from kagglemlc.core.files import atomic_path
tmp = atomic_path(sys.argv[1]).__enter__()
tmp.write_text("half of it")
os._exit(9)  # killed mid-write: no cleanup runs
"""


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    run = tmp_path / "run"

    def killed_writer(name: str) -> list[str]:
        killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(run / name)], check=False)
        assert killed.returncode == 9
        return leftovers(run)

    first = killed_writer("oof.parquet")
    assert len(first) == 1 and first[0].startswith(".oof.parquet.") and first[0].endswith(".tmp")
    second = killed_writer("stages.json")  # its own write removed the first one's leftover
    assert len(second) == 1 and second[0].startswith(".stages.json.")
    live = run / f".thresholds.json.{files._HOST}-{os.getpid()}.abc123.tmp"  # a writer still at work
    other_host = run / ".folds.parquet.otherbox-1.abc123.tmp"  # a writer on another machine (shared disk)
    unknown = run / ".notes.txt.tmp"  # not ours
    for path in (live, other_host, unknown):
        path.write_text("x")

    write_json(run / "thresholds.json", {"joy": 0.5})  # the next write into the folder, of any file
    assert leftovers(run) == sorted(p.name for p in (live, other_host, unknown))
    assert (run / "thresholds.json").is_file() and not (run / "oof.parquet").exists()


# ---- checkpoint integrity and train --restart -----------------------------------------------------------


class Interrupted(Exception):
    """Raised where a kill would have stopped training: after the last checkpoint, before the fold completes."""


def _interrupt(self):
    raise Interrupted


@pytest.fixture(scope="module")
def interrupted_fold(tmp_path_factory) -> tuple[Path, Path]:
    """A competition whose fold 0 stopped with a resumable checkpoint; returns (config, a pristine copy of fold0/)."""
    root = tmp_path_factory.mktemp("ckpt")
    model = make_encoder(root / "bert", "bert")
    train = {"max_steps": 4, "eval_every": 2, "checkpoint_every": 1, "batch_size": 16, "precision": "no"}
    config = make_competition(root / "comp", n_train=60, config={"model": {"name": str(model)}, "train": train})
    from kagglemlc.stages.prepare import prepare
    from kagglemlc.stages.train import FoldTrainer
    from kagglemlc.stages.train import train as run_train

    cfg = load_config(config)
    prepare(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr(FoldTrainer, "finish", _interrupt)
    try:
        with pytest.raises(Interrupted):
            run_train(cfg, 0)
    finally:
        mp.undo()
    ckpt = cfg.run_dir / "fold0" / "checkpoint"
    assert (ckpt / "progress.json").is_file() and (ckpt / "model.safetensors").is_file()
    pristine = root / "pristine-fold0"
    shutil.copytree(ckpt.parent, pristine)
    return config, pristine


def _restore(config: Path, pristine: Path) -> Path:
    fold = config.parent / "run" / "fold0"
    shutil.rmtree(fold, ignore_errors=True)
    shutil.copytree(pristine, fold)
    return fold


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _flip_last_byte(path: Path) -> None:
    """Damage inside the tensor data: the header is intact, so the file still loads without complaint."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [("model.safetensors", _truncate), ("model.safetensors", _garble), ("optimizer.bin", _truncate)]
    + [("optimizer.bin", _garble), ("progress.json", _truncate), ("model.safetensors", _flip_last_byte)],
    ids=lambda d: f"{d[0]}-{d[1].__name__.strip('_')}" if isinstance(d, tuple) else str(d),
)
def test_a_damaged_checkpoint_is_one_line_naming_restart(interrupted_fold, cli, damage):
    config, pristine = interrupted_fold
    fold = _restore(config, pristine)
    name, how = damage
    how(fold / "checkpoint" / name)
    code, _, err = cli("train", config, "--fold", "0")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "checkpoint is unreadable" in err and "kagglemlc train --fold 0 --restart" in err
    if how is _flip_last_byte:  # caught by the checksums, not by a loader
        assert f"{name} does not match the checksum saved with it" in err
    assert not (fold / "metrics.json").exists()


def test_restart_discards_a_damaged_fold_and_trains_it_from_scratch(interrupted_fold, cli):
    config, pristine = interrupted_fold
    fold = _restore(config, pristine)
    _truncate(fold / "checkpoint" / "model.safetensors")
    (fold / "model.tmp").mkdir()  # half-written folders of the killed run
    (fold / "checkpoint.tmp").mkdir()
    code, _, err = cli("train", config, "--fold", "0", "--restart")
    assert code == 0, err
    assert "training from scratch" in err and "resuming" not in err
    assert sorted(p.name for p in fold.iterdir()) == ["metrics.json", "model", "oof.parquet", "test.parquet"]
    # a complete fold is retrained only with --restart
    assert "already complete" in cli("train", config, "--fold", "0")[2]


def test_resume_removes_the_half_written_folders_of_the_killed_run(interrupted_fold, cli):
    config, pristine = interrupted_fold
    fold = _restore(config, pristine)
    for name in ("model.tmp", "checkpoint.tmp", "checkpoint.old"):
        (fold / name).mkdir()
    code, _, err = cli("train", config, "--fold", "0")
    assert code == 0, err
    assert "resuming at step 4" in err
    assert not any((fold / name).exists() for name in ("model.tmp", "checkpoint.tmp", "checkpoint.old", "checkpoint"))


# ---- trust_remote_code ------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [None, False, True])
def test_trust_remote_code_reaches_from_pretrained_only_as_configured(tmp_path, monkeypatch, setting):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kagglemlc.models import build as modeling

    model = make_encoder(tmp_path / "bert", "bert")
    overrides = [f"model.name={model}"] + ([] if setting is None else [f"model.trust_remote_code={setting}"])
    cfg = load_config(make_competition(tmp_path / "comp"), overrides)
    seen = []

    def recording(cls):
        original = cls.from_pretrained

        def from_pretrained(*args, **kwargs):
            seen.append((cls.__name__, kwargs.get("trust_remote_code", "absent")))
            return original(*args, **kwargs)

        return from_pretrained

    for cls in (AutoTokenizer, AutoModelForSequenceClassification):
        monkeypatch.setattr(getattr(modeling, cls.__name__), "from_pretrained", recording(cls))
    modeling.build_tokenizer(cfg)
    modeling.build_model(cfg, LABELS, "multilabel")
    expected = bool(setting)  # off unless the config turns it on
    assert {name for name, _ in seen} == {"AutoTokenizer", "AutoModelForSequenceClassification"}
    assert all(value is expected for _, value in seen), seen


# ---- names and paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "a\\b", "tab\there", ""])
def test_a_name_that_would_leave_its_folder_is_refused(tmp_path, cli, name):
    config = make_competition(tmp_path)
    code, _, err = cli("prepare", config, f"name={name!r}" if name else "name=''")
    assert code == 2 and err.count("\n") == 1, err
    assert "name" in err and "plain name" in err
    assert not (tmp_path / "run").exists()


def test_names_may_hold_dots_dashes_and_unicode(tmp_path):
    cfg = load_config(make_competition(tmp_path), ["name=deberta-v3.lr2e-5_ü"])
    assert cfg.name == "deberta-v3.lr2e-5_ü"


def test_ensemble_name_must_be_plain(tmp_path, cli):
    config = make_competition(tmp_path)
    for name in ("../../kmlc-escaped", "x/kmlc-escaped"):
        code, _, err = cli("ensemble", config, config, "--name", name)
        assert code == 2 and err.count("\n") == 1 and "--name" in err and "plain name" in err, err
    assert not [*tmp_path.rglob("*kmlc-escaped*"), *tmp_path.parent.glob("*kmlc-escaped*")]


def test_paths_the_user_writes_are_taken_as_written(tmp_path):
    """`..` in a path the user wrote is the user's choice: it resolves against the YAML's folder."""
    (tmp_path / "data").mkdir()
    config = make_competition(tmp_path / "exp", config={"output_dir": "../runs/exp", "submission": {"dir": "../subs"}})
    cfg = load_config(config)
    assert cfg.run_dir == (tmp_path / "runs" / "exp").resolve()
    assert cfg.submission.dir == (tmp_path / "subs").resolve()


@pytest.mark.parametrize("hub_id", ["org/..", "org/a..b", "org/name--x"])
def test_a_hub_id_with_dot_dot_is_refused_as_not_found(tmp_path, hub_id):
    from kagglemlc.models.build import build_tokenizer

    cfg = load_config(make_competition(tmp_path), [f"model.name={hub_id}"])
    with pytest.raises(KaggleMLCError, match="not found") as caught:
        build_tokenizer(cfg)
    assert "\n" not in str(caught.value)
