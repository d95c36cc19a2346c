"""Tiny random decoder LLMs (Llama, Qwen2, Gemma, GPT-2) whose tokenizers have no pad token, like the real ones.

    path = make_decoder(tmp_path / "llama", "llama")     # then model.name: <path>, model.kind: decoder

Saved as causal-LM checkpoints (with an LM head, without a classification head), the way users download
them; the classification head is created when kagglemlc loads them. Word-level tokenizers over the toy
vocabulary of conftest.toy_frame; each architecture mimics its family's special tokens: Llama and Gemma
prepend a BOS, Qwen2 and GPT-2 add nothing, GPT-2's single `<|endoftext|>` is BOS, EOS and UNK at once.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from tiny_models import VOCAB_WORDS

# per architecture: special tokens (first = id 0), tokenizer roles, whether a BOS is prepended
SPECIALS = {
    "llama": (["<unk>", "<s>", "</s>"], {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}, "<s>"),
    "gemma": (["<unk>", "<bos>", "<eos>"], {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}, "<bos>"),
    "qwen2": (["<|endoftext|>", "<|im_start|>"], {"eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, None),
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


def make_decoder_tokenizer(folder: Path, arch: str, padding_side: str = "right", **roles) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with the family's special tokens and no pad token; `roles` overrides them."""
    specials, default_roles, bos = SPECIALS[arch]
    vocab = {tok: i for i, tok in enumerate(specials + VOCAB_WORDS)}
    roles = {**default_roles, **roles}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=roles.get("unk_token") or specials[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=128, padding_side=padding_side, **{k: v for k, v in roles.items() if v}
    )
    assert fast.pad_token is None
    fast.save_pretrained(folder)
    return fast


def make_decoder(folder: Path, arch: str = "llama", padding_side: str = "right") -> Path:
    """A random 2-layer causal LM of the given family + its tokenizer (no pad token), saved in `folder`."""
    tokenizer = make_decoder_tokenizer(folder, arch, padding_side)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = DECODER_CONFIGS[arch](ids)
    config.pad_token_id = None
    torch.manual_seed(0)  # the same random model in every run
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder
