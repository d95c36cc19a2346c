"""Losses against hand computations, schedules, and the batching that training relies on."""

import math

import numpy as np
import torch

from kagglemlc.config import TrainConfig
from kagglemlc.engine.batching import Encodings, collate, length_grouped_batches, sorted_batches
from kagglemlc.engine.optim import Schedule
from kagglemlc.models.losses import build_loss, class_weights

Y = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], dtype=np.int8)  # label 0: 2 of 4 positive, label 1: 1 of 4


def _bce_by_hand(logits, targets, pos_weight):
    p = 1 / (1 + np.exp(-logits))
    return np.mean(-(pos_weight * targets * np.log(p) + (1 - targets) * np.log(1 - p)))


def test_class_weights_are_negatives_over_positives():
    np.testing.assert_allclose(class_weights(Y, "multilabel", "balanced").numpy(), [1.0, 3.0])
    np.testing.assert_allclose(class_weights(Y, "multilabel", "sqrt").numpy(), [1.0, math.sqrt(3)], rtol=1e-6)
    assert class_weights(Y, "multilabel", "none") is None


def test_weighted_bce_matches_the_hand_computation():
    logits = np.array([[0.3, -1.2], [2.0, 0.1], [-0.5, 0.7], [0.0, -2.0]])
    targets = Y.astype(np.float64)
    for mode, weights in [("none", [1.0, 1.0]), ("balanced", [1.0, 3.0]), ("sqrt", [1.0, math.sqrt(3)])]:
        loss = build_loss(TrainConfig(loss="bce", class_weights=mode), "multilabel", Y)
        got = loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)).item()
        assert math.isclose(got, _bce_by_hand(logits, targets, np.array(weights)), rel_tol=1e-5), mode
    # the weights change the loss: up-weighting the rare label's positives raises it here
    plain = build_loss(TrainConfig(class_weights="none"), "multilabel", Y)
    heavy = build_loss(TrainConfig(class_weights="balanced"), "multilabel", Y)
    x, t = torch.tensor(logits, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)
    assert heavy(x, t) > plain(x, t)


def test_focal_and_asl_reduce_to_bce_without_focusing():
    x, t = torch.randn(16, 3), (torch.rand(16, 3) > 0.6).float()
    bce = build_loss(TrainConfig(loss="bce"), "multilabel", t.numpy())(x, t)
    focal = build_loss(TrainConfig(loss="focal", focal_gamma=0.0), "multilabel", t.numpy())(x, t)
    asl = build_loss(TrainConfig(loss="asl", asl_gamma_neg=0, asl_gamma_pos=0, asl_clip=0), "multilabel", t.numpy())(
        x, t
    )
    assert torch.allclose(bce, focal, atol=1e-6) and torch.allclose(bce, asl, atol=1e-5)
    # focusing lowers the loss of easy examples
    assert build_loss(TrainConfig(loss="focal"), "multilabel", t.numpy())(x, t) < bce


def test_multiclass_ce_with_weights_and_smoothing():
    y = np.eye(3, dtype=np.int8)[[0, 0, 0, 1, 2, 2]]
    weights = class_weights(y, "multiclass", "balanced").numpy()
    np.testing.assert_allclose(weights, [6 / 9, 2.0, 1.0], rtol=1e-6)
    x, t = torch.randn(6, 3), torch.tensor(y, dtype=torch.float32)
    cfg = TrainConfig(loss="ce", class_weights="balanced", label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(x, t.argmax(1), weight=torch.tensor(weights), label_smoothing=0.1)
    assert torch.allclose(build_loss(cfg, "multiclass", y)(x, t), expected)


def test_schedules_warm_up_then_decay():
    linear, cosine, constant = (Schedule(kind, 10, 110) for kind in ("linear", "cosine", "constant"))
    assert linear(0) < linear(5) < linear(9) <= 1.0
    assert linear(10) == 1.0 and math.isclose(linear(60), 0.5) and linear(110) == 0.0
    assert math.isclose(cosine(60), 0.5, abs_tol=1e-9) and cosine(110) < 1e-9
    assert constant(100) == 1.0
    plateau = Schedule("reduce_on_plateau", 0, 100)
    plateau.plateau_scale *= 0.5
    assert plateau(50) == 0.5


def test_length_grouped_batches_cover_every_row_once_and_repeat_per_seed():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    batches = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    again = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert all((a == b).all() for a, b in zip(batches, again))
    assert not all((a == b).all() for a, b in zip(batches, length_grouped_batches(lengths, 16, seed=1, epoch=1)))
    # grouping by length cuts padding compared with random batches
    padded = sum(len(b) * lengths[b].max() for b in batches)
    plain = sum(len(b) * lengths[b].max() for b in length_grouped_batches(lengths, 16, 1, 0, group_by_length=False))
    assert padded < 0.8 * plain
    assert sorted(np.concatenate(sorted_batches(lengths, 64)).tolist()) == list(range(1000))


def test_collate_pads_on_the_tokenizers_side():
    enc = Encodings([[5, 6, 7], [8]], np.array([3, 1]), pad_id=0, padding_side="right")
    right = collate(enc, np.array([0, 1]))
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    enc.padding_side = "left"
    left = collate(enc, np.array([0, 1]), pad_to_multiple_of=4)
    assert left["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]


def test_head_lr_applies_to_the_new_head_only(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from kagglemlc.engine.optim import build_optimizer
    from tiny_models import make_encoder

    model = AutoModelForSequenceClassification.from_pretrained(make_encoder(tmp_path, "bert"), num_labels=3)
    groups = build_optimizer(TrainConfig(lr=1e-4, head_lr=1e-2, weight_decay=0.1), model).param_groups
    head = {id(p) for p in model.classifier.parameters()}
    for group in groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1  # a group is all head or all body
        assert group["lr"] == (1e-2 if is_head.pop() else 1e-4)
        assert group["weight_decay"] == (0.1 if group["params"][0].ndim >= 2 else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
