"""`train.distill` and `train.pseudo_labels`: a student fold learns from a teacher only through files made by the
teacher's models that never saw that fold's validation rows.

The leakage tests: (1) every student fold records which teacher models produced the targets it read, and none of
those models trained on the fold's validation rows; (2) a planted teacher whose every saved prediction is the true
label (its OOF included) does not lift the student's CV above the same student without a teacher by more than noise.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import TrainConfig, load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.data.predictions import write_probabilities
from kagglemlc.data.teachers import confidence, soften
from kagglemlc.models.losses import build_loss
from kagglemlc.stages.predict import predict
from kagglemlc.stages.train import train
from kagglemlc.stages.tune_thresholds import tune_thresholds
from tiny_models import make_encoder

TRAIN = {"max_steps": 8, "eval_every": 4, "batch_size": 16, "precision": "no", "lr": 1e-3}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A competition and a trained teacher (two seeds per fold) with its training-row predictions."""
    root = tmp_path_factory.mktemp("distill")
    model = make_encoder(root / "bert", "bert")
    config = make_competition(root / "comp", config={"model": {"name": str(model)}, "train": TRAIN})
    cfg = load_config(config, [f"output_dir={root / 'teacher'}", "train.seeds=[1, 2]"])
    train(cfg)
    predict(cfg, train_rows=True)
    return config, cfg


def _student(config, name: str, *overrides: str):
    return load_config(config, [f"output_dir={config.parent / name}", *overrides])


def _folds(run_dir) -> pd.Series:
    return pd.read_parquet(run_dir / "folds.parquet").set_index("id")["fold"]


def test_train_rows_are_each_folds_own_training_rows(teacher):
    _, cfg = teacher
    folds = _folds(cfg.run_dir)
    for k in range(3):
        made = pd.read_parquet(cfg.run_dir / f"fold{k}" / "train_rows.parquet")
        assert sorted(made["id"]) == sorted(folds.index[folds != k])
        seeds = [pd.read_parquet(cfg.run_dir / f"fold{k}" / f"seed{s}" / "train_rows.parquet") for s in (1, 2)]
        np.testing.assert_allclose(made[LABELS], (seeds[0][LABELS] + seeds[1][LABELS]) / 2, atol=1e-6)


def test_no_student_fold_reads_a_teacher_model_that_saw_its_validation_rows(teacher):
    config, cfg = teacher
    src = f'{{"source": "{cfg.run_dir}", "weight": 0.5}}'
    student = _student(config, "student", f'train.distill={{"teacher": "{cfg.run_dir}"}}', f"train.pseudo_labels={src}")
    train(student)
    teacher_folds, student_folds = _folds(cfg.run_dir), _folds(student.run_dir)
    for k in range(3):
        validation = set(student_folds.index[student_folds == k])
        read = json.loads((student.run_dir / f"fold{k}" / "metrics.json").read_text())["taught_by"]
        models = read["distill"]["models"] + read["pseudo_labels"]["models"]
        assert sorted(set(models)) == [f"fold{k}/seed1", f"fold{k}/seed2"]
        for model in models:  # the fold a teacher model was trained without, from its own metrics.json
            trained_without = json.loads((cfg.run_dir / model / "metrics.json").read_text())["fold"]
            seen = set(teacher_folds.index[teacher_folds != trained_without])
            assert not seen & validation, f"student fold {k} read {model}, which trained on its validation rows"
        assert read["pseudo_labels"]["rows"] == 30  # every test row (min_confidence 0)


def test_pseudo_labels_from_a_file_of_unlabelled_texts(teacher, tmp_path):
    """`rows: <file>`: source fold k's own models (both seeds) label the file's texts for student fold k."""
    config, cfg = teacher
    unlabelled = toy_frame(25, seed=3, id_prefix="u")[["id", "text"]]
    unlabelled.to_csv(tmp_path / "unlabelled.csv", index=False)
    rows = f'{{"source": "{cfg.run_dir}", "rows": "{tmp_path / "unlabelled.csv"}", "weight": 0.5}}'
    student = _student(config, "from-file", f"train.pseudo_labels={rows}")
    train(student, fold=1)
    metrics = json.loads((student.run_dir / "fold1" / "metrics.json").read_text())
    read = metrics["taught_by"]["pseudo_labels"]
    assert read["models"] == ["fold1/seed1", "fold1/seed2"] and read["rows"] == read["of"] == 25
    assert metrics["train_rows"] == 80 + 25


