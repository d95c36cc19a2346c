"""Tiny random decoder LLMs (Llama, Qwen2, Gemma, GPT-2) whose tokenizers have no pad token, like the real ones.

    path = make_decoder(tmp_path / "llama", "llama")     # then model.name: <path>, model.kind: decoder

Saved as causal-LM checkpoints (with an LM head, without a classification head), the way users download
them; the classification head is created when kagglemlc loads them. Word-level tokenizers over the toy
vocabulary of conftest.toy_frame; each architecture mimics its family's special tokens: Llama and Gemma
prepend a BOS, Qwen2 and GPT-2 add nothing, GPT-2's single `<|endoftext|>` is BOS, EOS and UNK at once.
Qwen2 is the exception: transformers 5 always loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer
(byte-level BPE rebuilt from vocab and merges), so its tiny tokenizer is a byte-level BPE trained on the
toy vocabulary, saved with `pad_token: null` (real Qwen tokenizers name one; ours must not).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2Tokenizer,
)

from tiny_models import VOCAB_WORDS

# per architecture: special tokens (first = id 0), their roles, the token prepended to every text
SPECIALS = {
    "llama": (["<unk>", "<s>", "</s>"], {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}, "<s>"),
    "gemma": (["<unk>", "<bos>", "<eos>"], {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}, "<bos>"),
    "gpt2": (
        ["<|endoftext|>"],
        {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        None,
    ),
}
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
DECODER_CONFIGS = {
    "llama": lambda ids: LlamaConfig(**SMALL, num_key_value_heads=1, max_position_embeddings=128, **ids),
    "qwen2": lambda ids: Qwen2Config(**SMALL, num_key_value_heads=1, max_position_embeddings=128, **ids),
    "gemma": lambda ids: GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=16, max_position_embeddings=128, **ids),
    "gpt2": lambda ids: GPT2Config(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=128, **ids),
}
ARCHS = tuple(DECODER_CONFIGS)


def _word_level(arch: str, padding_side: str, roles: dict) -> PreTrainedTokenizerBase:
    specials, default_roles, bos = SPECIALS[arch]
    vocab = {tok: i for i, tok in enumerate(specials + VOCAB_WORDS)}
    roles = {**default_roles, **roles}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
        )
    kept = {k: v for k, v in roles.items() if v is not None}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, padding_side=padding_side, **kept)


def _byte_level_bpe(padding_side: str) -> PreTrainedTokenizerBase:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(VOCAB_WORDS)] * 3 + VOCAB_WORDS, trainer)
    bpe = json.loads(tok.to_str())["model"]
    return Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=[tuple(m) for m in bpe["merges"]],
        pad_token=None,
        model_max_length=128,
        padding_side=padding_side,
    )


def make_decoder_tokenizer(
    folder: Path, arch: str, padding_side: str = "right", **roles: str | None
) -> PreTrainedTokenizerBase:
    """The family's tokenizer without a pad token, saved in `folder`; `roles` (eos_token=None, ...) change it."""
    tokenizer = _byte_level_bpe(padding_side) if arch == "qwen2" else _word_level(arch, padding_side, roles)
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_decoder(folder: Path, arch: str = "llama", padding_side: str = "right") -> Path:
    """A random 2-layer causal LM of the given family + its tokenizer (no pad token), saved in `folder`."""
    tokenizer = make_decoder_tokenizer(folder, arch, padding_side)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = DECODER_CONFIGS[arch](ids)
    config.pad_token_id = None
    torch.manual_seed(0)  # the same random model in every run
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


# A chat template in the style of the instruct models' (role markers as special tokens, an end-of-turn token)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def make_chat_decoder(folder: Path, hidden: int = 64) -> Path:
    """A random 2-layer Llama 'instruct' model: word-level tokenizer with a chat template and role tokens."""
    tokenizer = make_decoder_tokenizer(folder, "llama", "left")
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        **ids,
    )
    config.pad_token_id = None
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder
