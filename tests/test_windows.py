"""Long texts at inference: `predict.max_length` (longer than training) and sliding windows (`predict.stride`)
whose probabilities are pooled per text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FILLER, make_competition, toy_frame
from kagglemlc.engine.batching import tokenize_windows
from tiny_models import make_encoder, make_tokenizer


def test_windows_cover_every_token_and_keep_the_special_ones(tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    long = " ".join(FILLER * 3)  # 39 words
    enc, owner = tokenize_windows(tok, ["the day", long], max_length=12, stride=4)
    full = tok(long)["input_ids"][1:-1]
    mine = [w for w, o in zip(enc.input_ids, owner, strict=True) if o == 1]
    assert enc.input_ids[0] == tok("the day")["input_ids"] and list(owner).count(0) == 1  # short: one window
    assert all(len(w) <= 12 and w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id for w in mine)
    covered = set()
    for k, w in enumerate(mine):  # window k starts at 4k (the last one ends at the text's end)
        first = 4 * k if k < len(mine) - 1 else len(full) - 10
        assert w[1:-1] == full[first : first + 10]
        covered |= set(range(first, first + 10))
    assert covered == set(range(len(full)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    model = make_encoder(root / "bert", "bert")
    test = toy_frame(12, seed=4, id_prefix="t")[["id", "text"]]
    test["text"] = [t + " " + " ".join(FILLER * 2) for t in test["text"]]  # longer than training's 16 tokens
    train = {"max_steps": 4, "batch_size": 16, "precision": "no", "lr": 1e-3}
    config = make_competition(
        root / "comp", test=test, config={"model": {"name": str(model), "max_length": 16}, "train": train}
    )
    return config


def test_predict_with_windows_pools_each_texts_windows(trained, cli):
    assert cli("train", trained, "--fold", "0")[0] == 0
    fold = trained.parent / "run" / "fold0"
    plain = pd.read_parquet(fold / "test.parquet").set_index("id")
    code, _, err = cli("predict", trained, "--fold", "0", "predict.stride=4", "predict.pooling=max")
    assert code == 0, err
    pooled = pd.read_parquet(fold / "test.parquet").set_index("id")
    assert not np.allclose(pooled.to_numpy(), plain.to_numpy())  # every text was longer than one window
    # by hand: the saved model on every window, the max per text
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(fold / "model")
    model = AutoModelForSequenceClassification.from_pretrained(fold / "model").eval()
    texts = pd.read_csv(trained.parent / "test.csv")["text"].tolist()
    enc, owner = tokenize_windows(tok, texts, max_length=16, stride=4)
    with torch.no_grad():
        probs = np.stack([torch.sigmoid(model(input_ids=torch.tensor([w])).logits[0]).numpy() for w in enc.input_ids])
    expected = np.stack([probs[owner == i].max(axis=0) for i in range(len(texts))])
    np.testing.assert_allclose(pooled.to_numpy(), expected, atol=1e-5)
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["test_sha256"].endswith("+None/4/max")  # the predictions say how they were read


def test_a_longer_predict_max_length_reads_more(trained, cli):
    fold = trained.parent / "run" / "fold0"
    assert cli("predict", trained, "--fold", "0")[0] == 0
    short = pd.read_parquet(fold / "test.parquet")
    assert cli("predict", trained, "--fold", "0", "predict.max_length=64")[0] == 0
    longer = pd.read_parquet(fold / "test.parquet")
    assert not np.allclose(short.iloc[:, 1:].to_numpy(), longer.iloc[:, 1:].to_numpy())
