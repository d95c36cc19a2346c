"""Encoder switches: layer-wise LR decay, re-initialised top layers, pooling, multi-sample dropout, frozen layers.

Each switch on tiny random BERT, RoBERTa, DeBERTa-v2 and ELECTRA encoders changes only what it should (the
optimiser's per-layer rates; the top layers' weights; the head's input; the training logits; what trains), and a
fold trained with the switches through `kagglemlc train` reloads to the predictions the trained model made, through
`kagglemlc predict` too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, ElectraConfig

from conftest import LABELS, make_competition
from kagglemlc.config import field_marks, load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.engine.batching import tokenize
from kagglemlc.engine.inference import predict_probs
from kagglemlc.engine.optim import build_optimizer
from kagglemlc.models.build import build_model, build_tokenizer
from kagglemlc.stages import train as train_module
from tiny_models import SMALL, make_encoder, make_tokenizer

ARCHS = ("bert", "roberta", "deberta-v2", "electra")
N_LAYERS = SMALL["num_hidden_layers"]
TEXTS = ["happy day", "the news about town was scared and furious then happy"]  # one row padded
SMOKE = {"max_steps": 2, "eval_every": 2, "batch_size": 8, "lr": 1e-3, "head_lr": 1e-2, "precision": "no"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and other jobs share the CPU
    yield
    torch.set_num_threads(threads)


def _make(folder: Path, arch: str) -> Path:
    if arch != "electra":
        return make_encoder(folder, arch)
    tokenizer = make_tokenizer(folder)  # ELECTRA-small's shape: embeddings narrower than the body, projected up
    config = ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, max_position_embeddings=128, **SMALL)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {arch: _make(root / arch, arch) for arch in ARCHS}


def _config(folder: Path, model: Path, *overrides: str, adapter: str = "none"):
    path = make_competition(
        folder,
        n_train=60,
        config={
            "model": {"name": str(model), "max_length": 16},
            "adapter": {"method": adapter, "r": 4, "alpha": 8, "dropout": 0.0},
            "train": SMOKE,
        },
    )
    return load_config(path, list(overrides))


def _build(tmp_path: Path, model: Path, *overrides: str, adapter: str = "none", seed: int = 0):
    cfg = _config(tmp_path, model, *overrides, adapter=adapter)
    set_seed(seed)
    return cfg, build_model(cfg, LABELS, "multilabel")


def _batch(cfg, model_path: Path) -> dict[str, torch.Tensor]:
    return dict(build_tokenizer(cfg)(TEXTS, padding=True, return_tensors="pt"))


def _layer(name: str) -> int | None:
    found = re.search(r"\.layer\.(\d+)\.", name)
    return None if found is None else int(found.group(1))


# ---- layer-wise learning-rate decay ----------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", [None, "mean"])
@pytest.mark.parametrize("arch", ARCHS)
def test_llrd_gives_each_layer_its_rate_and_the_head_its_own(tmp_path, encoders, arch, pooling):
    extra = [] if pooling is None else [f"model.pooling={pooling}"]
    cfg, model = _build(tmp_path, encoders[arch], "train.llrd=0.9", *extra)
    optimizer = build_optimizer(cfg.train, model)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    own_head = ("pooler.", "classifier.") if arch == "deberta-v2" else ("classifier.",)
    head_prefixes = own_head if pooling is None else ("head.",)
    seen = set()
    for name, p in model.named_parameters():
        layer = _layer(name)
        if name.startswith(head_prefixes):
            expected, seen_as = 1e-2, "head"
        elif layer is not None:
            expected, seen_as = 1e-3 * 0.9 ** (N_LAYERS - 1 - layer), f"layer {layer}"
        elif "embed" in name:  # embeddings, ELECTRA's embeddings_project, DeBERTa's rel_embeddings
            expected, seen_as = 1e-3 * 0.9**N_LAYERS, "embeddings"
        else:  # BERT's pooler under its own head: beside the top layer
            expected, seen_as = 1e-3, "rest"
        assert rate[id(p)][0] == pytest.approx(expected, rel=1e-12), name
        assert rate[id(p)][1] == (0.0 if p.ndim < 2 else cfg.train.weight_decay), name
        seen.add(seen_as)
    assert {"head", "layer 0", "layer 1", "embeddings"} <= seen
    # the top layer's rate is lr itself, the embeddings' lr * 0.9^2: the exact values
    assert sorted({round(g["lr"], 12) for g in optimizer.param_groups}) == [8.1e-4, 9e-4, 1e-3, 1e-2]


def test_without_llrd_the_groups_are_the_four_of_before(tmp_path, encoders):
    cfg, model = _build(tmp_path, encoders["bert"])
    groups = build_optimizer(cfg.train, model).param_groups
    assert type(model) is AutoModelForSequenceClassification._model_mapping[type(model.config)]  # the own head
    decayed = [(g["lr"], g["weight_decay"] > 0) for g in groups]
    assert decayed == [(1e-3, True), (1e-2, True), (1e-3, False), (1e-2, False)]


# ---- re-initialised top layers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_reinit_changes_only_the_top_layers(tmp_path, encoders, arch):
    _, pretrained = _build(tmp_path / "a", encoders[arch])
    _, reinit = _build(tmp_path / "b", encoders[arch], "model.reinit_layers=1")
    before, after = pretrained.state_dict(), reinit.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    top = {k for k in before if _layer(k) == N_LAYERS - 1}
    assert changed and changed <= top  # the head too is the same: same seed, built before the reinit
    old_top = pretrained.base_model.encoder.layer[N_LAYERS - 1]
    for name, module in reinit.base_model.encoder.layer[N_LAYERS - 1].named_modules():
        if isinstance(module, torch.nn.Linear):  # the model's own init: N(0, initializer_range), zero bias
            assert not torch.equal(module.weight, old_top.get_submodule(name).weight), name
            assert 0.75 * 0.02 < module.weight.std().item() < 1.25 * 0.02, name
            assert torch.count_nonzero(module.bias) == 0, name


# ---- pooling --------------------------------------------------------------------------------------------------


def _by_hand(pooling: str, hidden: torch.Tensor, mask: torch.Tensor, head) -> torch.Tensor:
    rows = []
    for states, real in zip(hidden, mask.bool()):
        kept = states[real]
        if pooling == "cls":
            rows.append(states[0])
        elif pooling == "mean":
            rows.append(kept.mean(0))
        elif pooling == "max":
            rows.append(kept.max(0).values)
        else:
            weights = torch.softmax(kept @ head.token_weight.weight[0], dim=0)
            rows.append((weights[:, None] * kept).sum(0))
    return torch.stack(rows)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", "attention"])
@pytest.mark.parametrize("arch", ARCHS)
def test_pooling_is_the_heads_input(tmp_path, encoders, arch, pooling):
    cfg, model = _build(tmp_path, encoders[arch], f"model.pooling={pooling}")
    batch = _batch(cfg, encoders[arch])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # row 0 is padded
    seen = []
    model.head.out.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.base_model(**batch).last_hidden_state
    expected = _by_hand(pooling, hidden, batch["attention_mask"], model.head)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, model.head.out(expected), rtol=0, atol=1e-6)
    if pooling in ("mean", "max", "attention"):  # the padding is left out: with it, row 0 reads differently
        unmasked = _by_hand(pooling, hidden, torch.ones_like(batch["attention_mask"]), model.head)
        assert not torch.allclose(unmasked[0], expected[0])


# ---- multi-sample dropout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_multi_sample_dropout_averages_masks_in_training_only(tmp_path, encoders, arch):
    cfg, model = _build(tmp_path, encoders[arch], "model.pooling=mean", "model.head_dropouts=4")
    batch, head = _batch(cfg, encoders[arch]), model.head
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        logits = model(**batch).logits
        torch.manual_seed(1)  # the same body dropout, then four head masks drawn in turn
        pooled = head.pool(model.base_model(**batch).last_hidden_state, batch["attention_mask"])
        samples = [head.out(head.dropout(pooled)) for _ in range(4)]
    torch.testing.assert_close(logits, torch.stack(samples).mean(0), rtol=0, atol=1e-6)
    assert not torch.allclose(samples[0], samples[1])  # four different masks
    model.eval()
    with torch.no_grad():
        pooled = head.pool(model.base_model(**batch).last_hidden_state, batch["attention_mask"])
        torch.testing.assert_close(model(**batch).logits, head.out(pooled), rtol=0, atol=0)  # one head, no dropout


# ---- frozen embeddings and bottom layers ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_freeze_stops_the_embeddings_and_bottom_layers(tmp_path, encoders, arch):
    cfg, model = _build(tmp_path, encoders[arch], "model.freeze_layers=1")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    body = model.base_model_prefix + "."
    expected = {
        n
        for n, _ in model.named_parameters()
        if n.startswith(body) and (_layer(n) == 0 or (_layer(n) is None and "embed" in n))
    }
    assert frozen == expected and any("word_embeddings" in n for n in frozen)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(cfg.train, model)
    model.train()
    logits = model(**_batch(cfg, encoders[arch])).logits
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert not changed & frozen
    assert {n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2} <= changed


def test_freeze_zero_is_the_embeddings_alone(tmp_path, encoders):
    _, model = _build(tmp_path, encoders["electra"], "model.freeze_layers=0")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("electra.embeddings") for n in frozen)  # the projection included


# ---- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, adapter, message",
    [
        (["model.kind=decoder", "model.pooling=mean"], "none", "model.pooling: an encoder switch"),
        (["model.kind=generative", "train.llrd=0.9"], "lora", "train.llrd: an encoder switch"),
        (["model.head_dropouts=5", "model.pooling=null"], "none", "model.head_dropouts: multi-sample dropout runs"),
        (["model.reinit_layers=1"], "lora", "model.reinit_layers: for full fine-tuning"),
        (["model.freeze_layers=1"], "head", "model.freeze_layers: for full fine-tuning"),
        (["train.llrd=0.9"], "head", "train.llrd: adapter.method head trains the head alone"),
    ],
)
def test_unsupported_combinations_are_one_line_errors(tmp_path, encoders, overrides, adapter, message):
    with pytest.raises(KaggleMLCError) as err:
        _config(tmp_path, encoders["bert"], *overrides, adapter=adapter)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.reinit_layers=3"], "model.reinit_layers: 3, but model.name has 2 layers"),
        (["model.freeze_layers=3"], "model.freeze_layers: 3, but model.name has 2 layers"),
        (["model.freeze_layers=2", "model.reinit_layers=1"], "exceed the 2 layers"),
    ],
)
def test_layer_counts_beyond_the_model_are_errors(tmp_path, encoders, overrides, message):
    with pytest.raises(KaggleMLCError, match=message):
        _build(tmp_path, encoders["roberta"], *overrides)


def test_every_switch_redoes_training():
    marks = dict(field_marks())
    for key in ("model.pooling", "model.head_dropouts", "model.reinit_layers", "model.freeze_layers", "train.llrd"):
        assert marks[key]["stages"] == ["train"], key


# ---- trained, saved, reloaded -----------------------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch) -> dict:
    """The trained (in-memory) model's test probabilities, from inside the real `FoldTrainer.fit`."""
    seen: dict = {}
    fit = train_module.FoldTrainer.fit

    def spying_fit(self):
        fit(self)
        seen["trainable"] = {n for n, p in self.model.named_parameters() if p.requires_grad}
        enc = tokenize(self.tokenizer, self.data.test_texts, self.cfg.model.max_length)
        rows = np.arange(len(self.data.test_texts))
        batch_size = self.cfg.train.eval_batch_size
        seen["test_probs"] = predict_probs(self.model, enc, rows, self.accelerator, batch_size, self.data.task)

    monkeypatch.setattr(train_module.FoldTrainer, "fit", spying_fit)
    return seen


