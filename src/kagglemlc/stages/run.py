"""`kagglemlc run`: prepare → train every fold → full fit → predict → tune-thresholds → submit, skipping what is done.

    kagglemlc run configs/demo.yaml             # a rerun after a crash or an edit does only what changed
    kagglemlc run configs/demo.yaml --upload    # ... and sends the submission to Kaggle

A stage's inputs are the settings marked on the config schema as changing its output (`config.affects`; files by
content) and its upstream stages' inputs; they are stored in `<output_dir>/stages.json` when the stage completes. A
stage whose inputs are unchanged and whose outputs exist is skipped (and says so); a setting newer than the record,
at its default, is no change (`experiment.setting_changes`: upgrading kagglemlc redoes nothing). A new test file
redoes only the test predictions (from the saved fold models) and the submission. Trained folds are never deleted
without `--restart`: an edit that invalidates them stops the run with one line naming the changed keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kagglemlc.config import STAGES, Config
from kagglemlc.core.console import info
from kagglemlc.core.files import experiment_lock, write_json
from kagglemlc.core.paths import (
    FOLDS_FILE,
    FULL_DIR,
    METRICS_FILE,
    OOF_FILE,
    STAGES_FILE,
    TEST_FILE,
    THRESHOLDS_FILE,
)
from kagglemlc.data.competition import cached_competition
from kagglemlc.data.experiment import guard_trained, setting_changes, stage_settings, trained_commit
from kagglemlc.models.build import resolve_model_path
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.stages import (  # the stages it chains (by module: tests replace them)
    predict,
    prepare,
    submit,
    train,
    tune_thresholds,
)

# the stages whose outputs each stage reads
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "train": ("prepare",),
    "full-fit": ("train",),
    "predict": ("train",),
    "tune-thresholds": ("train",),
    "submit": ("full-fit", "predict", "tune-thresholds"),
}


def stage_inputs(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every stage's inputs: the settings that change its output and, through them, its upstream stages' outputs
    (as plain JSON data, what stages.json records)."""
    settings = stage_settings(cfg)
    result: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        merged = {key: value for upstream in UPSTREAM[stage] for key, value in result[upstream].items()}
        result[stage] = json.loads(json.dumps({**merged, **settings[stage]}, sort_keys=True, default=str))
    return result


def fingerprints(cfg: Config) -> dict[str, str]:
    """What earlier kagglemlc commits recorded in stages.json instead of the inputs: a hash of each stage's settings and
    its upstream stages' hashes (read so that stages those versions completed stay done)."""
    settings = stage_settings(cfg)
    result: dict[str, str] = {}
    for stage in STAGES:
        payload = json.dumps([[result[u] for u in UPSTREAM[stage]], settings[stage]], sort_keys=True, default=str)
        result[stage] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return result


def _read_stamps(cfg: Config) -> dict[str, Any]:
    path = cfg.run_dir / STAGES_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _outputs(cfg: Config, stage: str) -> list[Path]:
    run = cfg.run_dir
    return {
        "prepare": [run / FOLDS_FILE],
        "train": [run / OOF_FILE],
        "full-fit": [run / FULL_DIR / METRICS_FILE] if cfg.train.full_fit else [],
        "predict": [run / TEST_FILE] if cfg.competition.test else [],
        "tune-thresholds": [run / THRESHOLDS_FILE],
        "submit": [],
    }[stage]


def _stage(
    cfg: Config, stage: str, inputs: dict[str, dict[str, Any]], work: Callable[[], Any], force: bool = False
) -> bool:
    """Runs `work` unless the stage is current; records its inputs. Returns True when it ran."""
    stamps = _read_stamps(cfg)
    recorded = stamps.get(stage, {})
    if isinstance(recorded.get("inputs"), dict):
        same = not setting_changes(recorded["inputs"], inputs[stage])
    else:
        same = recorded.get("fingerprint") == fingerprints(cfg)[stage]
    current = same and all(p.exists() for p in _outputs(cfg, stage))
    extra = recorded.get("output")
    if stage == "submit":
        current = current and extra is not None and Path(extra).is_file()
    if current and not force:
        info(f"{stage}: up to date (same config and inputs), skipped")
        return False
    output = work()
    stamps = _read_stamps(cfg)  # re-read: the stage itself may have run for a while
    stamps[stage] = {"inputs": inputs[stage], **({"output": str(output)} if stage == "submit" else {})}
    write_json(cfg.run_dir / STAGES_FILE, stamps)
    return True


def run(
    cfg: Config,
    upload: bool = False,
    message: str | None = None,
    restart: bool = False,
    on_evaluate: train.OnEvaluate | None = None,
) -> None:
    """The whole chain for one experiment, each stage skipped when its outputs are current.

    With `restart`, folds trained with other settings are discarded and trained again; without it, such an
    edit stops the run before anything is written. `on_evaluate` is handed to training (`train.train`).
    """
    with experiment_lock(cfg.run_dir, "run"):
        _run_stages(cfg, upload, message, restart, on_evaluate)


def _run_stages(
    cfg: Config, upload: bool, message: str | None, restart: bool, on_evaluate: train.OnEvaluate | None
) -> None:
    _choose_defaults(cfg)  # once: the stages below get the resolved config
    if guard_trained(cfg, restart):
        _forget(cfg, "train")
    inputs = stage_inputs(cfg)
    _stage(cfg, "prepare", inputs, lambda: prepare.prepare(cfg))
    _stage(cfg, "train", inputs, lambda: train.train(cfg, on_evaluate=on_evaluate, full_fit=False))
    _stage(cfg, "full-fit", inputs, lambda: train.train_full(cfg))  # nothing to do unless train.full_fit
    if cfg.competition.test is not None:
        # training predicted the test set with every fold's best model; a new test file needs only this
        _stage(cfg, "predict", inputs, lambda: predict.predict(cfg, only_stale=True))
    _stage(cfg, "tune-thresholds", inputs, lambda: tune_thresholds.tune_thresholds(cfg))
    if cfg.competition.test is None or cfg.competition.sample_submission is None:
        info("submit: competition.test / sample_submission not set, nothing to submit")
        return
    _stage(cfg, "submit", inputs, lambda: submit.submit(cfg, message, upload), force=upload)


def _choose_defaults(cfg: Config) -> None:
    """Every `auto` setting resolved (max_length from the training texts), before anything is fingerprinted."""
    resolve_model_path(cfg, trained_commit(cfg))  # a hub id: the commit trained folds used, else the latest
    with cached_competition(cfg.competition, cfg.run_dir, with_test=False) as data:
        apply_defaults(cfg, data.train_texts)


def _forget(cfg: Config, stage: str) -> None:
    """Drops a stage's completion stamp: its outputs were discarded."""
    stamps = _read_stamps(cfg)
    if stamps.pop(stage, None) is not None:
        write_json(cfg.run_dir / STAGES_FILE, stamps)