def test_a_planted_perfect_teacher_does_not_lift_the_students_cv(teacher):
    config, cfg = teacher
    data = load_competition(load_config(config).competition)
    planted = config.parent / "planted"
    folds = _folds(cfg.run_dir)
    planted.mkdir()
    (planted / "folds.parquet").write_bytes((cfg.run_dir / "folds.parquet").read_bytes())
    truth = pd.DataFrame(data.y.astype(np.float32), columns=LABELS, index=data.train_ids.astype(str))
    write_probabilities(planted / "oof.parquet", truth.index.to_numpy(), truth.to_numpy(), LABELS)  # all rows
    for k in range(3):
        rows = truth.loc[folds.index[folds != k]]
        (planted / f"fold{k}").mkdir()
        write_probabilities(planted / f"fold{k}" / "train_rows.parquet", rows.index.to_numpy(), rows.to_numpy(), LABELS)
    cvs = {}
    taught = f'train.distill={{"teacher": "{planted}", "weight": 0.5}}'
    for name, overrides in {"plain": [], "taught": [taught]}.items():
        student = _student(config, name, *overrides)
        train(student)
        cvs[name] = _cv(student)
    assert cvs["taught"] <= cvs["plain"] + 0.05, cvs


def _cv(cfg) -> float:
    tune_thresholds(cfg)
    return json.loads((cfg.run_dir / "thresholds.json").read_text())["cv_tuned"]


def test_a_teacher_on_other_folds_is_one_line(teacher, cli, tmp_path):
    config, cfg = teacher
    other = tmp_path / "other"
    other.mkdir()
    folds = pd.read_parquet(cfg.run_dir / "folds.parquet")
    folds.assign(fold=(folds["fold"] + 1) % 3).to_parquet(other / "folds.parquet")
    code, _, err = cli("train", config, f"output_dir={tmp_path / 's'}", f'train.distill={{"teacher": "{other}"}}')
    error = err.strip().splitlines()[-1]  # after the student's own folds were made, as `prepare` makes them
    assert code == 2 and "train.distill.teacher" in error and "other folds" in error
    assert not (tmp_path / "s" / "fold0").exists()  # nothing trained


def test_a_teacher_without_train_rows_names_the_command(teacher, cli, tmp_path):
    config, cfg = teacher
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "folds.parquet").write_bytes((cfg.run_dir / "folds.parquet").read_bytes())
    code, _, err = cli("train", config, f"output_dir={tmp_path / 's'}", f'train.distill={{"teacher": "{bare}"}}')
    assert code == 2 and "--train-rows" in err


def test_softening_and_confidence():
    p = np.array([[0.9, 0.2], [0.5, 0.99]])
    np.testing.assert_allclose(soften(p, "multilabel", 1.0), p)
    hot = soften(p, "multilabel", 2.0)
    assert (np.abs(hot - 0.5) < np.abs(p - 0.5) + 1e-12).all()  # closer to 0.5, same side
    np.testing.assert_allclose(hot[0, 0], 1 / (1 + np.sqrt(1 / 9)))  # sigmoid(logit(0.9) / 2)
    classes = soften(np.array([[0.7, 0.2, 0.1]]), "multiclass", 2.0)
    np.testing.assert_allclose(classes, np.sqrt([[0.7, 0.2, 0.1]]) / np.sqrt([0.7, 0.2, 0.1]).sum())
    np.testing.assert_allclose(confidence(p, "multilabel"), [0.8, 0.5])
    np.testing.assert_allclose(confidence(np.array([[0.7, 0.2, 0.1]]), "multiclass"), [0.7])


@pytest.mark.parametrize(("loss", "task"), [("bce", "multilabel"), ("focal", "multilabel"), ("ce", "multiclass")])
def test_row_weights_scale_each_rows_loss(loss, task):
    cfg = TrainConfig(loss=loss, class_weights="none")
    y = np.eye(3, dtype=np.int8)[[0, 1, 2, 0]]
    fn = build_loss(cfg, task, y, soft=True)
    logits, targets = torch.randn(4, 3), torch.tensor(y, dtype=torch.float32)
    torch.testing.assert_close(fn(logits, targets, torch.ones(4)), fn(logits, targets))  # weight 1 = unweighted
    rows = [fn(logits[i : i + 1], targets[i : i + 1]) for i in range(4)]
    weights = torch.tensor([1.0, 0.5, 2.0, 0.0])
    torch.testing.assert_close(fn(logits, targets, weights), sum(w * r for w, r in zip(weights, rows)) / 4)


def test_distill_and_pseudo_labels_refuse_generative_and_full_fit(teacher):
    config, cfg = teacher
    with pytest.raises(KaggleMLCError, match="generative"):
        load_config(config, [f'train.distill={{"teacher": "{cfg.run_dir}"}}', "model.kind=generative"])
    with pytest.raises(KaggleMLCError, match="train.full_fit"):
        load_config(config, [f'train.pseudo_labels={{"source": "{cfg.run_dir}"}}', "train.full_fit=true"])
