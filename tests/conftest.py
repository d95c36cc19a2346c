"""Shared fixtures: a tiny, learnable multilabel competition written to a temp folder, and a CLI runner.

`make_competition(tmp_path)` writes train/test/sample_submission CSVs and a config YAML and returns
the YAML's path; keyword arguments change the files or the config so that each test states only
what it is about.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kagglemlc.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABELS = ["joy", "anger", "fear"]
WORDS = {"joy": "happy", "anger": "furious", "fear": "scared"}
FILLER = ["the", "a", "day", "it", "was", "and", "then", "we", "saw", "some", "news", "about", "town"]


def toy_frame(n: int, seed: int = 0, id_prefix: str = "r") -> pd.DataFrame:
    """n rows whose labels are keywords planted in the text (learnable), ids like r0001."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(LABELS))) < [0.4, 0.3, 0.25]).astype(int)
    texts = []
    for row in y:
        words = list(rng.choice(FILLER, size=rng.integers(3, 12)))
        for name, on in zip(LABELS, row):
            if on:
                words.insert(int(rng.integers(0, len(words) + 1)), WORDS[name])
        texts.append(" ".join(words))
    frame = pd.DataFrame({"id": [f"{id_prefix}{i:04d}" for i in range(n)], "text": texts})
    for j, name in enumerate(LABELS):
        frame[name] = y[:, j]
    return frame


def make_competition(folder: Path, n_train: int = 120, n_test: int = 30, config: dict | None = None, **frames) -> Path:
    """Writes a competition + config under `folder`; returns the config path.

    `frames` may replace `train`, `test` or `sample_submission` DataFrames; `config` is deep-merged
    into the default config.
    """
    folder.mkdir(parents=True, exist_ok=True)
    train = frames.get("train", toy_frame(n_train, seed=0))
    test = frames.get("test", toy_frame(n_test, seed=1, id_prefix="t")[["id", "text"]])
    sub = frames.get("sample_submission")
    if sub is None:
        sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sub.to_csv(folder / "sample_submission.csv", index=False)
    cfg = {
        "competition": {
            "train": "train.csv",
            "test": "test.csv",
            "sample_submission": "sample_submission.csv",
            "task": "multilabel",
            "metric": "f1_macro",
        },
        "cv": {"folds": 3, "seed": 0},
        "output_dir": "run",
        "submission": {"dir": "submissions"},
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "comp")


@pytest.fixture
def cli(monkeypatch, capsys):
    """Runs `kagglemlc ARGS` through the real entry point; returns (exit_code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["kagglemlc", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run
