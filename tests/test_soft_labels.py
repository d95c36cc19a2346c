"""`competition.soft_labels`: targets in [0, 1] learned as they are, scored rounded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import TrainConfig, load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.models.build import build_tokenizer
from kagglemlc.models.losses import build_loss
from kagglemlc.tasks import make_task
from tiny_models import make_encoder


def _soft_frame(n: int = 120):
    """The toy frame with its 0/1 labels softened: a planted keyword gives 0.9 (or 0.6), none 0.1 (or 0.3)."""
    frame = toy_frame(n)
    rng = np.random.default_rng(5)
    for name in LABELS:
        on = frame[name].to_numpy() == 1
        frame[name] = np.where(on, rng.choice([0.9, 0.6], n), rng.choice([0.1, 0.3], n))
    return frame


def test_soft_targets_are_read_as_they_are_and_rounded_for_scoring(tmp_path):
    frame = _soft_frame()
    cfg = load_config(make_competition(tmp_path, train=frame, config={"competition": {"soft_labels": True}}))
    data = load_competition(cfg.competition)
    np.testing.assert_allclose(data.soft, frame[LABELS].to_numpy(), atol=1e-6)
    np.testing.assert_array_equal(data.y, (frame[LABELS].to_numpy() >= 0.5).astype(np.int8))
    assert data.targets is data.soft
    task = make_task(cfg, build_tokenizer(cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"name": str(make_encoder(tmp_path / "bert", "bert"))})})), data)  # fmt: skip
    np.testing.assert_allclose(task.targets.numpy(), data.soft)  # what the loss learns from


def test_a_value_outside_0_1_is_one_line_naming_the_column_and_line(tmp_path, cli):
    frame = _soft_frame()
    frame.loc[4, "anger"] = 1.5
    config = make_competition(tmp_path, train=frame, config={"competition": {"soft_labels": True}})
    code, _, err = cli("prepare", config)
    assert code == 2 and "column 'anger' must hold probabilities in [0, 1]" in err and "line 6" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("competition.label_format=list", "soft targets come from wide label columns"),
        ("model.kind=generative", "generative models answer with label names"),
    ],
)
def test_soft_labels_refuse_what_cannot_read_them(tmp_path, override, message):
    config = make_competition(tmp_path, config={"competition": {"soft_labels": True}})
    with pytest.raises(KaggleMLCError, match=message):
        load_config(config, [override])


def test_cross_entropy_takes_soft_rows_as_class_probabilities():
    plain = TrainConfig(loss="ce", class_weights="none", label_smoothing=0.0)
    y = np.eye(3, dtype=np.int8)[[0, 1, 2, 0]]
    logits = torch.randn(4, 3)
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.5, 0.0]])
    expected = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(build_loss(plain, "multiclass", y, soft=True)(logits, soft), expected)
    hard = torch.eye(3)[[0, 1, 2, 0]]  # one-hot rows: class indices, exactly as before
    loss = build_loss(plain, "multiclass", y)
    torch.testing.assert_close(loss(logits, hard), F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])))


def test_a_soft_label_competition_trains_and_scores_on_the_rounded_labels(tmp_path, cli):
    model = make_encoder(tmp_path / "bert", "bert")
    train = {"max_steps": 6, "eval_every": 3, "batch_size": 16, "precision": "no", "lr": 1e-3}
    config = make_competition(
        tmp_path / "comp",
        train=_soft_frame(),
        config={"competition": {"soft_labels": True}, "model": {"name": str(model)}, "train": train},
    )
    code, _, err = cli("train", config, "--fold", "0")
    assert code == 0, err
    metrics = json.loads((tmp_path / "comp" / "run" / "fold0" / "metrics.json").read_text())
    assert 0.0 <= metrics["best_metric"] <= 1.0 and len(metrics["history"]) == 2
