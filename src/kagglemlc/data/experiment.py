"""Which settings made what is on disk, and the check that keeps trained folds and the config in step.

    stage_settings(cfg)["train"]        # {"train.lr": 5e-05, ...}: the settings marked as changing trained folds
    guard_trained(cfg, restart=False)   # one error line when folds on disk were trained with other settings
    record_settings(cfg)                # <output_dir>/config.yaml, with the settings of every stage in meta.stages

The record of what the fold models on disk used is `<output_dir>/config.yaml`: it is rewritten only after
`guard_trained` has passed, so it always describes the models there. Which setting changes which stage is
declared on the config schema itself (`config.affects`), not here.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import yaml

from kagglemlc.config import STAGES, Config, field_defaults, field_marks, save_resolved, settings_dict
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import experiment_lock, file_digest
from kagglemlc.core.paths import CONFIG_FILE, OOF_FILE, TEST_FILE, TRAINED_MARKS, fold_dir, fold_lock_name
from kagglemlc.data.tables import read_header

COLUMNS_KEY = "competition.sample_submission columns"


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(Path(path))


def content_digest(path: str | Path | None) -> str:
    """sha256 of a file, hashed once per process while its size and modification time stay the same."""
    if path is None or not Path(path).is_file():
        return "absent"
    stat = Path(path).stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def test_digest(cfg: Config) -> str:
    """What a folder's test predictions come from: the test file's content, and the `predict` settings that read it
    (as the content alone while they are the defaults)."""
    p = cfg.predict
    base = content_digest(cfg.competition.test)
    read = (p.max_length, p.stride, p.pooling)
    return base if read == (None, None, "mean") else f"{base}+{p.max_length}/{p.stride}/{p.pooling}"


def _label_columns(cfg: Config) -> list[str] | None:
    """The sample submission's column names: with `labels: auto` they are the label names, so they decide the folds."""
    comp = cfg.competition
    if comp.labels != "auto" or comp.sample_submission is None or not comp.sample_submission.is_file():
        return None
    return read_header(comp.sample_submission, comp.encoding, comp.delimiter)


def _applies(mark: dict[str, Any], cfg: Config) -> bool:
    """Whether a setting is read at all with this config's model kind and task (its mark's "kinds" / "tasks")."""
    return (not mark["kinds"] or cfg.model.kind in mark["kinds"]) and (
        not mark["tasks"] or cfg.competition.task in mark["tasks"]
    )


