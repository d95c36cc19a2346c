"""`kagglemlc search SEARCH.yaml`: settings drawn by Optuna (TPE) within ranges, each trial a cell of a study.

    base: kagglemlc.yaml
    space:
      train.lr: {log: [1.0e-5, 1.0e-3]}      # a float drawn on a log scale
      train.warmup_ratio: {float: [0.0, 0.2]}
      train.epochs: {int: [2, 6]}
      adapter.method: {choice: [lora, ia3]}
      data.train_rows: {choice: [800, 1600]}
    trials: 20                                # finished trials (complete, pruned or failed) the search runs to
    folds: 1                                  # 1: fold 0 per trial; all: full CV + tuned thresholds
    output_dir: runs/search                   # → search.csv, study.db, best.yaml, search.html, cells/<trial>/
    pruning: true                             # stop a trial whose fold-0 history trails the median of the others

The study lives in `study.db` (SQLite): a killed search resumes, the trial that was running is run again with the
same settings (continuing from its checkpoint), and finished trials are kept. `best.yaml` is the best trial's
config, ready for `kagglemlc run` (its output_dir is `<output_dir>/best`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from kagglemlc.config import settings_dict
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import experiment_lock, write_csv, write_text
from kagglemlc.core.paths import BEST_CONFIG, BEST_DIR, SEARCH_DB, SEARCH_FILE
from kagglemlc.studies.cells import Study
from kagglemlc.studies.pictures import study_page
from kagglemlc.studies.sweep import read_study_file

KINDS = ("log", "float", "int", "choice")


class SearchFile(BaseModel):
    """A search file's keys."""

    model_config = ConfigDict(extra="forbid")

    base: Path
    space: dict[str, dict[str, list[Any]]] = Field(min_length=1)
    """Setting → {log|float|int: [low, high]} or {choice: [values]}."""
    trials: int = Field(20, ge=1)
    folds: Literal[1, "all"] = 1
    output_dir: Path
    seed: int = 42
    """Seed of the sampler (and of `data.train_rows` samples)."""
    pruning: bool = True


class CellFailed(Exception):
    """A trial whose cell failed: Optuna records it as failed and the search goes on."""


def _check_space(space: dict[str, dict[str, list[Any]]], path: Path) -> None:
    for key, spec in space.items():
        if len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise KaggleMLCError(f"{path}: space.{key}: write one of {', '.join(f'{{{k}: ...}}' for k in KINDS)}")
        kind, values = next(iter(spec.items()))
        if kind != "choice" and (len(values) != 2 or not values[0] < values[1]):
            raise KaggleMLCError(f"{path}: space.{key}: {kind} needs [low, high] with low < high, got {values}")
        if kind == "log" and values[0] <= 0:
            raise KaggleMLCError(f"{path}: space.{key}: log needs low > 0, got {values[0]}")
        if kind == "choice" and not values:
            raise KaggleMLCError(f"{path}: space.{key}: choice needs at least one value")


def _suggest(trial: optuna.Trial, key: str, spec: dict[str, list[Any]]) -> Any:
    kind, values = next(iter(spec.items()))
    if kind == "log":
        return trial.suggest_float(key, float(values[0]), float(values[1]), log=True)
    if kind == "float":
        return trial.suggest_float(key, float(values[0]), float(values[1]))
    if kind == "int":
        return trial.suggest_int(key, int(values[0]), int(values[1]))
    return trial.suggest_categorical(key, values)


def _requeue_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Trials left running by a killed search (this process holds the search's lock, so nothing runs them) are
    marked failed and queued again with the same settings: their cells continue from their checkpoints."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        info(f"search: trial {trial.number} was interrupted; run again with the same settings")


def search(path: str | Path) -> Path:
    """Runs (or resumes) a search to its trial budget; writes search.csv, best.yaml and the pictures.

    Returns:
        the path of best.yaml.
    """
    path = Path(path)
    spec: SearchFile = read_study_file(path, SearchFile)
    _check_space(spec.space, path)
    cells = Study(spec.base, spec.output_dir, "all" if spec.folds == "all" else "1", spec.seed)
    for key, values in spec.space.items():  # a setting that cannot take its range's ends fails here, not at trial 7
        kind, bounds = next(iter(values.items()))
        for value in bounds:
            cells.check(key, int(value) if kind == "int" else value)
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with experiment_lock(spec.output_dir, "search"):
        storage = optuna.storages.RDBStorage(f"sqlite:///{spec.output_dir / SEARCH_DB}")
        study = optuna.create_study(
            study_name="kagglemlc",
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2) if spec.pruning else optuna.pruners.NopPruner(),
        )
        # a resumed search's sampler is seeded past the trials it has: the same seed would draw the first ones again
        study.sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.get_trials(deepcopy=False)))
        _requeue_interrupted(study, storage)

        def objective(trial: optuna.Trial) -> float:
            settings = {key: _suggest(trial, key, values) for key, values in spec.space.items()}

            def prune(fold: int, entry: dict[str, Any]) -> None:
                if fold == 0:
                    trial.report(entry["metric"], entry["step"])
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"step {entry['step']}: {entry['metric']:.4f} trails the median")

            result = cells.run_cell(settings, on_evaluate=prune)
            for key, value in result.items():
                trial.set_user_attr(key, value)
            if result["status"] != "ok" or result["tuned"] is None:
                raise CellFailed(result.get("error") or "no score")
            return float(result["tuned"])

        def finished() -> int:  # complete, pruned or failed; an interrupted trial is run again, not counted
            trials = study.get_trials(deepcopy=False)
            return sum(t.state.is_finished() and not t.user_attrs.get("interrupted") for t in trials)

        while finished() < spec.trials:
            info(f"search trial {finished() + 1}/{spec.trials}")
            study.optimize(objective, n_trials=1, catch=(CellFailed,))
        frame = _trials_frame(study)
        write_csv(spec.output_dir / SEARCH_FILE, frame)
        best = _write_best(study, cells, spec)
        study_page(frame, list(spec.space), spec.output_dir, "search", f"kagglemlc search {path}")
    return best


def _trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("requeued_from", "interrupted")}
        settings = {f"setting:{k}": v for k, v in trial.params.items()}
        if trial.user_attrs.get("interrupted"):
            continue  # run again as a later trial with the same settings
        state = trial.state.name.lower()
        rows.append({"trial": trial.number, "state": state, "value": trial.value, **settings, **attrs})
    return pd.DataFrame(rows)


def _write_best(study: optuna.Study, cells: Study, spec: SearchFile) -> Path:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise KaggleMLCError(f"{spec.output_dir}: no trial completed; see {SEARCH_FILE} for their errors")
    best = study.best_trial
    cfg = cells.config(best.params, output_dir=spec.output_dir / BEST_DIR, scoring_only=False)
    out = spec.output_dir / BEST_CONFIG
    header = f"# kagglemlc search: trial {best.number}, {cfg.competition.metric} {best.value:.6f} (tuned)\n"
    write_text(out, header + yaml.safe_dump(settings_dict(cfg), sort_keys=False, allow_unicode=True))
    info(f"search: best trial {best.number} ({cfg.competition.metric} {best.value:.4f}) → {out}")
    return out
