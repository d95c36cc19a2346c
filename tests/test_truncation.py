"""`model.truncation`: which tokens of a text longer than max_length are kept (right / left / head_tail)."""

from __future__ import annotations

import pytest

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.data.competition import load_competition
from kagglemlc.engine.batching import tokenize
from kagglemlc.models.build import build_tokenizer
from kagglemlc.tasks import make_task
from tiny_models import VOCAB_WORDS, make_encoder, make_tokenizer

WORDS = [w for w in VOCAB_WORDS if w.isalpha()][:20]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def _words(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


@pytest.mark.parametrize(
    ("truncation", "fraction", "kept"),
    [
        ("right", 0.25, WORDS[:8]),
        ("left", 0.25, WORDS[-8:]),
        ("head_tail", 0.25, WORDS[:2] + WORDS[-6:]),
        ("head_tail", 0.5, WORDS[:4] + WORDS[-4:]),
        ("head_tail", 0.0, WORDS[-8:]),
        ("head_tail", 1.0, WORDS[:8]),
    ],
)
def test_a_long_text_keeps_exactly_the_tokens_its_truncation_says(tokenizer, truncation, fraction, kept):
    enc = tokenize(tokenizer, [" ".join(WORDS)], max_length=10, truncation=truncation, head_fraction=fraction)
    assert _words(tokenizer, enc.input_ids[0]) == ["[CLS]", *kept, "[SEP]"]  # the special tokens survive the cut
    assert enc.lengths[0] == 10


@pytest.mark.parametrize("truncation", ["right", "left", "head_tail"])
def test_a_short_text_is_untouched(tokenizer, truncation):
    short = " ".join(WORDS[:5])
    enc = tokenize(tokenizer, [short], max_length=10, truncation=truncation)
    assert enc.input_ids[0] == tokenizer(short)["input_ids"]


def test_the_config_reaches_the_tokens_the_model_trains_on(tmp_path):
    model = make_encoder(tmp_path / "bert", "bert")
    config = make_competition(
        tmp_path / "comp",
        config={"model": {"name": str(model), "max_length": 8, "truncation": "head_tail", "head_fraction": 0.5}},
    )
    cfg = load_config(config)
    data = load_competition(cfg.competition)
    tok = build_tokenizer(cfg)
    enc = make_task(cfg, tok, data).train_encodings()
    expected = tokenize(tok, data.train_texts, 8, truncation="head_tail", head_fraction=0.5)
    assert enc.input_ids == expected.input_ids
    longest = max(range(len(data.train_texts)), key=lambda i: len(tok(data.train_texts[i])["input_ids"]))
    full = tok(data.train_texts[longest])["input_ids"]
    assert len(full) > 8 and enc.input_ids[longest] == full[:4] + full[-4:]  # [CLS] 3 head, 3 tail [SEP]
