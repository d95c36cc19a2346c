"""`kagglemlc run`: prepare → train every fold → predict → tune-thresholds → submit, skipping what is current.

    kagglemlc run configs/demo.yaml             # a rerun after a crash or an edit does only what changed
    kagglemlc run configs/demo.yaml --upload    # ... and sends the submission to Kaggle

Each stage's fingerprint is a hash of the config sections it reads, the content of the competition
files and its upstream stage's fingerprint; it is stored in `<output_dir>/stages.json` when the
stage completes. A stage whose fingerprint is unchanged and whose outputs exist is skipped (and
says so). When the training settings change, the old fold folders are removed before retraining,
since their models no longer match the config.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kagglemlc.config import Config, settings_dict
from kagglemlc.console import info
from kagglemlc.files import experiment_lock, file_digest, write_json
from kagglemlc.folds import FOLDS_FILE, fold_dir, prepare

STAGES_FILE = "stages.json"

# which config sections each stage reads (on top of its upstream stage)
STAGE_SECTIONS = {
    "prepare": ("competition", "cv"),
    "train": ("model", "adapter", "train"),
    "tune-thresholds": ("thresholds",),
    "submit": ("submission",),
}


def fingerprints(cfg: Config) -> dict[str, str]:
    """Every stage's fingerprint: its config sections, the competition files, and the stage before it."""
    settings = settings_dict(cfg)
    comp = cfg.competition
    files = [comp.train, comp.test, comp.sample_submission, comp.label_names_file]
    upstream = json.dumps([file_digest(p) for p in files])
    result = {}
    for stage, sections in STAGE_SECTIONS.items():
        payload = json.dumps([upstream, {s: settings[s] for s in sections}], sort_keys=True, default=str)
        upstream = result[stage] = hashlib.sha256(payload.encode()).hexdigest()[:16]
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
        "train": [run / "oof.parquet"] + ([run / "test.parquet"] if cfg.competition.test else []),
        "tune-thresholds": [run / "thresholds.json"],
        "submit": [],
    }[stage]


def _stage(cfg: Config, stage: str, prints: dict[str, str], work: Callable[[], Any], force: bool = False) -> bool:
    """Runs `work` unless the stage is current; records its fingerprint. Returns True when it ran."""
    stamps = _read_stamps(cfg)
    recorded = stamps.get(stage, {})
    current = recorded.get("fingerprint") == prints[stage] and all(p.exists() for p in _outputs(cfg, stage))
    extra = recorded.get("output")
    if stage == "submit":
        current = current and extra is not None and Path(extra).is_file()
    if current and not force:
        info(f"{stage}: up to date (same config and inputs), skipped")
        return False
    if stage == "train" and recorded.get("fingerprint") not in (None, prints["train"]):
        _discard_stale_folds(cfg)
    output = work()
    stamps = _read_stamps(cfg)  # re-read: the stage itself may have run for a while
    stamps[stage] = {"fingerprint": prints[stage], **({"output": str(output)} if stage == "submit" else {})}
    write_json(cfg.run_dir / STAGES_FILE, stamps)
    return True


def _discard_stale_folds(cfg: Config) -> None:
    for k in range(100):
        folder = fold_dir(cfg, k)
        if not folder.exists():
            continue
        shutil.rmtree(folder)
        info(f"train: settings changed since {folder.name} was trained; removed it to retrain")


def run(cfg: Config, upload: bool = False, message: str | None = None) -> None:
    """The whole chain for one experiment, each stage skipped when its outputs are current."""
    with experiment_lock(cfg.run_dir, "run"):
        _run_stages(cfg, upload, message)


def _run_stages(cfg: Config, upload: bool, message: str | None) -> None:
    from kagglemlc.submit import submit
    from kagglemlc.thresholds import tune_thresholds
    from kagglemlc.train import train

    prints = fingerprints(cfg)
    # a new split invalidates everything trained on the old one
    if _stage(cfg, "prepare", prints, lambda: prepare(cfg)):
        stamps = _read_stamps(cfg)
        if stamps.get("train", {}).get("fingerprint") is not None:
            stamps["train"]["fingerprint"] = "stale-folds"
            write_json(cfg.run_dir / STAGES_FILE, stamps)
    _stage(cfg, "train", prints, lambda: train(cfg))
    _stage(cfg, "tune-thresholds", prints, lambda: tune_thresholds(cfg))
    if cfg.competition.test is None or cfg.competition.sample_submission is None:
        info("submit: competition.test / sample_submission not set, nothing to submit")
        return
    _stage(cfg, "submit", prints, lambda: submit(cfg, message, upload), force=upload)
