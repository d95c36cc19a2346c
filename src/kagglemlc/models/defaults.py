"""Defaults that score: every `auto` setting chosen from the model kind, the checkpoint and the training texts.

    chosen = resolve_defaults(cfg, texts)    # fills cfg in place, returns what it chose and why
    for choice in chosen:
        info(f"default {choice.key} = {choice.value}: {choice.rule}")

A config that names only the files and the model gets what hand-tuning gets: the rules below were picked
with the grid in bench/README.md ("Defaults grid"); the README's config reference states each one. Anything
the config sets is used as it is: only the value `auto` (the default of these keys) is resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kagglemlc.config import AUTO, Config
from kagglemlc.core.console import is_main_process, stdout
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.models.build import build_tokenizer, cache_kwargs, is_sentence_embedding, pooling_of, resolve_model_path

MACRO_METRICS = ("f1_macro", "roc_auc")
# Encoders: enough passes for MIN_STEPS optimiser steps (the grid: 500 steps stopped while still improving,
# the best checkpoints of 750 came at steps 625-756), at least MIN_EPOCHS, at most MAX_EPOCHS.
MIN_STEPS, MIN_EPOCHS, MAX_EPOCHS = 750, 3, 10
LENGTH_SAMPLE = 20_000  # texts tokenised for max_length: a sample this size pins the 99th percentile closely


@dataclass(frozen=True)
class Choice:
    """One default chosen for a setting the config left at `auto`."""

    key: str
    value: Any
    rule: str


def _pooling(cfg: Config) -> tuple[str | None, str]:
    pooling = pooling_of(cfg)
    if pooling is None:
        return None, "the checkpoint's own classification head"
    return pooling, (
        f"sentence-embedding checkpoint: its vectors are the {pooling} pool of the last hidden states (how "
        "sentence-transformers trained it), so the head reads that pool (bench/README.md: nested CV 0.365 → 0.454 "
        "on GoEmotions with MiniLM)"
    )


def _family(cfg: Config) -> str:
    """encoder (full fine-tune) | adapter (LoRA, QLoRA, IA3 on an LLM) | llm-full | head (frozen base)."""
    if cfg.adapter.method == "head":
        return "head"
    if cfg.model.kind == "encoder":
        return "encoder" if cfg.adapter.method == "none" else "adapter"
    return "llm-full" if cfg.adapter.method == "none" else "adapter"


def _lr(cfg: Config, family: str) -> tuple[float, str]:
    if family == "encoder":
        return 5e-5, "encoder full fine-tune: the body's usual rate"
    if family == "head":
        return 1e-3, "frozen base: only the head trains, at a linear probe's rate"
    if family == "llm-full":
        return 1e-5, "full fine-tune of an LLM: 1e-5 keeps the pretrained weights (higher rates diverge)"
    if cfg.adapter.method == "ia3":
        return 3e-3, "IA3 learns a few scaling vectors: the IA3 paper's 3e-3"
    return 2e-4, f"{cfg.adapter.method} adapters: the QLoRA paper's 2e-4 for LLMs up to 13B"


def _head_lr(cfg: Config, family: str, lr: float) -> tuple[float, str]:
    if cfg.model.kind == "generative":
        return lr, "generative models have no new head (the answers come from the pretrained LM head)"
    if family == "head":
        return lr, "frozen base: the head is all that trains"
    if family == "encoder" and is_sentence_embedding(cfg):
        return 3e-3, (
            "sentence-embedding checkpoint (sentence-transformers): its [CLS] pooler was never trained for "
            "classification, so the new head learns at 3e-3, 60x the body"
        )
    return lr, "the head learns at the body's rate, as in the Hugging Face recipe (no measurement here says otherwise)"


def _epochs(cfg: Config, family: str, rows: int) -> tuple[int, str]:
    if family not in ("encoder", "head"):
        return 2, "LLMs: 2 epochs (one already fits most of a fine-tuning set; more overfits)"
    steps = math.ceil(rows * (cfg.cv.folds - 1) / cfg.cv.folds / (cfg.train.batch_size * cfg.train.grad_accum))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / max(steps, 1))))
    return epochs, (
        f"{steps} steps per epoch: {epochs} epochs give at least {MIN_STEPS} optimiser steps where the data allow "
        f"({MIN_EPOCHS}..{MAX_EPOCHS} epochs), evaluated each epoch; early stopping keeps the best checkpoint"
    )


def _warmup(cfg: Config, family: str) -> tuple[float, str]:
    if family in ("encoder", "head"):
        return 0.06, "6% of the steps, RoBERTa's fine-tuning recipe"
    return 0.03, "3% of the steps, the QLoRA recipe"


def _class_weights(cfg: Config, family: str) -> tuple[str, str]:
    comp = cfg.competition
    if cfg.model.kind != "generative" and comp.task == "multilabel" and comp.metric in MACRO_METRICS:
        return "sqrt", (
            f"multilabel scored by {comp.metric}: every label counts alike, so rare labels' positives weigh "
            "sqrt(negatives/positives)"
        )
    return "none", "the metric weighs rows alike (or the model writes answers): no class weights"


def _batch_size(cfg: Config, family: str) -> tuple[int, str]:
    if family in ("encoder", "head"):
        return 32, "32 rows per step"
    return 8, "LLMs: 8 rows per step, a common QLoRA batch for 7B models (raise train.grad_accum for more)"


RULES = {  # in order: the epochs rule reads the batch size
    "train.lr": _lr,
    "train.warmup_ratio": _warmup,
    "train.class_weights": _class_weights,
    "train.batch_size": _batch_size,
}


def model_max_tokens(cfg: Config, tokenizer) -> int:
    """The longest input the model takes: its tokenizer's limit, else its position embeddings, else 512."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(cfg), **cache_kwargs(cfg))
    except (OSError, ValueError):
        return 512
    return int(getattr(config.get_text_config(), "max_position_embeddings", 512) or 512)


