"""Defaults that score: each rule picks the right value for the right model kind / checkpoint type, and
anything the config sets wins. Tiny models; the measurements behind the rules are in bench/README.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.models.build import build_tokenizer, is_sentence_embedding
from kagglemlc.models.defaults import resolve_defaults
from tiny_decoders import make_decoder
from tiny_models import make_encoder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    bert = make_encoder(root / "bert", "bert")
    # the same weights, saved the way sentence-transformers saves an embedding model
    embedding = root / "embedding"
    shutil.copytree(bert, embedding)
    (embedding / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "Transformer"}]))
    return {"bert": bert, "embedding": embedding, "llama": make_decoder(root / "llama", "llama")}


def _config(tmp_path: Path, model: Path, *overrides: str, **sections):
    path = make_competition(tmp_path, n_train=40, n_test=5, config={"model": {"name": str(model)}, **sections})
    return load_config(path, list(overrides))


def _chosen(cfg, rows: int | None = None) -> dict[str, object]:
    """The choices made with no training texts (or `rows` short ones: then epochs and max_length are chosen too)."""
    texts = None if rows is None else ["happy day"] * rows
    return {c.key: c.value for c in resolve_defaults(cfg, texts)}


def test_sentence_embedding_checkpoints_are_told_apart(tmp_path, models):
    assert is_sentence_embedding(_config(tmp_path, models["embedding"]))
    assert not is_sentence_embedding(_config(tmp_path, models["bert"]))
    assert is_sentence_embedding(_config(tmp_path, Path("minilm")))  # the bundled MiniLM


def test_encoder_full_fine_tune(tmp_path, models):
    cfg = _config(tmp_path, models["bert"])
    assert _chosen(cfg) == {
        "train.lr": 5e-5,
        "train.warmup_ratio": 0.06,
        "train.class_weights": "sqrt",  # multilabel scored by macro-F1
        "train.batch_size": 32,
        "model.pooling": None,  # an ordinary checkpoint: its own head
        "train.head_lr": 5e-5,  # an ordinary checkpoint: the head at the body's rate
    }
    assert cfg.train.lr == 5e-5 and cfg.model.max_length == cfg.train.epochs == "auto"  # they wait for the texts


@pytest.mark.parametrize(
    ("rows", "folds", "epochs"),
    [(6000, 3, 6), (48_836, 5, 3), (100, 3, 10), (20_000, 5, 3), (9000, 3, 4)],
)
def test_encoder_epochs_give_enough_optimiser_steps(tmp_path, models, rows, folds, epochs):
    # 6,000 rows in 3 folds at batch 32: 125 steps an epoch, 6 epochs for 750 steps (the grid's sample)
    cfg = _config(tmp_path, models["bert"], f"cv.folds={folds}", "model.max_length=32")
    assert _chosen(cfg, rows)["train.epochs"] == epochs


def test_sentence_embedding_head_learns_faster(tmp_path, models):
    cfg = _config(tmp_path, models["embedding"])
    assert _chosen(cfg)["train.head_lr"] == 3e-3


def _embedding_with_pooling(root: Path, source: Path, modes: dict | None, folder: str = "1_Pooling") -> Path:
    """An embedding checkpoint whose Pooling module (in `folder`, named by modules.json) has these modes."""
    shutil.copytree(source, root)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    if modes is not None:
        modules.append({"idx": 1, "name": "1", "path": folder, "type": "sentence_transformers.models.Pooling"})
        (root / folder).mkdir()
        (root / folder / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    (root / "modules.json").write_text(json.dumps(modules))
    return root


@pytest.mark.parametrize(
    ("modes", "folder", "pooling"),
    [
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "1_Pooling", "mean"),
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "1_Pooling", "cls"),  # bge
        ({"pooling_mode_max_tokens": True}, "2_Pool", "max"),  # the folder modules.json names
        ({"pooling_mode_lasttoken": True}, "1_Pooling", "mean"),  # no equal here: sentence-transformers' default
        (None, "1_Pooling", "mean"),  # no Pooling module saved
    ],
)
def test_embedding_checkpoints_are_pooled_as_they_were_trained(tmp_path, models, modes, folder, pooling):
    model = _embedding_with_pooling(tmp_path / "st", models["bert"], modes, folder)
    chosen = {c.key: c for c in resolve_defaults(_config(tmp_path / "comp", model))}
    assert chosen["model.pooling"].value == pooling and "sentence-embedding" in chosen["model.pooling"].rule


def test_pooling_auto_is_null_where_no_pooling_head_goes(tmp_path, models):
    assert _chosen(_config(tmp_path, models["bert"]))["model.pooling"] is None  # an ordinary checkpoint
    cfg = _config(tmp_path, models["llama"], "model.kind=decoder", "adapter.method=lora")
    assert "model.pooling" not in _chosen(cfg) and cfg.model.pooling is None  # not an encoder: nothing said
    assert _config(tmp_path, Path("minilm")).model.pooling == "auto"
    with pytest.raises(KaggleMLCError, match="model.head_dropouts: .* set model.pooling"):
        resolve_defaults(_config(tmp_path, models["bert"], "model.head_dropouts=3"))
    cfg = _config(tmp_path, models["embedding"], "model.head_dropouts=3")
    assert _chosen(cfg)["model.pooling"] == "mean" and cfg.model.head_dropouts == 3


@pytest.mark.parametrize(
    ("task", "metric", "loss", "weights"),
    [
        ("multilabel", "f1_macro", "bce", "sqrt"),
        ("multilabel", "roc_auc", "bce", "sqrt"),
        ("multilabel", "f1_micro", "bce", "none"),
        ("multiclass", "f1_macro", "ce", "none"),
        ("binary", "f1", "bce", "none"),
    ],
)
def test_class_weights_follow_task_and_metric(tmp_path, models, task, metric, loss, weights):
    overrides = [f"competition.task={task}", f"competition.metric={metric}", f"train.loss={loss}"]
    cfg = _config(tmp_path, models["bert"], *overrides)
    assert _chosen(cfg)["train.class_weights"] == weights


@pytest.mark.parametrize(
    ("kind", "method", "lr", "epochs", "batch", "warmup"),
    [
        ("decoder", "lora", 2e-4, 2, 8, 0.03),
        ("decoder", "qlora", 2e-4, 2, 8, 0.03),
        ("decoder", "ia3", 3e-3, 2, 8, 0.03),
        ("decoder", "none", 1e-5, 2, 8, 0.03),
        ("decoder", "head", 1e-3, 3, 32, 0.06),
        ("generative", "lora", 2e-4, 2, 8, 0.03),
    ],
)
def test_llm_defaults_by_kind_and_adapter(tmp_path, models, kind, method, lr, epochs, batch, warmup):
    cfg = _config(tmp_path, models["llama"], f"model.kind={kind}", f"adapter.method={method}")
    chosen = _chosen(cfg, rows=16_000)  # a frozen-base head at batch 32 in 3 folds: 334 steps an epoch
    assert (chosen["train.lr"], chosen["train.epochs"], chosen["train.batch_size"]) == (lr, epochs, batch)
    assert chosen["train.warmup_ratio"] == warmup and chosen["train.head_lr"] == lr
    if kind == "generative":  # the loss is on answer tokens: no per-label weights
        assert chosen["train.class_weights"] == "none"


def test_what_the_config_sets_is_kept(tmp_path, models):
    cfg = _config(
        tmp_path,
        models["embedding"],
        "train.lr=1e-4",
        "train.head_lr=null",
        "train.epochs=7",
        "train.class_weights=balanced",
        "train.batch_size=12",
        "train.warmup_ratio=0.2",
        "model.max_length=40",
        "model.pooling=null",
    )
    assert resolve_defaults(cfg, ["some text"] * 10) == []
    t = cfg.train
    assert (t.lr, t.head_lr, t.epochs, t.class_weights) == (1e-4, None, 7, "balanced")
    assert (t.batch_size, t.warmup_ratio) == (12, 0.2)
    assert cfg.model.max_length == 40 and cfg.model.pooling is None


def test_max_length_is_the_99th_percentile_rounded_up_to_8_and_capped(tmp_path, models):
    cfg = _config(tmp_path, models["bert"])
    tokenizer = build_tokenizer(cfg)
    # 99 texts of 3 words and one of 20: with [CLS]/[SEP], 99% of the lengths are <= 5.15 tokens → 8
    texts = ["happy day it"] * 99 + [" ".join(["day"] * 20)]
    chosen = {c.key: c for c in resolve_defaults(cfg, texts, tokenizer)}
    assert cfg.model.max_length == 8 and "99th percentile" in chosen["model.max_length"].rule
    cfg = _config(tmp_path, models["bert"])
    resolve_defaults(cfg, [" ".join(["day"] * 40)] * 10, tokenizer)
    assert cfg.model.max_length == 48  # 42 tokens → 48
    cfg = _config(tmp_path, models["bert"])
    resolve_defaults(cfg, [" ".join(["day"] * 400)] * 10, tokenizer)
    assert cfg.model.max_length == tokenizer.model_max_length == 128  # capped by the model


def test_train_prints_each_default_once_and_records_it(tmp_path, cli, models):
    path = make_competition(
        tmp_path,
        n_train=60,
        config={"model": {"name": str(models["embedding"])}, "train": {"max_steps": 2, "precision": "no"}},
    )
    code, out, err = cli("train", path)  # every fold: the choices are printed once, not per fold (on stdout)
    assert code == 0, err
    for key in ("train.lr", "train.head_lr", "train.epochs", "train.class_weights", "model.max_length"):
        assert out.count(f"default {key} = ") == 1, out
    assert "default train.max_steps" not in out  # set by the config
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["train"]["head_lr"] == 3e-3 and resolved["train"]["class_weights"] == "sqrt"
    assert isinstance(resolved["model"]["max_length"], int) and resolved["model"]["max_length"] % 8 == 0
    assert resolved["model"]["pooling"] == "mean" and out.count("default model.pooling = mean") == 1
    head = json.loads((tmp_path / "run" / "fold0" / "model" / "config.json").read_text())
    assert "kagglemlc_head" in head  # the fold's model is read through the pooling head
    # the same command again: the resolved settings equal the recorded ones, nothing is retrained
    code, _, err = cli("train", path)
    assert code == 0 and err.count("already complete") == 3, err


def test_folds_trained_before_pooling_auto_are_kept_as_they_are(tmp_path, cli, models):
    """An embedding checkpoint's folds trained with the checkpoint's own head (the default before `auto`): training
    again names the changed default and stops; `model.pooling: null` takes them as they are."""
    path = make_competition(
        tmp_path,
        n_train=60,
        config={"model": {"name": str(models["embedding"]), "pooling": None}, "train": {"max_steps": 2}},
    )
    assert cli("train", path)[0] == 0
    record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert record["meta"]["stages"]["train"]["model.pooling"] is None
    raw = yaml.safe_load(path.read_text())
    del raw["model"]["pooling"]  # the config as it was written then: pooling left at its default
    path.write_text(yaml.safe_dump(raw))
    code, _, err = cli("train", path)
    assert code == 2 and "model.pooling None → 'mean'" in err and "Set them back" in err, err
    code, _, err = cli("train", path, "model.pooling=null")
    assert code == 0 and err.count("already complete") == 3, err