RUNS = {  # every switch on every architecture, a pooling each; with adapters too
    "bert": ("none", ["model.pooling=mean", "model.head_dropouts=3", "train.llrd=0.9", "model.reinit_layers=1"]),
    "roberta": ("none", ["model.pooling=max", "model.head_dropouts=2", "train.llrd=0.8", "model.freeze_layers=1"]),
    "deberta-v2": ("none", ["model.pooling=attention", "model.reinit_layers=1", "train.llrd=0.9"]),
    "electra": ("none", ["model.pooling=cls", "model.head_dropouts=5", "model.freeze_layers=0", "train.llrd=0.9"]),
    "bert+lora": ("lora", ["model.pooling=attention", "model.head_dropouts=3", "train.llrd=0.9"]),
    "bert+qlora": ("qlora", ["model.pooling=mean", "train.llrd=0.9"]),  # the head stays out of 4-bit
    "deberta-v2+head": ("head", ["model.pooling=mean", "model.head_dropouts=2"]),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_a_switched_fold_reloads_to_the_same_predictions(tmp_path, cli, encoders, spy, run):
    arch = run.split("+")[0]
    adapter, overrides = RUNS[run]
    cfg = _config(tmp_path, encoders[arch], adapter=adapter)
    path = Path(cfg.meta["config_file"])
    assert cli("prepare", path)[0] == 0
    code, _, err = cli("train", path, "--fold", "0", *overrides)
    assert code == 0, err
    fold = tmp_path / "run" / "fold0"
    if adapter == "none":  # the whole model, the head beside the body, and config.json saying which head
        saved = load_file(fold / "model" / "model.safetensors")
        assert "head.out.weight" in saved and not any(k.startswith("classifier.") for k in saved)
        pooling = next(o.split("=")[1] for o in overrides if o.startswith("model.pooling"))
        assert json.loads((fold / "model" / "config.json").read_text())["kagglemlc_head"]["pooling"] == pooling
    else:
        assert any("head" in n for n in spy["trainable"])
    written = pd.read_parquet(fold / "test.parquet")
    np.testing.assert_allclose(written[LABELS].to_numpy(), spy["test_probs"], rtol=0, atol=1e-6)
    (fold / "test.parquet").unlink()
    code, _, err = cli("predict", path, "--fold", "0", *overrides)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(fold / "test.parquet"), written, check_exact=True)
