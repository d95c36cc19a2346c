"""Generative models (`model.kind: generative`): prompts, the answer parser, SFT through `kagglemlc train`,
per-label probabilities, zero-shot, every adapter, and the whole chain with a blend.

A tiny random Llama with a chat template (tests/tiny_decoders.make_chat_decoder) learns the toy task of
conftest (each label is a keyword planted in the text) on CPU.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from sklearn.metrics import f1_score, roc_auc_score

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.engine.batching import collate
from kagglemlc.models.build import build_tokenizer
from kagglemlc.tasks.answers import AnswerParser
from kagglemlc.tasks.generate import GenerativeTask
from test_decoder import one_thread  # noqa: F401  (the module-wide one-thread fixture)
from tiny_decoders import make_chat_decoder, make_decoder

PARSER_LABELS = ["joy", "anger", "fear", "self-harm", "love_it"]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    return make_chat_decoder(tmp_path_factory.mktemp("chat") / "llama")


# --- the parser ------------------------------------------------------------------------------
def _mess_up_case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c for c, f in zip(text, flips))


@st.composite
def written_answers(draw):
    """A random subset of labels, in any order, casing and spacing, with any of the separators models use."""
    chosen = draw(st.lists(st.sampled_from(range(len(PARSER_LABELS))), unique=True, min_size=1))
    parts = []
    for i in chosen:
        name = PARSER_LABELS[i]
        spaced = draw(st.sampled_from([" ", "  ", "\t"])).join(name.replace("-", " ").replace("_", " ").split())
        name = draw(st.sampled_from([name, spaced]))
        parts.append(
            draw(st.sampled_from(["", " ", "  "])) + _mess_up_case(draw, name) + draw(st.sampled_from(["", " "]))
        )
    text = ""
    for j, part in enumerate(parts):
        sep = "" if j == 0 else draw(st.sampled_from([",", ", ", ";", " and ", "\n- ", " / ", "\n", " & "]))
        text += sep + part
    lead = draw(st.sampled_from(["", "- ", "* ", "1. ", "Labels: ", "The answer is "]))
    return set(chosen), lead + text + draw(st.sampled_from(["", ".", "!", "\n"]))


@settings(max_examples=300, deadline=None)
@given(written_answers())
def test_any_order_case_and_spacing_parses_to_the_same_set(case):
    expected, text = case
    parsed = AnswerParser(PARSER_LABELS).parse(text)
    assert set(parsed.labels) == expected, text
    assert not parsed.failed


UNKNOWN_WORD = st.text(alphabet="qxzvkwQXZVKW", min_size=1, max_size=12)  # no letter of any label name


@settings(max_examples=200, deadline=None)
@given(st.lists(UNKNOWN_WORD, min_size=1, max_size=8), st.sampled_from([" ", ", ", " and ", "\n"]))
def test_unknown_words_never_produce_a_label(words, sep):
    parsed = AnswerParser(PARSER_LABELS, {"anger": ["mad"]}).parse(sep.join(words))
    assert parsed.labels == ()
    assert parsed.failed
    assert len(parsed.unknown) == sum(1 for w in words if w.lower() not in ("and",))


@settings(max_examples=200, deadline=None)
@given(written_answers(), st.lists(UNKNOWN_WORD, max_size=5))
def test_unknown_words_around_labels_are_ignored_and_counted(case, noise):
    expected, text = case
    parsed = AnswerParser(PARSER_LABELS).parse(" ".join(noise) + " " + text + " " + " ".join(noise))
    assert set(parsed.labels) == expected
    assert len(parsed.unknown) == 2 * len(noise)


def test_synonyms_fuzzy_and_none():
    parser = AnswerParser(PARSER_LABELS, {"anger": ["mad", "really annoyed"], "love_it": ["adore"]}, cutoff=0.8)
    assert parser.parse("MAD and Really  Annoyed").labels == (1,)
    assert parser.parse("adore, joy").labels == (4, 0)
    assert parser.parse("angerr; fearr").labels == (1, 2)  # near-misses
    assert parser.parse("selfharm").labels == (3,)
    assert parser.parse("jay").labels == ()  # too far from 'joy' for the cutoff
    assert parser.parse("None.").said_none and not parser.parse("None.").failed
    assert parser.parse("").failed
    exact = AnswerParser(PARSER_LABELS, cutoff=1.0)
    assert exact.parse("angerr").labels == ()
    assert exact.parse("angerr").unknown == ("angerr",)


def test_bad_synonyms_are_one_line_errors():
    with pytest.raises(KaggleMLCError, match="generation.synonyms: 'rage' is not a label"):
        AnswerParser(PARSER_LABELS, {"rage": ["mad"]})
    with pytest.raises(KaggleMLCError, match="reads the same as label 'joy'"):
        AnswerParser(PARSER_LABELS, {"anger": ["JOY"]})


# --- prompts ---------------------------------------------------------------------------------
def _task(tmp_path: Path, model: Path, **config) -> GenerativeTask:
    cfg_path = make_competition(
        tmp_path, n_train=30, config={"model": {"name": str(model), "kind": "generative", "max_length": 8}, **config}
    )
    cfg = load_config(cfg_path)
    return GenerativeTask(cfg, build_tokenizer(cfg), load_competition(cfg.competition))


def test_chat_template_prompt_and_answer_only_loss(tmp_path, chat_model):
    task = _task(tmp_path, chat_model, generation={"system": "be brief"})
    tok = task.tokenizer
    tokens = tok.convert_ids_to_tokens(task.prompts("train")[0])
    # the chat template (BOS, system turn, user turn, assistant header), the labels listed in the prompt
    assert tokens[:2] == ["<s>", "<|system|>"] and tokens[4:6] == ["<|end|>", "<|user|>"]
    assert "joy , anger , fear" in " ".join(tokens)
    assert tokens[-2:] == ["<|end|>", "<|assistant|>"]
    # answers: labels in label order, then the end-of-turn token of the template
    p = task.prompter
    assert tok.decode(p.answer_ids([2, 0])) == "joy , fear <|end|>"
    assert tok.decode(p.answer_ids([])) == "none <|end|>"
    assert p.stop_ids[0] == tok.convert_tokens_to_ids("<|end|>")
    # texts are truncated to model.max_length tokens, the instructions never are
    long = task.prompter.prompts(["happy " * 50])[0]
    assert len(long) == len(p.prefix_ids) + 8 + len(p.suffix_ids)
    # the loss sees the answer tokens only
    enc = task.sft_encodings()
    rows = np.array([0, 1, 2])
    batch = collate(enc, rows)
    labels = task.loss_labels(batch, rows)
    for i, r in enumerate(rows):
        n_prompt = len(task.prompts("train")[r])
        kept = labels[i][labels[i] != -100].tolist()
        assert kept == enc.input_ids[r][n_prompt:]


def test_base_model_without_chat_template_gets_a_plain_prompt(tmp_path):
    model = make_decoder(tmp_path / "base", "llama")
    task = _task(tmp_path / "c", model, generation={"prompt": "Labels: {labels}\nText: {text}"})
    tok, p = task.tokenizer, task.prompter
    assert tok.chat_template is None
    assert p.prefix_ids[0] == tok.bos_token_id
    assert tok.decode(p.answer_ids([1])) == "anger </s>"  # the answer ends with EOS
    assert p.stop_ids == [tok.eos_token_id]


def test_prompt_without_text_placeholder_is_a_user_error(tmp_path, chat_model, cli):
    cfg = make_competition(
        tmp_path,
        config={"model": {"name": str(chat_model), "kind": "generative"}, "generation": {"prompt": "no text here"}},
    )
    assert cli("prepare", cfg)[0] == 0
    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 2 and "generation.prompt" in err and err.count("\n") == 1


# --- training, probabilities, zero-shot --------------------------------------------------------
TRAIN = {
    "lr": 3e-3,
    "batch_size": 16,
    "eval_batch_size": 64,
    "precision": "no",
    "early_stopping_patience": None,
    "warmup_ratio": 0.1,
}


def _generative_config(folder: Path, model: Path, n_train: int, epochs: int, method: str = "none", **extra) -> Path:
    return make_competition(
        folder,
        n_train=n_train,
        n_test=20,
        config={
            "model": {"name": str(model), "kind": "generative", "max_length": 32},
            "adapter": {"method": method, "r": 8, "alpha": 16, "dropout": 0.0},
            "generation": {"prompt": "labels: {labels} text: {text}"},
            "train": {**TRAIN, "epochs": epochs},
            **extra,
        },
    )


def test_trained_model_answers_the_held_out_rows(tmp_path, cli, chat_model):
    """SFT through the real command: held-out answers parse to the right labels, probabilities rank well."""
    cfg = _generative_config(tmp_path, chat_model, n_train=300, epochs=6)
    # zero-shot first (the untrained model, the first command in the folder): the folds are made as `prepare`
    # makes them, metrics and the parse-failure rate are written
    code, _, err = cli("zero-shot", cfg, "--sample", "40")
    assert code == 0, err
    assert (tmp_path / "run" / "folds.parquet").is_file() and "splitting as `kagglemlc prepare` does" in err
    zero = json.loads((tmp_path / "run" / "zero-shot" / "metrics.json").read_text())
    assert zero["rows"] == 40 and 0 <= zero["parse_failure_rate"] <= 1 and "parse failures" in err
    assert len(pd.read_parquet(tmp_path / "run" / "zero-shot" / "answers.parquet")) == 40

    code, _, err = cli("train", cfg, "--fold", "0")
    assert code == 0, err
    fold = tmp_path / "run" / "fold0"
    truth = toy_frame(300, seed=0).set_index("id")
    answers = pd.read_parquet(fold / "oof_answers.parquet").set_index("id")
    expected = truth.loc[answers.index, LABELS].apply(lambda r: ", ".join(n for n in LABELS if r[n]), axis=1)
    exact = (answers["labels"] == expected).mean()
    print(f"held-out rows answered exactly right: {exact:.1%} of {len(answers)}")
    assert exact >= 0.8, exact  # measured: 98% (seed 0, 6 epochs; per-label AUC 1.0, 0.998, 1.0)
    assert answers["parse_failed"].sum() == 0
    oof = pd.read_parquet(fold / "oof.parquet").set_index("id")
    assert list(oof.columns) == LABELS and oof.index.equals(answers.index)
    assert ((oof.values >= 0) & (oof.values <= 1)).all()
    aucs = [roc_auc_score(truth.loc[oof.index, n], oof[n]) for n in LABELS]
    print("per-label AUC of the probabilities:", [round(a, 3) for a in aucs])
    assert min(aucs) >= 0.9, aucs
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["answers"]["oof"]["parse_failures"] == 0 and metrics["answers"]["test"]["rows"] == 20
    assert metrics["best_metric"] >= 0.8
    test = pd.read_parquet(fold / "test.parquet")
    assert len(test) == 20 and len(pd.read_parquet(fold / "test_answers.parquet")) == 20

    # kagglemlc predict reloads the saved model and reproduces the test probabilities
    (fold / "test.parquet").unlink()
    assert cli("predict", cfg, "--fold", "0")[0] == 0
    pd.testing.assert_frame_equal(test, pd.read_parquet(fold / "test.parquet"), atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "qlora", "ia3"])
def test_adapters_train_and_reload(tmp_path, cli, chat_model, method):
    """Adapters on the causal LM: the adapter changes, the base does not, the saved fold predicts the same."""
    cfg = _generative_config(tmp_path, chat_model, n_train=60, epochs=1, method=method)
    cfg_text = Path(cfg).read_text().replace("lr: 0.003", "lr: 0.01")
    Path(cfg).write_text(cfg_text)
    assert cli("prepare", cfg)[0] == 0
    steps = ["train.max_steps=2", "train.eval_every=2"]
    code, _, err = cli("train", cfg, "--fold", "0", *steps)
    assert code == 0, err
    model_dir = tmp_path / "run" / "fold0" / "model"
    assert (model_dir / "adapter_config.json").is_file()
    assert not (model_dir / "model.safetensors").exists()  # the adapter only, never the base
    # the adapter trained: LoRA's B starts at zero, IA3's scales at one
    weights = load_file(model_dir / "adapter_model.safetensors")
    start = 0.0 if method in ("lora", "qlora") else 1.0
    moved = [k for k, v in weights.items() if ("lora_B" in k or "ia3" in k) and not torch.all(v == start)]
    assert moved, sorted(weights)
    metrics = json.loads((tmp_path / "run" / "fold0" / "metrics.json").read_text())
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    test = pd.read_parquet(tmp_path / "run" / "fold0" / "test.parquet")
    code, _, err = cli("predict", cfg, "--fold", "0")  # the config without the overrides the model was trained with
    assert code == 2 and "train.max_steps None → 2" not in err and "train.max_steps 2 → None" in err, err
    assert cli("predict", cfg, "--fold", "0", *steps)[0] == 0
    pd.testing.assert_frame_equal(test, pd.read_parquet(tmp_path / "run" / "fold0" / "test.parquet"), atol=1e-4)


def test_head_adapter_is_refused_for_generative(tmp_path, cli, chat_model):
    cfg = _generative_config(tmp_path, chat_model, n_train=30, epochs=1, method="head")
    code, _, err = cli("prepare", cfg)
    assert code == 2 and "adapter.method" in err and "generative" in err


def test_zero_shot_needs_a_generative_config(tmp_path, cli):
    cfg = make_competition(tmp_path)
    code, _, err = cli("zero-shot", cfg)
    assert code == 2 and "model.kind: generative" in err


def test_run_chain_with_thresholds_and_a_blend_with_an_encoder(tmp_path, cli, chat_model):
    """`kagglemlc run` end to end for a generative config, then a blend with an encoder experiment."""
    from tiny_models import make_encoder

    gen_cfg = _generative_config(tmp_path, chat_model, n_train=150, epochs=10)
    code, _, err = cli("run", gen_cfg)
    assert code == 0, err
    thresholds = json.loads((tmp_path / "run" / "thresholds.json").read_text())
    assert set(LABELS) <= set(thresholds["thresholds"])
    assert thresholds["cv_tuned"] >= 0.7, thresholds
    subs = list((tmp_path / "submissions").glob("run-*.csv"))
    assert len(subs) == 1 and len(pd.read_csv(subs[0])) == 20
    code, out, err = cli("report", gen_cfg, "--json")
    assert code == 0, err
    summary = json.loads(out)["experiments"][0]
    answers = summary["answers"]
    assert answers["oof"]["rows"] == 150 and answers["test"]["rows"] == 3 * 20  # every fold answers the test set
    # submission.from: answers — a label where at least 2 of the 3 folds' models named it; logged with its own CV
    oof_answers = pd.concat([pd.read_parquet(tmp_path / "run" / f"fold{k}" / "oof_answers.parquet") for k in range(3)])
    truth = toy_frame(150, seed=0).set_index("id").loc[oof_answers["id"], LABELS]
    named = np.array([[n in str(a).split(", ") for n in LABELS] for a in oof_answers["labels"]])
    assert summary["cv_answers"] == pytest.approx(f1_score(truth, named, average="macro", zero_division=0))
    code, _, err = cli("submit", gen_cfg, "submission.from=answers")
    assert code == 0, err
    voted = pd.read_csv(max((tmp_path / "submissions").glob("run-*.csv"), key=lambda p: p.stat().st_mtime_ns))
    folds = [pd.read_parquet(tmp_path / "run" / f"fold{k}" / "test_answers.parquet").set_index("id") for k in range(3)]
    for _, row in voted.iterrows():
        votes = [sum(n in str(f.loc[row["id"], "labels"]).split(", ") for f in folds) for n in LABELS]
        assert [int(row[n]) for n in LABELS] == [int(v >= 2) for v in votes]
    logged = pd.read_csv(tmp_path / "submissions" / "log.csv")
    assert logged["cv"].iloc[-1] == pytest.approx(summary["cv_answers"], abs=1e-4)
    # an encoder experiment on the same competition and folds
    raw = yaml.safe_load(gen_cfg.read_text())
    raw.pop("generation")
    raw.update(
        model={"name": str(make_encoder(tmp_path / "bert", "bert")), "max_length": 32},
        adapter={"method": "none"},
        train={"epochs": 3, "lr": 1e-3, "batch_size": 16, "precision": "no"},
        output_dir="enc",
    )
    enc_cfg = tmp_path / "enc.yaml"
    enc_cfg.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", enc_cfg)
    assert code == 0, err
    code, _, err = cli("ensemble", gen_cfg, enc_cfg, "--name", "gen-enc")
    assert code == 0, err
    blend = tmp_path / "blend-gen-enc"
    meta = yaml.safe_load((blend / "config.yaml").read_text())["meta"]["ensemble"]
    assert len(meta["members"]) == 2 and sum(meta["weights"]) == pytest.approx(1, abs=1e-5)
    assert (blend / "thresholds.json").is_file()
    code, _, err = cli("submit", blend / "config.yaml")
    assert code == 0, err


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, cli, chat_model):
    """The generative kind resumes like the others: kill -9 mid-training, same command → identical OOF and answers."""
    from test_train import _kagglemlc

    cfg = _generative_config(tmp_path, chat_model, n_train=150, epochs=4)
    base = ["train", cfg, "--fold", "0", "train.checkpoint_every=3", "train.eval_every=10"]
    for out in ("ref", "run"):
        assert cli("prepare", cfg, f"output_dir={tmp_path / out}")[0] == 0
    proc = _kagglemlc(*base, f"output_dir={tmp_path / 'ref'}")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    proc = _kagglemlc(*base)
    progress = tmp_path / "run" / "fold0" / "checkpoint" / "progress.json"
    deadline, killed_at = time.time() + 120, None
    while proc.poll() is None and time.time() < deadline:
        try:
            step = json.loads(progress.read_text())["step"]
        except (OSError, ValueError):
            time.sleep(0.002)
            continue
        if step >= 12:  # after an evaluation, before the end
            proc.send_signal(signal.SIGKILL)
            killed_at = step
            break
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed"
    out, err = _kagglemlc(*base).communicate(timeout=300)
    assert "resuming at step" in err, err[-2000:]
    for name in ("oof.parquet", "oof_answers.parquet", "test.parquet", "test_answers.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "ref" / "fold0" / name),
            pd.read_parquet(tmp_path / "run" / "fold0" / name),
            check_exact=True,  # bit-identical on CPU
        )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("no anger here, only joy", {"joy"}),
        ("not anger but joy", {"joy"}),
        ("Joy. No anger.", {"joy"}),
        ("joy, without fear", {"joy"}),
        ("there isn't any anger; fear", {"fear"}),
        ("anger and not joy", {"anger"}),
        ("no joy", set()),
    ],
)
def test_a_negated_label_is_not_a_positive(answer, expected):
    """Issue: "no anger here, only joy" parsed to anger and joy; a label after a negation, up to the end of its
    clause or a word of contrast, is not one the model said."""
    parsed = AnswerParser(PARSER_LABELS).parse(answer)
    assert {PARSER_LABELS[i] for i in parsed.labels} == expected
    assert not parsed.failed  # "no joy" says no label applies: an answer, not a parse failure


def test_votes_of_the_models_answers():
    from kagglemlc.tasks.answers import vote

    a, b, c = (np.array(m, dtype=np.int8) for m in ([[1, 0, 1]], [[1, 1, 0]], [[0, 0, 1]]))
    np.testing.assert_array_equal(vote([a, b, c], np.zeros((1, 3)), "multilabel"), [[1, 0, 1]])  # ≥ 2 of 3
    np.testing.assert_array_equal(vote([a, b], np.zeros((1, 3)), "multilabel"), [[1, 1, 1]])  # ≥ 1 of 2
    one_hot = [np.array([[1, 0, 0]]), np.array([[0, 1, 0]]), np.array([[0, 1, 0]])]
    np.testing.assert_array_equal(vote(one_hot, np.array([[0.9, 0.05, 0.05]]), "multiclass"), [[0, 1, 0]])
    tie = [np.array([[1, 0, 0]]), np.array([[0, 0, 1]])]  # one vote each: the probabilities decide
    np.testing.assert_array_equal(vote(tie, np.array([[0.2, 0.3, 0.5]]), "multiclass"), [[0, 0, 1]])
    silent = [np.zeros((1, 3), dtype=np.int8)]  # no model named a class
    np.testing.assert_array_equal(vote(silent, np.array([[0.2, 0.7, 0.1]]), "multiclass"), [[0, 1, 0]])


def test_submission_from_is_the_yaml_key_and_answers_need_a_generative_model(tmp_path):
    from kagglemlc.config import load_config, settings_dict
    from kagglemlc.core.errors import KaggleMLCError

    cfg = make_competition(tmp_path, config={"model": {"kind": "generative"}, "submission": {"from": "answers"}})
    loaded = load_config(cfg)
    assert loaded.submission.from_ == "answers" and settings_dict(loaded)["submission"]["from"] == "answers"
    assert load_config(cfg, ["submission.from=probabilities"]).submission.from_ == "probabilities"
    with pytest.raises(KaggleMLCError, match="submission.from: answers are what generative models write"):
        load_config(cfg, ["model.kind=encoder"])
