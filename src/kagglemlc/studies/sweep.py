"""`kagglemlc sweep SWEEP.yaml`: every combination of a few settings, each an experiment, compared in one table.

    base: kagglemlc.yaml                   # the config every cell starts from (relative to this file)
    axes:                                  # every combination is a cell
      data.labels: [2, 4, 8, 16]           # the N most frequent labels (or lists of label names)
      data.train_rows: [800, 1600, 2400]   # a stratified sample of N training rows
      adapter.method: [lora, qlora]        # any config key, with its values
    folds: 1                               # 1: fold 0 of each cell (fast); all: full CV + tuned thresholds
    output_dir: runs/sweep                 # → sweep.csv, sweep.html + PNGs, cells/<cell>/, data/

A killed sweep resumes: complete cells are read back, the interrupted one continues from its checkpoint. A cell
that fails is recorded with its error in sweep.csv and the sweep goes on.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import experiment_lock, write_csv
from kagglemlc.core.paths import SWEEP_FILE
from kagglemlc.studies.cells import Study, cell_name
from kagglemlc.studies.pictures import study_page


class SweepFile(BaseModel):
    """A sweep file's keys."""

    model_config = ConfigDict(extra="forbid")

    base: Path
    """The config every cell starts from."""
    axes: dict[str, list[Any]] = Field(min_length=1)
    """Setting → the values it takes; every combination is a cell."""
    folds: Literal[1, "all"] = 1
    """1: train fold 0 of each cell; all: every fold, then tuned thresholds and the nested estimate."""
    output_dir: Path
    """Where sweep.csv, the pictures and every cell's folder go."""
    seed: int = 42
    """Seed of the `data.train_rows` samples."""

    @field_validator("axes")
    @classmethod
    def _values(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in axes.items() if not values]
        if empty:
            raise ValueError(f"axis '{empty[0]}' has no values")
        return axes


def read_study_file(path: Path, model: type[BaseModel]) -> Any:
    """A sweep or search file, validated, with `base` and `output_dir` relative to the file's folder."""
    if not path.is_file():
        raise KaggleMLCError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise KaggleMLCError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise KaggleMLCError(f"{path}: {where}: {first['msg']}") from None
    for key in ("base", "output_dir"):
        setattr(parsed, key, (path.parent / getattr(parsed, key)).resolve())
    return parsed


def sweep(path: str | Path) -> Path:
    """Runs (or resumes) every cell of a sweep file and writes sweep.csv and its pictures.

    Returns:
        the path of sweep.csv.
    """
    spec: SweepFile = read_study_file(Path(path), SweepFile)
    study = Study(spec.base, spec.output_dir, "all" if spec.folds == "all" else "1", spec.seed)
    for key, values in spec.axes.items():  # every value checked before the first cell trains
        for value in values:
            study.check(key, value)
    grid = [dict(zip(spec.axes, values)) for values in itertools.product(*spec.axes.values())]
    out = spec.output_dir / SWEEP_FILE
    with experiment_lock(spec.output_dir, "sweep"):
        results = []
        for i, settings in enumerate(grid, start=1):
            info(f"sweep cell {i}/{len(grid)}: {cell_name(settings)}")
            results.append(study.run_cell(settings))
            write_csv(out, pd.DataFrame(results))  # after every cell: what is done so far, each cell once
        study_page(pd.DataFrame(results), list(spec.axes), spec.output_dir, "sweep", f"kagglemlc sweep {path}")
    failed = sum(r["status"] != "ok" for r in results)
    info(f"sweep: {len(grid)} cells, {failed} failed → {out}")
    return out