def stage_settings(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every stage's own settings, as {dotted key: value}; files count by their content's sha256.

    A stage's output also depends on its upstream stages' settings (see `pipeline.UPSTREAM`).
    """
    values = settings_dict(cfg)
    result: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for key, mark in field_marks():
        if not mark["stages"] or not _applies(mark, cfg):
            continue
        section, _, name = key.rpartition(".")
        value = values[section][name] if section else values[name]
        if mark["file"]:
            value = content_digest(value)
        for stage in mark["stages"]:
            result[stage][key] = value
    result["prepare"][COLUMNS_KEY] = _label_columns(cfg)
    return result


def record_settings(cfg: Config) -> Path:
    """Writes `<output_dir>/config.yaml` with every stage's settings; call it only once `guard_trained` passed."""
    return save_resolved(cfg, stages=stage_settings(cfg))


def trained_commit(cfg: Config) -> str | None:
    """The hub commit the experiment's trained folds were trained on (config.yaml's meta.model_commit), when there
    are trained folds of this model."""
    try:
        raw = yaml.safe_load((cfg.run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    same_model = isinstance(raw, dict) and (raw.get("model") or {}).get("name") == cfg.model.name
    commit = (raw.get("meta") or {}).get("model_commit") if same_model else None
    return commit if commit and trained_folds(cfg.run_dir) else None


def recorded_settings(run_dir: Path) -> dict[str, dict[str, Any]] | None:
    """The stage settings `config.yaml` recorded (None when there is no record)."""
    try:
        raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    stages = (raw.get("meta") or {}).get("stages") if isinstance(raw, dict) else None
    return stages if isinstance(stages, dict) else None


def changed_settings(cfg: Config, stages: tuple[str, ...]) -> list[str]:
    """The settings of `stages` that differ from the record in config.yaml, as "key old → new" (empty: none)."""
    recorded = recorded_settings(cfg.run_dir)
    if recorded is None:
        return []
    current = stage_settings(cfg)
    files = {key for key, mark in field_marks() if mark["file"]} | {COLUMNS_KEY}
    changes = []
    for stage in stages:
        for key, was, now_is in setting_changes(recorded.get(stage) or {}, current[stage]):
            changes.append(f"{key} (content changed)" if key in files else f"{key} {was!r} → {now_is!r}")
    return changes


def setting_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of each setting that differs between a record and now, the keys both sides have
    first (the edit the user made, before the settings it brought in or out).

    A key the record lacks whose value now is its default is no change: the record was made by a kagglemlc from
    before that setting existed, and a new setting's default is what kagglemlc did before (`field_defaults`), so
    upgrading kagglemlc neither refuses nor redoes what is on disk. A key the record has that is not recorded now
    because this model kind or task does not read it (its mark's "kinds" / "tasks") is no change either: kind and
    task are recorded themselves, and a record from before the mark was narrowed holds such keys.
    """
    defaults = _recorded_defaults()
    narrowed = {key for key, mark in field_marks() if mark["kinds"] or mark["tasks"]}
    keys = sorted(old.keys() | new.keys(), key=lambda k: (k not in old or k not in new, k))
    changes = []
    for key in keys:
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        if key not in new and key in narrowed:
            continue
        if key not in old or key not in new or old[key] != new[key]:
            changes.append((key, old.get(key), new.get(key)))
    return changes


@functools.cache
def _recorded_defaults() -> dict[str, Any]:
    """Every setting's default as `stage_settings` records it (a file setting's default: no file); an `auto`
    setting's: the value its mark says kagglemlc used before it existed."""
    marks = dict(field_marks())
    return {
        key: content_digest(None) if marks[key]["file"] else marks[key].get("before", value)
        for key, value in field_defaults().items()
    }


def trained_folds(run_dir: Path) -> list[Path]:
    """Fold folders holding anything trained: a checkpoint, a model or a complete fold's metrics."""
    folders = sorted(run_dir.glob("fold[0-9]*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1)
    return [f for f in folders if f.is_dir() and f.name[4:].isdigit() and any((f / m).exists() for m in TRAINED_MARKS)]


def guard_trained(cfg: Config, restart: bool = False, stages: tuple[str, ...] = ("prepare", "train")) -> bool:
    """Stops when the folds on disk were trained with other settings than `cfg`'s; with `restart`, discards them.

    Nothing trained is ever deleted without `restart`. Settings that only change later stages (thresholds,
    submission, the test file) never trip it.

    Returns:
        True when trained folds were discarded (the folds file must then be made again too).

    Raises:
        KaggleMLCError: one line naming the changed keys and the two ways on.
    """
    changes = changed_settings(cfg, stages)
    folds = trained_folds(cfg.run_dir)
    if not changes or not folds:
        return False
    shown = "; ".join(changes[:4]) + (f"; +{len(changes) - 4} more" if len(changes) > 4 else "")
    if not restart:
        raise KaggleMLCError(
            f"{cfg.run_dir}: {len(folds)} trained fold(s) used other settings ({shown}); nothing was changed. "
            "Set them back to the values before the arrow, train into a new folder (output_dir=runs/<new name>) or "
            "add --restart to discard them and retrain"
        )
    discard_folds(cfg, [int(f.name[4:]) for f in folds])
    info(f"--restart: settings changed ({shown}); discarded {', '.join(f.name for f in folds)} to retrain")
    return True


def discard_folds(cfg: Config, folds: list[int]) -> None:
    """Removes the folds' folders and the combined predictions that held them (the user asked: --restart)."""
    for k in folds:
        with experiment_lock(cfg.run_dir, "train --restart", fold_lock_name(k)):  # not while another run trains it
            shutil.rmtree(fold_dir(cfg.run_dir, k), ignore_errors=True)
    for combined in (OOF_FILE, TEST_FILE):
        (cfg.run_dir / combined).unlink(missing_ok=True)
