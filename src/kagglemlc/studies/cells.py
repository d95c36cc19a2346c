"""A study's cells: one experiment per combination of settings, each in its own folder, run the way `kagglemlc` runs
one experiment (resumable: a killed cell continues from its checkpoint), its result kept in `cell.json`.

    study = Study(base_config_path, folder, folds="1", seed=42)
    result = study.run_cell({"data.labels": 4, "data.train_rows": 800, "train.lr": 1e-4})
    result["tuned"], result["train_seconds"], result["status"]         # one row of sweep.csv / a search trial

A cell's settings are config keys (dotted, as on the command line) and two data keys: `data.labels` (the N most
frequent labels, or a list of label names; the others dropped) and `data.train_rows` (a stratified sample of N
training rows, the same rows whatever the other settings are). Data subsets are written once into
`<folder>/data/`; a cell reads no test file (a study scores out of fold).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from kagglemlc.config import Config, load_config
from kagglemlc.core.console import info, warn
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_json
from kagglemlc.core.paths import CELL_FILE, CELLS_DIR, METRICS_FILE, STUDY_DATA_DIR, THRESHOLDS_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData, load_competition
from kagglemlc.data.subsets import most_frequent_labels, named_labels, stratified_rows, write_subset
from kagglemlc.stages import run as run_stage
from kagglemlc.stages import train as train_stage

DATA_AXES = ("data.labels", "data.train_rows")
Folds = Literal["1", "all"]
OnEvaluate = Callable[[int, dict[str, Any]], None]


def cell_name(settings: dict[str, Any]) -> str:
    """A readable, unique folder name for a cell: its settings shortened, plus a hash of all of them."""
    parts = []
    for key, value in settings.items():
        short = key.split(".")[-1]
        text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{short}={text}")
    readable = re.sub(r"[^A-Za-z0-9=._-]+", "_", ",".join(parts))[:80]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def overrides_of(settings: dict[str, Any]) -> list[str]:
    """The command-line overrides of a cell's config keys (its data keys are not config keys)."""
    return [f"{key}={json.dumps(value)}" for key, value in settings.items() if key not in DATA_AXES]


