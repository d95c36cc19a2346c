"""Decoder LLMs with classification heads: every family × adapter method through `kagglemlc train`, on CPU.

Tiny random Llama, Qwen2, Gemma and GPT-2 (tokenizers without a pad token) train two steps with
lora, qlora (bitsandbytes 4-bit on CPU), ia3, none and head. Each run checks, trl-style, that what
should train changed and everything frozen did not (snapshots around the real `FoldTrainer.fit`), that
only the adapter + head (or the head alone) is saved, and that the saved fold predicts exactly what the
in-memory model predicted, both at the end of training and through `kagglemlc predict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from tokenizers import processors
from transformers import AutoTokenizer

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.engine.batching import tokenize
from kagglemlc.engine.inference import predict_probs
from kagglemlc.models.build import (
    HEAD_FILE,
    build_model,
    build_peft_config,
    build_quantization_config,
    build_tokenizer,
    count_parameters,
    head_modules,
)
from kagglemlc.stages import train as train_module
from kagglemlc.stages.train import FoldTrainer, fold_assignment
from tiny_decoders import ARCHS, make_decoder, make_decoder_tokenizer
from tiny_models import make_encoder

METHODS = ("lora", "qlora", "ia3", "none", "head")
SMOKE = {
    "max_steps": 2,
    "eval_every": 2,
    "batch_size": 8,
    "eval_batch_size": 7,
    "lr": 1e-2,
    "precision": "no",
    "early_stopping_patience": None,
}
# every family saved once with each padding side: the pipeline must not care which one the tokenizer has
SIDES = {"llama": "left", "qwen2": "left", "gemma": "right", "gpt2": "right"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and several times faster when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {arch: make_decoder(root / arch, arch, SIDES[arch]) for arch in ARCHS}


def _config(folder: Path, model: Path, method: str, kind: str = "decoder", adapter: dict | None = None, **train):
    return make_competition(
        folder,
        n_train=60,
        config={
            "model": {"name": str(model), "kind": kind, "max_length": 16},
            "adapter": {"method": method, "r": 4, "alpha": 8, "dropout": 0.0, **(adapter or {})},
            "train": {**SMOKE, **train},
        },
    )


@pytest.fixture
def spy(monkeypatch) -> dict:
    """Wraps FoldTrainer.fit: parameters before and after, and the in-memory model's test predictions."""
    seen: dict = {}
    fit = train_module.FoldTrainer.fit

    def spying_fit(self):
        seen["before"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        seen["trainable"] = {n for n, p in self.model.named_parameters() if p.requires_grad}
        fit(self)
        seen["after"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        seen["optimizer"] = self.optimizer
        enc = tokenize(self.tokenizer, self.data.test_texts, self.cfg.model.max_length)
        rows = np.arange(len(self.data.test_texts))
        # the same batches as the pipeline's prediction: in bf16 (emulated on CPUs without AVX512-BF16) results
        # depend on the padded batch shapes, and this compares the reloaded model, not the batching
        batch_size = self.cfg.train.eval_batch_size
        seen["test_probs"] = predict_probs(self.model, enc, rows, self.accelerator, batch_size, self.data.task)

    monkeypatch.setattr(train_module.FoldTrainer, "fit", spying_fit)
    return seen


def _train(cli, cfg: Path, *overrides: str) -> None:
    assert cli("prepare", cfg)[0] == 0
    code, _, err = cli("train", cfg, "--fold", "0", *overrides)
    assert code == 0, err


def _changed(seen: dict) -> set[str]:
    return {n for n in seen["before"] if not torch.equal(seen["before"][n], seen["after"][n])}


# what may train, by method: peft's adapter weights and its copy of the head, or the head alone
TRAINABLE = {
    "lora": ("lora_", "modules_to_save"),
    "qlora": ("lora_", "modules_to_save"),
    "ia3": ("ia3_", "modules_to_save"),
    "head": ("score.",),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_train_saves_and_reloads_every_family_and_method(tmp_path, cli, decoders, spy, arch, method):
    cfg = _config(tmp_path, decoders[arch], method)
    _train(cli, cfg)
    fold = tmp_path / "run" / "fold0"

    # what trains changed (the head always), what is frozen did not, 4-bit storage included
    trainable, changed = spy["trainable"], _changed(spy)
    assert changed and changed <= trainable
    if method == "none":
        assert trainable == set(spy["before"])
    else:
        assert all(any(key in n for key in TRAINABLE[method]) for n in trainable), sorted(trainable)
        assert any("score" in n for n in changed)
        assert any("lora_B" in n or "ia3_" in n for n in changed) or method == "head"
    if method == "qlora":
        frozen_4bit = [n for n, p in spy["before"].items() if p.dtype == torch.uint8]
        assert frozen_4bit and not set(frozen_4bit) & changed

    # only what is needed is saved; the parameter counts say what trained
    metrics = json.loads((fold / "metrics.json").read_text())
    saved = {p.name for p in (fold / "model").iterdir()}
    if method in ("lora", "qlora", "ia3"):
        assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved
        assert metrics["trainable_params"] < metrics["total_params"]
    elif method == "head":
        assert HEAD_FILE in saved and "model.safetensors" not in saved
        assert list(load_file(fold / "model" / HEAD_FILE)) == ["score.weight"]
        assert metrics["trainable_params"] == len(LABELS) * 32
    else:
        assert "model.safetensors" in saved
        assert metrics["trainable_params"] == metrics["total_params"]
    if method in ("head", "none"):  # the pad token the head looks for travels with the model
        pad_id = AutoTokenizer.from_pretrained(fold / "model").pad_token_id
        assert pad_id is not None and json.loads((fold / "model" / "config.json").read_text())["pad_token_id"] == pad_id

    # the reloaded best model (fold0/test.parquet, written by training) predicts what the trained one did
    written = pd.read_parquet(fold / "test.parquet")
    np.testing.assert_allclose(written[LABELS].to_numpy(), spy["test_probs"], rtol=0, atol=1e-6)
    # ... and so does a fresh `kagglemlc predict`
    (fold / "test.parquet").unlink()
    code, _, err = cli("predict", cfg, "--fold", "0")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(fold / "test.parquet"), written, check_exact=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_tokenizer_gets_a_pad_token_and_right_padding(tmp_path, arch):
    folder = tmp_path / arch
    raw = make_decoder_tokenizer(folder, arch, padding_side="left")
    tokenizer = build_tokenizer(load_config(_config(tmp_path / "comp", folder, "none")))
    assert tokenizer.pad_token == raw.eos_token and tokenizer.padding_side == "right"
    assert len(tokenizer) == len(raw)  # no token added: the embeddings keep their size


def test_pad_token_falls_back_to_unk_and_avoids_an_appended_eos(tmp_path):
    def cfg_for(folder: Path):
        return load_config(_config(tmp_path / "comp", folder, "none"))

    make_decoder_tokenizer(tmp_path / "no-eos", "llama", eos_token=None)
    assert build_tokenizer(cfg_for(tmp_path / "no-eos")).pad_token == "<unk>"
    # a tokenizer that ends every text with EOS: padding with EOS would make the head read the token before it
    appends = make_decoder_tokenizer(tmp_path / "appends-eos", "llama")
    appends.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    appends.save_pretrained(tmp_path / "appends-eos")
    assert build_tokenizer(cfg_for(tmp_path / "appends-eos")).pad_token == "<unk>"
    make_decoder_tokenizer(tmp_path / "nothing", "llama", eos_token=None, unk_token=None)
    with pytest.raises(KaggleMLCError, match="no pad, eos or unk token"):
        build_tokenizer(cfg_for(tmp_path / "nothing"))


@pytest.mark.parametrize("arch", ARCHS)
def test_left_or_right_padded_tokenizer_and_any_batch_give_the_same_predictions(tmp_path, arch):
    """The head reads the last real token: batched = one row at a time, whatever the saved padding side."""
    texts = toy_frame(23, seed=3)["text"].tolist()
    probs = {}
    for side in ("left", "right"):
        folder = make_decoder(tmp_path / side, arch, padding_side=side)
        cfg = load_config(_config(tmp_path / f"comp-{side}", folder, "none"))
        acc = make_accelerator(cfg)
        set_seed(0)  # the same random head on both sides
        model, tokenizer = build_model(cfg, LABELS, "multilabel"), build_tokenizer(cfg)
        enc = tokenize(tokenizer, texts, max_length=16)
        assert len(set(enc.lengths)) > 3  # rows of many lengths: real padding in every batch
        rows = np.arange(len(texts))
        probs[side] = predict_probs(model, enc, rows, acc, batch_size=8, task="multilabel")
        alone = predict_probs(model, enc, rows, acc, batch_size=1, task="multilabel")
        np.testing.assert_allclose(probs[side], alone, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(probs["left"], probs["right"])


def test_quantization_config_follows_precision(tmp_path, decoders):
    cfg = _config(tmp_path, decoders["llama"], "qlora")
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("no", torch.float32)):
        q = build_quantization_config(load_config(cfg, [f"train.precision={precision}"]))
        assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
        assert q.bnb_4bit_compute_dtype == dtype
    assert build_quantization_config(load_config(cfg, ["adapter.method=lora"])) is None
    # 4-bit weights count their unpacked elements: the frozen base counts as much as the fp32 model
    four_bit = build_model(load_config(cfg), LABELS, "multilabel")
    full = build_model(load_config(cfg, ["adapter.method=none"]), LABELS, "multilabel")
    assert any(p.dtype == torch.uint8 for p in four_bit.parameters())
    trainable, total = count_parameters(four_bit)
    assert total - trainable == count_parameters(full)[1]


def test_peft_configs_carry_the_adapter_settings(tmp_path, decoders):
    adapter = {"r": 8, "alpha": 16, "dropout": 0.1, "use_rslora": True, "use_dora": True}
    path = _config(tmp_path, decoders["llama"], "lora", adapter={**adapter, "target_modules": ["q_proj", "v_proj"]})
    model = build_model(load_config(path, ["adapter.method=head"]), LABELS, "multilabel")
    lora = build_peft_config(load_config(path), model)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.use_rslora, lora.use_dora) == (8, 16, 0.1, True, True)
    assert set(lora.target_modules) == {"q_proj", "v_proj"} and lora.modules_to_save == ["score"]
    assert build_peft_config(load_config(path, ["adapter.target_modules=all-linear"]), model).target_modules == (
        "all-linear"
    )
    ia3 = build_peft_config(load_config(path, ["adapter.method=ia3", "adapter.target_modules=all-linear"]), model)
    assert set(ia3.target_modules) == {"k_proj", "v_proj", "down_proj"} and set(ia3.feedforward_modules) == {
        "down_proj"
    }
    ia3 = build_peft_config(load_config(path, ["adapter.method=ia3"]), model)
    assert set(ia3.target_modules) == {"q_proj", "v_proj"} and not ia3.feedforward_modules
    for method in ("none", "head"):
        assert build_peft_config(load_config(path, [f"adapter.method={method}"]), model) is None


@pytest.mark.parametrize("arch", ["bert", "deberta-v2"])
def test_encoder_heads_are_found_and_lora_trains_them(tmp_path, cli, spy, arch):
    model = make_encoder(tmp_path / arch, arch)
    cfg = _config(tmp_path / "comp", model, "lora", kind="encoder")
    _train(cli, cfg)
    heads = {"bert": ["classifier"], "deberta-v2": ["pooler", "classifier"]}[arch]
    assert head_modules(build_model(load_config(cfg, ["adapter.method=head"]), LABELS, "multilabel")) == heads
    assert all("lora_" in n or any(f"{h}.modules_to_save" in n for h in heads) for n in spy["trainable"])
    assert {h for h in heads for n in _changed(spy) if f"{h}.modules_to_save" in n} == set(heads)
    fold = tmp_path / "comp" / "run" / "fold0"
    np.testing.assert_allclose(pd.read_parquet(fold / "test.parquet")[LABELS], spy["test_probs"], atol=1e-6)


def test_gradient_checkpointing_changes_memory_not_results(tmp_path, cli, decoders):
    """Checkpointing recomputes activations: QLoRA (+ DoRA) with it on ends with the same OOF as without."""
    cfg = _config(tmp_path / "unit", decoders["llama"], "qlora", adapter={"gradient_checkpointing": True})
    assert build_model(load_config(cfg), LABELS, "multilabel").get_base_model().is_activation_checkpointing
    oof = {}
    for on in (False, True):
        cfg = _config(
            tmp_path / str(on), decoders["llama"], "qlora", adapter={"gradient_checkpointing": on, "use_dora": True}
        )
        _train(cli, cfg)
        oof[on] = pd.read_parquet(tmp_path / str(on) / "run" / "fold0" / "oof.parquet")
    pd.testing.assert_frame_equal(oof[False], oof[True], rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_optimizers_run_on_cpu(tmp_path, cli, decoders, spy, optimizer):
    # a full fine-tune, so that Qwen2's embedding (332 × 32) is big enough for bitsandbytes' 8-bit state
    _train(cli, _config(tmp_path, decoders["qwen2"], "none", optimizer=optimizer))
    states = [s["state1"] for s in spy["optimizer"].state.values() if "state1" in s]
    assert any(s.dtype == torch.uint8 for s in states)
    assert any("embed_tokens" in n for n in _changed(spy))


@pytest.mark.parametrize("method", ["lora", "qlora", "ia3", "head"])
def test_bf16_base_trains_fp32_weights_and_reloads_the_same(tmp_path, cli, decoders, spy, method):
    """With bf16 the frozen base computes in bf16 while adapters and head train in fp32, before and after reloading."""
    _train(cli, _config(tmp_path, decoders["llama"], method, precision="bf16"))
    dtypes = {n: p.dtype for n, p in spy["before"].items()}
    assert {dtypes[n] for n in spy["trainable"]} == {torch.float32}
    # (peft keeps the untrained head beside its trained copy)
    frozen = {dtypes[n] for n in dtypes if n not in spy["trainable"] and "original_module" not in n}
    assert frozen == ({torch.uint8, torch.float32} if method == "qlora" else {torch.bfloat16})
    written = pd.read_parquet(tmp_path / "run" / "fold0" / "test.parquet")
    np.testing.assert_allclose(written[LABELS].to_numpy(), spy["test_probs"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["qlora", "head"])
def test_checkpoint_keeps_only_what_trains_and_resumes_it(tmp_path, cli, decoders, method):
    cfg_path = _config(tmp_path, decoders["gemma"], method)
    assert cli("prepare", cfg_path)[0] == 0
    cfg = load_config(cfg_path)
    data = load_competition(cfg.competition)
    folds = fold_assignment(cfg, data)
    first = FoldTrainer(cfg, data, folds, 0)
    first.train_step([first.train_rows[:8]])
    first.progress.step = 1
    first.save_checkpoint()
    trainable = {n for n, p in first.model.named_parameters() if p.requires_grad}
    assert set(load_file(first.dir / "checkpoint" / "model.safetensors")) == trainable  # no frozen base in it
    second = FoldTrainer(cfg, data, folds, 0)
    second.maybe_resume()
    assert second.progress.step == 1
    after = second.model.state_dict()
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, after[name]), name
