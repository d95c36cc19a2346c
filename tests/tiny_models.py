"""Tiny random models and word-level tokenizers, saved to a folder and loaded the way users load theirs.

    path = make_encoder(tmp_path / "bert", "bert")     # then model.name: <path> in the config

Nothing is downloaded: the tokenizer is built with the `tokenizers` library over the toy vocabulary
of conftest.toy_frame, the model from a 2-layer config with hidden size 32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModel, BertConfig, DebertaV2Config, PreTrainedTokenizerFast, RobertaConfig

from conftest import FILLER, WORDS

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_WORDS = sorted(set(FILLER) | set(WORDS.values()) | {"none", "joy", "anger", "fear", ",", "."})


def make_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + VOCAB_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # as BERT's: pairs carry segment ids
    )
    fast.save_pretrained(folder)
    return fast


ENCODER_CONFIGS = {
    "bert": lambda v: BertConfig(vocab_size=v, max_position_embeddings=128),
    "roberta": lambda v: RobertaConfig(
        vocab_size=v, max_position_embeddings=160, pad_token_id=0, bos_token_id=2, eos_token_id=3
    ),
    "deberta-v2": lambda v: DebertaV2Config(
        vocab_size=v,
        max_position_embeddings=128,
        relative_attention=True,
        position_buckets=16,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=0,
        pooler_hidden_size=32,
    ),
}
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def make_encoder(folder: Path, arch: str = "bert", **config_overrides) -> Path:
    """A random 2-layer encoder of the given architecture + tokenizer, saved in `folder`."""
    tokenizer = make_tokenizer(folder)
    config = ENCODER_CONFIGS[arch](len(tokenizer))
    for key, value in {**SMALL, **config_overrides}.items():
        setattr(config, key, value)
    torch.manual_seed(0)  # the same random model in every run
    AutoModel.from_config(config).save_pretrained(folder)
    return folder
