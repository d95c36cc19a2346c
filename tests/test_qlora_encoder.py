"""adapter.method qlora on an encoder with its own classification head: the head (and BERT's pooler) stay in full
precision — a 4-bit head failed in the forward pass — and the fold trains, saves and reloads."""

from __future__ import annotations

import json

import pandas as pd

from conftest import make_competition
from tiny_models import make_encoder


def test_qlora_trains_an_encoder_with_its_own_head(tmp_path, cli):
    model = make_encoder(tmp_path / "bert", "bert")
    train = {"max_steps": 2, "batch_size": 16, "precision": "no", "lr": 1e-3}
    config = make_competition(
        tmp_path / "comp", config={"model": {"name": str(model)}, "adapter": {"method": "qlora"}, "train": train}
    )
    code, _, err = cli("train", config, "--fold", "0")
    assert code == 0, err
    fold = tmp_path / "comp" / "run" / "fold0"
    assert json.loads((fold / "metrics.json").read_text())["trainable_params"] > 0
    test = pd.read_parquet(fold / "test.parquet")
    assert cli("predict", config, "--fold", "0")[0] == 0
    pd.testing.assert_frame_equal(test, pd.read_parquet(fold / "test.parquet"), atol=1e-4)
