"""Text pairs (`competition.text_pair_column`): the tokenizer's own pair template and segment ids, per-segment token
budgets or longest_first truncation, and the example pair competition end to end through `kagglemlc run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.engine.batching import _longest_first, collate, tokenize_pairs
from tiny_decoders import ARCHS, make_decoder
from tiny_models import make_encoder, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tokenizer(tmp_path):
    """The tiny word-level tokenizer, with BERT's pair template: segment B (and its [SEP]) has segment id 1."""
    return make_tokenizer(tmp_path / "tok")


def _words(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_a_pair_gets_the_template_and_segment_ids(tokenizer):
    enc = tokenize_pairs(tokenizer, ["the happy day"], [["we saw news"]], max_length=32)
    words = ["[CLS]", "the", "happy", "day", "[SEP]", "we", "saw", "news", "[SEP]"]
    assert _words(tokenizer, enc.input_ids[0]) == words
    assert enc.token_type_ids[0] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    batch = collate(enc, np.array([0]))
    assert torch.equal(batch["token_type_ids"][0], torch.tensor(enc.token_type_ids[0]))
    # the same as the tokenizer's own pair encoding
    assert enc.input_ids[0] == tokenizer("the happy day", "we saw news")["input_ids"]


def test_segment_budgets_cut_each_segment_to_its_own(tokenizer):
    enc = tokenize_pairs(tokenizer, ["the happy day it was"], [["we saw some news about town"]], 64, budgets=[2, 3])
    assert _words(tokenizer, enc.input_ids[0]) == ["[CLS]", "the", "happy", "[SEP]", "we", "saw", "some", "[SEP]"]


def test_longest_first_matches_hugging_face(tokenizer):
    a, b = "the happy day it was and then we saw", "some news about town"
    for max_length in (6, 9, 12, 40):
        ours = tokenize_pairs(tokenizer, [a], [[b]], max_length).input_ids[0]
        theirs = tokenizer(a, b, truncation="longest_first", max_length=max_length)["input_ids"]
        assert ours == theirs, max_length
    assert _longest_first([10, 3], 8) == [5, 3] and _longest_first([4, 4], 8) == [4, 4]


def test_several_pair_columns_join_with_the_separator(tokenizer):
    enc = tokenize_pairs(tokenizer, ["the day"], [["happy"], ["scared"]], 32)
    assert _words(tokenizer, enc.input_ids[0]) == ["[CLS]", "the", "day", "[SEP]", "happy", "[SEP]", "scared", "[SEP]"]
    assert enc.token_type_ids[0] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_the_pair_example_runs_end_to_end(tmp_path, cli):
    """configs/rule-pairs.yaml through `kagglemlc run` with a tiny model (for time): the pair reaches the model as
    segment ids, and the submission is valid."""
    model = make_encoder(tmp_path / "bert", "bert")
    overrides = [
        f"model.name={model}", f"output_dir={tmp_path / 'run'}", f"submission.dir={tmp_path / 'subs'}",
        "train.epochs=3", "train.lr=5e-3", "train.batch_size=16", "train.precision=no",
    ]  # fmt: skip
    seen = []
    forward = torch.nn.Module.__call__

    def spy(module, *args, **kwargs):
        if type(module).__name__.endswith("ForSequenceClassification"):
            seen.append("token_type_ids" in kwargs and int(kwargs["token_type_ids"].max()) == 1)
        return forward(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "__call__", spy)
        code, _, err = cli("run", ROOT / "configs" / "rule-pairs.yaml", *overrides)
    assert code == 0, err
    assert seen and all(seen)  # every forward pass read the second segment's ids
    sub = pd.read_csv(next((tmp_path / "subs").glob("run-*.csv")))
    sample = pd.read_csv(ROOT / "examples" / "rule-pairs" / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) and sub["row_id"].tolist() == sample["row_id"].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_a_decoder_pair_is_one_text_with_its_eos_between_the_segments(tmp_path, arch):
    """A decoder's template marks no pair boundary (<s> A B): its EOS goes between the segments, no segment ids, and
    the budgets and longest_first count it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_decoder(tmp_path / arch, arch))
    bos = [tokenizer.bos_token] if tokenizer("the")["input_ids"][0] == tokenizer.bos_token_id else []
    eos = tokenizer.eos_token
    enc = tokenize_pairs(tokenizer, ["the happy day"], [["we saw news"]], max_length=32)
    words = [w.lstrip("Ġ") for w in _words(tokenizer, enc.input_ids[0])]
    assert words == [*bos, "the", "happy", "day", eos, "we", "saw", "news"] and enc.token_type_ids is None
    a, b, c = "the happy day it was", "we saw some news about town", "scared"
    enc = tokenize_pairs(tokenizer, [a], [[b], [c]], 64, budgets=[2, 3, 1])
    words = [w.lstrip("Ġ") for w in _words(tokenizer, enc.input_ids[0])]
    assert words == [*bos, "the", "happy", eos, "we", "saw", "some", eos, "scared"]
    for max_length in (6, 8, 11):
        ids = tokenize_pairs(tokenizer, [a], [[b]], max_length).input_ids[0]
        assert len(ids) == max_length and tokenizer.eos_token_id in ids


def test_the_pair_example_runs_end_to_end_on_a_lora_decoder(tmp_path, cli):
    """configs/rule-pairs.yaml through `kagglemlc run` with a tiny Llama and LoRA: every forward pass reads rule, EOS,
    comment; the submission is valid."""
    model = make_decoder(tmp_path / "llama", "llama")
    overrides = [
        f"model.name={model}", "model.kind=decoder", "adapter.method=lora", "adapter.r=4", "train.epochs=2",
        f"output_dir={tmp_path / 'run'}", f"submission.dir={tmp_path / 'subs'}", "train.precision=no",
    ]  # fmt: skip
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(model).eos_token_id
    seen = []
    forward = torch.nn.Module.__call__

    def spy(module, *args, **kwargs):
        if type(module).__name__ == "LlamaForSequenceClassification":
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()
            seen.append(all(eos in row[keep].tolist() for row, keep in zip(ids, mask, strict=True)))
        return forward(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "__call__", spy)
        code, _, err = cli("run", ROOT / "configs" / "rule-pairs.yaml", *overrides)
    assert code == 0, err
    assert seen and all(seen)
    sub = pd.read_csv(next((tmp_path / "subs").glob("run-*.csv")))
    sample = pd.read_csv(ROOT / "examples" / "rule-pairs" / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) and sub["row_id"].tolist() == sample["row_id"].tolist()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.segment_budgets=[10]"], "1 budgets for 2 segment"),
        (["model.max_length=auto"], "set it for text pairs"),
        (["model.truncation=head_tail"], "text pairs keep each segment's first tokens"),
    ],
)
def test_pair_settings_that_cannot_work_are_one_line(overrides, message):
    with pytest.raises(KaggleMLCError, match=message):
        load_config(ROOT / "configs" / "rule-pairs.yaml", overrides)


def test_pair_settings_mark_training():
    """Editing the pair column or the budgets changes what the models read: the train stage's settings change."""
    from kagglemlc.data.experiment import stage_settings

    base = load_config(ROOT / "configs" / "rule-pairs.yaml")
    two_pairs = ["competition.text_pair_column=[body, rule]", "model.segment_budgets=null"]
    edits = [["model.segment_budgets=[20, 28]"], two_pairs]
    for edit in edits:
        edited = load_config(ROOT / "configs" / "rule-pairs.yaml", edit)
        assert stage_settings(edited)["train"] != stage_settings(base)["train"]
        assert stage_settings(edited)["tune-thresholds"] == stage_settings(base)["tune-thresholds"]