class Study:
    """The base config, the study's folder and what every cell shares (the competition, the data subsets)."""

    def __init__(self, base: Path, folder: Path, folds: Folds = "1", seed: int = 42):
        self.base, self.folder, self.folds, self.seed = Path(base), Path(folder), folds, seed
        self.base_cfg = load_config(self.base)
        self._data: CompetitionData | None = None

    @property
    def data(self) -> CompetitionData:
        if self._data is None:
            self._data = load_competition(self.base_cfg.competition, with_test=False)
        return self._data

    def check(self, key: str, value: Any) -> None:
        """One line naming `key` when a value cannot be used (a config key's type, a data key's range)."""
        if key == "data.labels":
            if isinstance(value, list):
                named_labels(self.data, [str(v) for v in value])
            elif not isinstance(value, int) or isinstance(value, bool):
                raise KaggleMLCError(f"data.labels: {value!r} is neither a number of labels nor a list of names")
            else:
                most_frequent_labels(self.data, value)
        elif key == "data.train_rows":
            if not isinstance(value, int) or isinstance(value, bool):
                raise KaggleMLCError(f"data.train_rows: {value!r} is not a number of rows")
            stratified_rows(self.data, value, self.seed)
        else:
            load_config(self.base, overrides_of({key: value}))

    def config(self, settings: dict[str, Any], output_dir: Path | None = None, scoring_only: bool = True) -> Config:
        """The cell's config: the base with the cell's settings, in its own output_dir (or `output_dir`).

        With `scoring_only` (a cell) the test file is left out (a study scores out of fold); without it (a config
        for `kagglemlc run`) it stays. A data setting always leaves out the test file and the sample submission:
        the training file then has other labels or rows, and the labels are listed.
        """
        overrides = self._data_overrides(settings.get("data.labels"), settings.get("data.train_rows"))
        if scoring_only and not overrides:  # the sample submission stays: it may be where the labels are listed
            overrides = ["competition.test=null"]
        folder = output_dir or self.folder / CELLS_DIR / cell_name(settings)
        cfg = load_config(self.base, [*overrides, *overrides_of(settings), f"output_dir={folder}"])
        cfg.name = folder.name
        return cfg

    def _data_overrides(self, labels: Any, rows: int | None) -> list[str]:
        if labels is None and rows is None:
            return []
        names = (
            self.data.label_names
            if labels is None
            else named_labels(self.data, [str(v) for v in labels])
            if isinstance(labels, list)
            else most_frequent_labels(self.data, labels)
        )
        positions = stratified_rows(self.data, rows or len(self.data.y), self.seed)
        tag = hashlib.sha256(json.dumps([names, rows, self.seed]).encode()).hexdigest()[:8]
        path = (self.folder / STUDY_DATA_DIR / f"train-{rows or 'all'}-{len(names)}labels-{tag}.csv").resolve()
        return write_subset(self.base_cfg.competition, self.data, positions, names, path)

    def run_cell(self, settings: dict[str, Any], on_evaluate: OnEvaluate | None = None) -> dict[str, Any]:
        """Runs one cell to the end (or resumes it) and returns its result, also kept in `<cell>/cell.json`.

        A cell that fails is recorded with its error (status "failed") and the study goes on; a completed cell's
        result is read back without training again.
        """
        try:
            cfg = self.config(settings)
        except KaggleMLCError as exc:
            return self._record(self.folder / CELLS_DIR / cell_name(settings), settings, error=str(exc))
        done = read_cell(cfg.run_dir)
        if done is not None and done["status"] == "ok":
            info(f"{cfg.name}: complete ({cfg.run_dir / CELL_FILE}), skipped")
            return done
        try:
            if self.folds == "all":
                run_stage.run(cfg, on_evaluate=on_evaluate)
            else:
                train_stage.train(cfg, fold=0, on_evaluate=on_evaluate)
            result = self._record(cfg.run_dir, settings, cfg=cfg)
        except Exception as exc:  # a failed cell is a result; the study goes on (a kill or Ctrl-C is not caught)
            if type(exc).__name__ == "TrialPruned":  # optuna's: not a failure, the search decides
                raise
            warn(f"{cfg.name}: failed: {exc}")
            result = self._record(cfg.run_dir, settings, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        gc.collect()
        return result

    def _record(
        self, folder: Path, settings: dict[str, Any], cfg: Config | None = None, error: str | None = None
    ) -> dict[str, Any]:
        result = {"cell": folder.name, **{f"setting:{k}": _cell_value(v) for k, v in settings.items()}}
        result |= {"status": "failed", "error": error} if error is not None else {"status": "ok", "error": ""}
        if cfg is not None:
            result |= outcome(cfg, self.folds)
        write_json(folder / CELL_FILE, result)
        return result


def _cell_value(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list) else value


def read_cell(folder: Path) -> dict[str, Any] | None:
    """A cell's recorded result, or None when it has none (not run, or killed before it ended)."""
    try:
        return json.loads((folder / CELL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def outcome(cfg: Config, folds: Folds) -> dict[str, Any]:
    """What a finished cell scored and cost: the metric untuned (at 0.5), tuned and nested (all folds: from
    thresholds.json; one fold: fold 0's best evaluation, tuned on its validation rows), parameters, training time
    and speed, peak memory."""
    ks = range(cfg.cv.folds) if folds == "all" else [0]
    metrics = [json.loads((fold_dir(cfg.run_dir, k) / METRICS_FILE).read_text(encoding="utf-8")) for k in ks]
    if folds == "all":
        tuned = json.loads((cfg.run_dir / THRESHOLDS_FILE).read_text(encoding="utf-8"))
        scores = {"untuned": tuned.get("cv_at_0.5"), "tuned": tuned.get("cv_tuned"), "nested": tuned.get("cv_nested")}
    else:
        best = next((h for h in metrics[0]["history"] if h["step"] == metrics[0]["best_step"]), {})
        scores = {"untuned": best.get("metric_at_0.5"), "tuned": metrics[0]["best_metric"], "nested": None}
    peaks = [m.get("peak_memory_mb") or {} for m in metrics]
    gpu = [p.get("gpu_max_allocated") for p in peaks if p.get("gpu_max_allocated") is not None]
    seconds = sum(m.get("train_seconds", 0.0) for m in metrics)
    samples = sum(m.get("samples_per_second", 0.0) * m.get("train_seconds", 0.0) for m in metrics)
    return {
        "metric": cfg.competition.metric,
        **{k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in scores.items()},
        "trainable_params": metrics[0].get("trainable_params"),
        "total_params": metrics[0].get("total_params"),
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(samples / max(seconds, 1e-9), 2),
        "peak_cpu_mb": max((p.get("cpu_rss") or 0.0) for p in peaks),
        "peak_gpu_mb": max(gpu) if gpu else None,
        "best_step": metrics[0].get("best_step"),
        "output_dir": str(cfg.run_dir),
    }
