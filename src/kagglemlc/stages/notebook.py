"""What the exported notebook runs (`kagglemlc export`): an inference bundle's models on the competition's test file,
the thresholds and blend weights, then /kaggle/working/submission.csv checked against the sample submission.

    from kagglemlc.stages.notebook import predict_bundle
    predict_bundle("/kaggle/input/minilm-kagglemlc", "minilm")     # → /kaggle/working/submission.csv

Nothing is re-implemented: each experiment is predicted by `kagglemlc predict --out` (the bundle is only read), a
blend is made as `kagglemlc ensemble` makes its test file, and the CSV is built, checked and written by `submit`'s
own code, so the file equals what `kagglemlc submit` writes from the same models. With several GPUs, each
experiment is predicted by torchrun, one process and one model copy per GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from kagglemlc.config import Config, load_config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import (
    BUNDLE_MANIFEST,
    BUNDLE_WORK_DIR,
    CONFIG_FILE,
    KAGGLE_SUBMISSION,
    TEST_FILE,
    THRESHOLDS_FILE,
)
from kagglemlc.data.competition import cached_competition
from kagglemlc.data.predictions import submitted_test, write_probabilities
from kagglemlc.scoring.blend import blend32, to_blend_space
from kagglemlc.stages.predict import predict
from kagglemlc.stages.submit import _write_submission, submission_frame, validate_submission

SEARCH_DEPTH = 4
"""Folders below the input folder searched for a competition file that is not in input/<slug>/."""


def find_competition_file(name: str, slug: str | None, input_dir: Path) -> Path:
    """The competition's file `name`: input/<slug>/<name> where Kaggle mounts it, else the first file of that name
    found under `input_dir` (a bundle's own copy of the training file excepted).

    Raises:
        KaggleMLCError: no such file; set it in the notebook's parameters cell.
    """
    if slug and (input_dir / slug / name).is_file():
        return input_dir / slug / name
    for depth in range(1, SEARCH_DEPTH + 1):
        for path in sorted(input_dir.glob("/".join(["*"] * depth) + "/" + name)):
            in_bundle = any((parent / BUNDLE_MANIFEST).is_file() for parent in path.parents)
            if path.is_file() and not in_bundle:
                return path
    raise KaggleMLCError(f"{name} not found in {input_dir / (slug or '<slug>')} nor below {input_dir}; set the path")


def _predict_experiment(bundle: Path, name: str, overrides: list[str], out: Path) -> None:
    """`kagglemlc predict <bundle>/<name>/config.yaml --out <out>`: in this process, or with several GPUs under
    torchrun (one process, one model copy per GPU)."""
    config = bundle / name / CONFIG_FILE
    gpus = torch.cuda.device_count()
    if gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
        command = [*launcher, "-m", "kagglemlc", "predict", str(config), "--out", str(out), *overrides]
        info(f"{name}: {gpus} GPUs, one process each: {' '.join(command[2:])}")
        if subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode != 0:
            raise KaggleMLCError(f"{name}: prediction failed on {gpus} GPUs (its error is printed above)")
    else:
        predict(load_config(config, overrides), out=out)
    shutil.copy2(bundle / name / THRESHOLDS_FILE, out / THRESHOLDS_FILE)


def _working_config(bundle: Path, name: str, overrides: list[str], work: Path) -> Config:
    """An experiment's (or blend's) bundle config, reading its predictions from `work`/<name>/."""
    return load_config(bundle / name / CONFIG_FILE, [*overrides, f"output_dir={work / name}"])


def predict_bundle(
    bundle: str | Path,
    submit: str | None = None,
    input_dir: str | Path = "/kaggle/input",
    working: str | Path = "/kaggle/working",
    test: str | Path | None = None,
    sample_submission: str | Path | None = None,
) -> Path:
    """Predicts the test file with the bundle's experiment or blend `submit` and writes `working`/submission.csv.

    Args:
        bundle: the bundle's folder (the one holding kagglemlc-bundle.json).
        submit: an experiment or blend of the bundle; default the one it was exported for.
        input_dir: where Kaggle mounts the competition and the datasets.
        working: where the submission and the predictions (`working`/kagglemlc/<name>/) are written.
        test, sample_submission: the competition's files; default found (`find_competition_file`).

    Returns:
        the submission's path.
    """
    bundle, input_dir, working = Path(bundle), Path(input_dir), Path(working)
    manifest = json.loads((bundle / BUNDLE_MANIFEST).read_text(encoding="utf-8"))
    submit = submit or manifest["submit"]
    slug = manifest["competition"]
    blend = manifest["blends"].get(submit)
    if blend is None and submit not in manifest["experiments"]:
        known = ", ".join([*manifest["experiments"], *manifest["blends"]])
        raise KaggleMLCError(f"SUBMIT '{submit}' is not in the bundle; it holds {known}")
    test = Path(test) if test else find_competition_file(manifest["test_file"], slug, input_dir)
    sample = Path(sample_submission) if sample_submission else None
    sample = sample or find_competition_file(manifest["sample_submission_file"], slug, input_dir)
    info(f"test file {test}, sample submission {sample}")
    overrides = [f"competition.test={test}", f"competition.sample_submission={sample}"]
    work = working / BUNDLE_WORK_DIR
    for member in blend["members"] if blend else [submit]:
        _predict_experiment(bundle, member, overrides, work / member)
    cfg = _working_config(bundle, submit, overrides, work)
    comp = cfg.competition
    with cached_competition(comp, cfg.run_dir, with_test=blend is not None, texts=False) as data:
        if blend is not None:  # as `kagglemlc ensemble` blends the members' test predictions
            members = [_working_config(bundle, m, overrides, work) for m in blend["members"]]
            test_ids, method, hint = data.ids("test"), blend["method"], "the member's prediction failed"
            tests = [to_blend_space(submitted_test(m, test_ids, data.label_names, hint), method) for m in members]
            blended = blend32(np.asarray(blend["weights"], dtype=np.float64), tests, method)
            write_probabilities(cfg.run_dir / TEST_FILE, test_ids, blended, data.label_names)
            shutil.copy2(bundle / submit / THRESHOLDS_FILE, cfg.run_dir / THRESHOLDS_FILE)
        frame, values = submission_frame(cfg, data)
        validate_submission(frame, data.submission, comp.id_column, values, str(sample))
    path = _write_submission(working / KAGGLE_SUBMISSION, frame, values, comp.id_column)
    info(f"{len(frame):,} rows × {len(frame.columns) - 1} columns of {values}, checked against {sample} → {path}")
    return path