def auto_max_length(cfg: Config, tokenizer, texts: list[str]) -> tuple[int, str]:
    """The 99th percentile of the training texts' token lengths, rounded up to a multiple of 8, capped by the model."""
    rows = np.arange(len(texts))
    if len(rows) > LENGTH_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), LENGTH_SAMPLE, replace=False))
    sample = [texts[i] for i in rows]
    lengths = [len(ids) for ids in tokenizer(sample, truncation=False, add_special_tokens=True)["input_ids"]]
    p99 = float(np.percentile(lengths, 99)) if lengths else 8.0
    cap = model_max_tokens(cfg, tokenizer)
    value = max(8, min(cap, 8 * math.ceil(p99 / 8)))
    where = f"of {len(sample):,} sampled" if len(rows) < len(texts) else "of the"
    return value, f"99th percentile {where} training texts' token lengths is {p99:.0f} → {value} (model limit {cap})"


def apply_defaults(cfg: Config, texts: list[str], tokenizer=None) -> list[Choice]:
    """`resolve_defaults`, then one line per choice for the user (once per command: a resolved config has no
    `auto` left, so the stages it calls print nothing more)."""
    chosen = resolve_defaults(cfg, texts, tokenizer)
    if is_main_process():  # on stdout, beside the folds table: stderr keeps progress, warnings and errors
        for choice in chosen:
            stdout.print(f"default {choice.key} = {choice.value}: {choice.rule}", markup=False, soft_wrap=True)
    return chosen


def resolve_defaults(cfg: Config, texts: list[str] | None = None, tokenizer=None) -> list[Choice]:
    """Replaces every `auto` setting of `cfg` by its rule's value, in place; returns the choices made.

    Args:
        cfg: the experiment config.
        texts: the training texts (for `model.max_length` and `train.epochs`); without them those stay `auto`.
        tokenizer: the model's tokenizer; built from the config when needed and not given.
    """
    family, chosen = _family(cfg), []
    train = cfg.train
    for key, rule in RULES.items():
        name = key.split(".")[1]
        if getattr(train, name) == AUTO:
            value, why = rule(cfg, family)
            setattr(train, name, value)
            chosen.append(Choice(key, value, why))
    if cfg.model.pooling == AUTO and (cfg.model.kind != "encoder" or cfg.competition.task == "span"):
        cfg.model.pooling = None  # no pooling head there: nothing to say
    elif cfg.model.pooling == AUTO:
        cfg.model.pooling, why = _pooling(cfg)
        chosen.append(Choice("model.pooling", cfg.model.pooling, why))
        if cfg.model.pooling is None and cfg.model.head_dropouts > 1:
            raise KaggleMLCError(
                "model.head_dropouts: multi-sample dropout runs kagglemlc's head; set model.pooling "
                "(auto keeps this checkpoint's own head)"
            )
    if train.head_lr == AUTO:
        train.head_lr, why = _head_lr(cfg, family, train.lr)
        chosen.append(Choice("train.head_lr", train.head_lr, why))
    if train.epochs == AUTO and texts is not None:
        train.epochs, why = _epochs(cfg, family, len(texts))
        chosen.append(Choice("train.epochs", train.epochs, why))
    if cfg.model.max_length == AUTO and texts is not None:
        if tokenizer is None:
            tokenizer = build_tokenizer(cfg)
        cfg.model.max_length, why = auto_max_length(cfg, tokenizer, texts)
        chosen.append(Choice("model.max_length", cfg.model.max_length, why))
    return chosen
