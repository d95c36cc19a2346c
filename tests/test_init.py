"""`kagglemlc init`: a kagglemlc.yaml guessed from the competition files, for three folder shapes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, toy_frame
from kagglemlc.config import load_config
from kagglemlc.data.competition import load_competition


def _write(folder, train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)


def _wide(folder):
    train, test = toy_frame(90), toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    _write(folder, train, test, pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}}))


def _list(folder):
    train = toy_frame(90)
    tags = [",".join(n for n in LABELS if row[n]) for _, row in train.iterrows()]
    train = train[["id", "text"]].assign(emotions=tags)
    test = toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    _write(folder, train, test, pd.DataFrame({"id": test["id"], "emotions": ""}))


def _multiclass(folder):
    rng = np.random.default_rng(3)
    classes = rng.choice(["sports", "politics", "tech"], 90)
    train = pd.DataFrame({"text_id": [f"a{i}" for i in range(90)], "body": [f"news about {c} today" for c in classes],
                          "topic": classes, "source": "wire"})  # fmt: skip
    test = pd.DataFrame({"text_id": [f"b{i}" for i in range(20)], "body": ["news today"] * 20, "source": "wire"})
    _write(folder, train, test, pd.DataFrame({"text_id": test["text_id"], "topic": "tech"}))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (_wide, {"task": "multilabel", "label_format": "wide", "text_column": "text"}),
        (_list, {"task": "multilabel", "label_format": "list", "label_column": "emotions", "label_separator": ","}),
        (_multiclass, {"task": "multiclass", "label_format": "list", "label_column": "topic", "id_column": "text_id",
                       "text_column": "body"}),
    ],
)  # fmt: skip
def test_init_writes_a_config_that_the_chain_accepts(tmp_path, cli, shape, expected):
    folder = tmp_path / "comp"
    shape(folder)
    code, _, err = cli("init", folder)
    assert code == 0, err
    written = (folder / "kagglemlc.yaml").read_text()
    assert "# guessed:" in written
    cfg = load_config(folder / "kagglemlc.yaml")
    for key, value in expected.items():
        assert getattr(cfg.competition, key) == value, key
    data = load_competition(cfg.competition)  # train, test and the sample submission agree
    assert len(data.train_ids) == 90 and data.test_ids is not None
    code, _, err = cli("prepare", folder / "kagglemlc.yaml")  # the chain's first stage takes it unchanged
    assert code == 0, err
    code, _, err = cli("init", folder)  # never overwritten
    assert code == 2 and "exists; init never overwrites it" in err
    assert (folder / "kagglemlc.yaml").read_text() == written


def test_init_without_a_training_file_is_one_line(tmp_path, cli):
    code, _, err = cli("init", tmp_path)
    assert code == 2 and "no train.csv" in err and len(err.strip().splitlines()) == 1
