"""task span: the metrics against hand-computed cases (SQuAD's normalisation included), offsets back to the exact
characters, windows over a long context, a toy span task learned through `kagglemlc run` and reloaded to the same
spans, fold and model ensembles that average logits, decoders with every adapter, and the example competition end
to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FILLER
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.data.spans import read_spans
from kagglemlc.scoring.spans import (
    SpanLogits,
    average_logits,
    best_span,
    exact_match,
    normalize_answer,
    span_score,
    token_f1,
    word_jaccard,
)
from kagglemlc.tasks.span import SpanWindows
from tiny_decoders import make_decoder
from tiny_models import make_encoder, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["happy", "furious", "scared"]


def run_cli(*args) -> tuple[int, str, str]:
    """`kagglemlc ARGS` through the real entry point, for module-scoped fixtures (the `cli` fixture is per test)."""
    import contextlib
    import io
    import sys

    from kagglemlc.cli import main

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["kagglemlc", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


# ---- metrics ---------------------------------------------------------------------------------------


def test_word_jaccard_is_tweet_sentiment_extractions():
    assert word_jaccard("Sooo SAD", "sooo sad") == 1.0
    assert word_jaccard("i am sad", "sad") == pytest.approx(1 / 3)
    assert word_jaccard("a b c", "b c d") == pytest.approx(2 / 4)
    assert word_jaccard("sad!", "sad") == 0.0  # words as split on whitespace: punctuation stays
    assert word_jaccard("", "") == 1.0 and word_jaccard("x", "") == 0.0


def test_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and THE fig") == "apple pear and fig"
    assert exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # f1: precision 1/2 ("tower" of "tower paris"), recall 1/2 ("eiffel tower") → 0.5
    assert token_f1("tower Paris", "the Eiffel Tower") == pytest.approx(0.5)
    # repeats count: predicted "a a b" → "b" (articles gone); truth "b b" → common 1, p 1, r 1/2 → 2/3
    assert token_f1("a a b", "b b") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert span_score("f1", ["tower Paris", "Eiffel"], ["the Eiffel Tower", "Eiffel"]) == pytest.approx(0.75)


def test_a_span_metric_needs_a_span_task():
    with pytest.raises(KaggleMLCError, match="metric 'exact_match' scores span answers"):
        load_config(ROOT / "configs" / "demo.yaml", ["competition.metric=exact_match"])
    with pytest.raises(KaggleMLCError, match="cannot score a span task"):
        load_config(ROOT / "configs" / "tweet-spans.yaml", ["competition.metric=f1_macro"])


# ---- decoding and offsets --------------------------------------------------------------------------


def test_best_span_keeps_start_before_end_and_the_token_limit():
    context = "one two three four"
    logits = SpanLogits.empty(len(context))
    for at, value in ((0, 1.0), (4, 3.0), (8, 0.5), (14, 0.0)):  # token starts: one two three four
        logits.start[at] = value
    for at, value in ((3, 2.9), (7, 0.2), (13, 2.0), (18, 2.5)):  # token ends
        logits.end[at] = value
    # the best start is "two" (3.0) and the best end is "one"'s (2.9), but it lies before: "two three four" (5.5)
    assert best_span(context, logits, max_answer_tokens=5) == ("two three four", 5.5, 4, 18)
    assert best_span(context, logits, max_answer_tokens=2)[0] == "two three"  # 5.0: "four" is a third token
    assert best_span(context, logits, max_answer_tokens=1)[0] == "one"  # 3.9 beats "two" alone (3.2)
    logits.null = 100.0
    assert best_span(context, logits, 5, allow_empty=True)[0] == "" and best_span(context, logits, 5)[0] != ""


@pytest.fixture
def spaced_tokenizer(tmp_path):
    """A whitespace word-level tokenizer: every word maps somewhere (UNK too) with its exact character offsets."""
    return make_tokenizer(tmp_path / "tok")


@pytest.mark.parametrize(
    "context", ["café  déjà vu 🙂 the end", "  leading spaces and\ttabs  ", "emoji 🙂🙂 then   happy   day"]
)
def test_offsets_map_back_to_the_exact_characters(spaced_tokenizer, context):
    windows = SpanWindows(spaced_tokenizer, [context], ["joy"], max_length=64, stride=8)
    words = [(i, w) for i, w in enumerate(context.split())]
    pieces = []
    for w in windows.windows_of[0]:
        for (a, b), inside in zip(windows.offsets[w], windows.in_context[w], strict=True):
            if inside:
                pieces.append(context[a:b])
    assert pieces == [w for _, w in words]  # each token's offsets cut exactly its word out of the context
    # a span decoded from its tokens' logits is the context's own characters, spaces inside it kept
    target = context.split()[-2:]
    start = context.index(target[0], len(context) - len(" ".join(target)) - 4)
    end = context.rindex(target[1]) + len(target[1])
    logits = SpanLogits.empty(len(context))
    w = windows.windows_of[0][0]
    start_logits = np.zeros(len(windows.offsets[w]))
    end_logits = np.zeros(len(windows.offsets[w]))
    for i, (a, b) in enumerate(windows.offsets[w]):
        start_logits[i] = 9.0 if windows.in_context[w][i] and a == start else 0.0
        end_logits[i] = 9.0 if windows.in_context[w][i] and b == end else 0.0
    logits.add_window(windows.offsets[w], windows.in_context[w], start_logits, end_logits)
    assert best_span(context, logits, 10)[0] == context[start:end]


def test_windows_cover_a_long_context_and_find_the_answer_in_any_of_them(spaced_tokenizer):
    words = [FILLER[i % len(FILLER)] for i in range(120)]
    for at in (3, 60, 115):  # the answer early, in the middle, at the end
        context_words = [*words]
        context_words[at] = "happy"
        context = " ".join(context_words)
        start = len(" ".join(context_words[:at])) + (1 if at else 0)
        windows = SpanWindows(spaced_tokenizer, [context], ["joy"], max_length=24, stride=6)
        assert len(windows.windows_of[0]) > 5
        covered = {o for w in windows.windows_of[0] for o, inside in
                   zip(windows.offsets[w], windows.in_context[w], strict=True) if inside}  # fmt: skip
        assert {o[0] for o in covered} == {m.start() for m in __import__("re").finditer(r"\S+", context)}
        targets = windows.targets(np.array([[start, start + len("happy")]]))
        holding = [w for w in windows.windows_of[0] if targets[w, 0] > 0]
        assert holding, at  # at least one window holds the answer, with its token as start and end
        for w in holding:
            a, b = windows.offsets[w][targets[w, 0]]
            assert context[a:b] == "happy" and targets[w, 0] == targets[w, 1]
        assert all(tuple(targets[w]) == (0, 0) for w in windows.windows_of[0] if w not in holding)


def test_average_logits_is_per_character_and_nan_where_a_member_has_no_boundary():
    a, b = SpanLogits.empty(5), SpanLogits.empty(5)
    a.start[[0, 2]] = [1.0, 3.0]
    b.start[[0, 3]] = [3.0, 1.0]
    a.null, b.null = 1.0, 3.0
    mean = average_logits([a, b], [0.5, 0.5])
    assert mean.start[0] == 2.0 and np.isnan(mean.start[2]) and np.isnan(mean.start[3]) and mean.null == 2.0


# ---- a toy span task through the real command line --------------------------------------------------


def span_rows(n: int, seed: int, prefix: str, length: tuple[int, int] = (4, 10)) -> pd.DataFrame:
    """Contexts of filler words holding every emotion word once; the answer is the word after the marker 'then'."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = [str(w) for w in rng.choice([w for w in FILLER if w != "then"], size=rng.integers(*length))]
        for word in rng.permutation(WORDS):
            words.insert(int(rng.integers(0, len(words) + 1)), str(word))
        answer = str(rng.choice(WORDS))
        words.insert(words.index(answer), "then")
        rows.append({"id": f"{prefix}{i:04d}", "context": " ".join(words), "answer": answer})
    return pd.DataFrame(rows)


def span_competition(folder: Path, model: Path | str, n_train: int = 160, **model_settings) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train, test = span_rows(n_train, 0, "r"), span_rows(24, 1, "t")
    train.to_csv(folder / "train.csv", index=False)
    test[["id", "context"]].to_csv(folder / "test.csv", index=False)
    test[["id"]].assign(answer="").to_csv(folder / "sample_submission.csv", index=False)
    (folder / "truth.csv").write_text(test.to_csv(index=False))
    config = {
        "competition": {"train": "train.csv", "test": "test.csv", "sample_submission": "sample_submission.csv",
                        "task": "span", "metric": "exact_match"},
        "cv": {"folds": 2},
        "model": {"name": str(model), "max_length": 24, "doc_stride": 6, **model_settings},
        "train": {"epochs": 12, "lr": 3e-3, "batch_size": 16, "precision": "no"},
        "output_dir": "run",
        "submission": {"dir": "subs"},
    }  # fmt: skip
    (folder / "kagglemlc.yaml").write_text(yaml.safe_dump(config))
    return folder / "kagglemlc.yaml"


TINY = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
"""A tiny encoder wide enough to learn "the word after `then`" (a positional relation) in a few hundred steps."""


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """The toy task trained once through `kagglemlc run` with a tiny random encoder (windows: the longer contexts
    exceed max_length). Early stopping is off: the positional relation is learned only after a long plateau."""
    folder = tmp_path_factory.mktemp("span")
    cfg = span_competition(folder, make_encoder(folder / "bert", **TINY), n_train=320)
    settings = yaml.safe_load(cfg.read_text())
    settings["train"].update(epochs=50, lr=3e-3, early_stopping_patience=None)
    settings["model"].update(max_length=14, doc_stride=4)  # [CLS] 12 tokens [SEP]: the longer contexts get windows
    cfg.write_text(yaml.safe_dump(settings))
    longest = pd.read_csv(folder / "train.csv")["context"].str.split().str.len().max()
    assert longest > 12
    code, _, err = run_cli("run", cfg)
    assert code == 0, err
    return folder, cfg


def test_a_toy_span_task_is_learned_to_high_exact_match(learned):
    folder, _ = learned
    tuned = json.loads((folder / "run" / "thresholds.json").read_text())
    assert tuned["cv_tuned"] >= 0.9, tuned  # out of fold: the word after "then", among three emotion words
    submission = pd.read_csv(next((folder / "subs").glob("run-*.csv")), dtype=str, keep_default_na=False)
    truth = pd.read_csv(folder / "truth.csv", dtype=str)
    assert submission["id"].tolist() == truth["id"].tolist()
    assert span_score("exact_match", submission["answer"].tolist(), truth["answer"].tolist()) >= 0.9


def test_fold_ensembles_average_logits_and_reload_gives_the_same_spans(learned):
    folder, cfg = learned
    run = folder / "run"
    data = load_competition(load_config(cfg).competition)
    folds = [read_spans(run / f"fold{k}" / "test.parquet", data.test_ids) for k in range(2)]
    combined, combined_logits = read_spans(run / "test.parquet", data.test_ids)
    mean = average_logits([folds[0][1][3], folds[1][1][3]])
    np.testing.assert_allclose(combined_logits[3].start, mean.start, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(combined_logits[3].end, mean.end, rtol=1e-6, equal_nan=True)
    # the text is decoded from the averaged logits, not voted from the folds' texts
    assert combined["text"][3] == best_span(data.test_texts[3], mean, 30)[0]
    before = pd.read_parquet(run / "fold0" / "test.parquet")
    (run / "fold0" / "test.parquet").unlink()
    code, _, err = run_cli("predict", cfg, "--fold", "0")
    assert code == 0, err
    after = pd.read_parquet(run / "fold0" / "test.parquet")
    assert after["text"].tolist() == before["text"].tolist()
    np.testing.assert_allclose(np.concatenate(after["start_logits"]), np.concatenate(before["start_logits"]), atol=1e-5)


def test_model_ensembles_average_logits_with_weights_fitted_out_of_fold(learned, tmp_path):
    """A second experiment (another seed, fewer epochs): the blend averages the two models' logits per character
    with weights fitted on the decoded out-of-fold spans."""
    folder, cfg = learned
    other = folder / "other.yaml"
    settings = yaml.safe_load(cfg.read_text())
    train = {**settings["train"], "seed": 7, "epochs": 10}
    other.write_text(yaml.safe_dump({**settings, "train": train, "output_dir": "run-b"}))
    code, _, err = run_cli("train", other)
    assert code == 0, err
    code, _, err = run_cli("ensemble", cfg, other, "--name", "both")
    assert code == 0, err
    blend = folder / "blend-both"
    weights = yaml.safe_load((blend / "config.yaml").read_text())["meta"]["ensemble"]["weights"]
    assert len(weights) == 2 and sum(weights) == pytest.approx(1.0)
    data = load_competition(load_config(cfg).competition)
    members = [read_spans(folder / r / "test.parquet", data.test_ids)[1] for r in ("run", "run-b")]
    _, blended = read_spans(blend / "test.parquet", data.test_ids)
    expected = average_logits([members[0][0], members[1][0]], weights)
    np.testing.assert_allclose(blended[0].start, expected.start, rtol=1e-5, equal_nan=True)
    code, _, err = run_cli("submit", blend / "config.yaml")
    assert code == 0, err


# ---- user errors -------------------------------------------------------------------------------------


def test_answers_not_in_their_context_are_one_line_or_kept_as_no_answer(tmp_path):
    cfg = span_competition(tmp_path, tmp_path / "unused")
    train = pd.read_csv(tmp_path / "train.csv")
    train.loc[[2, 5], "answer"] = "nowhere"
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(KaggleMLCError, match=r"2 answers are not in their context \(line 4: 'nowhere'; line 7"):
        load_competition(load_config(cfg).competition)
    data = load_competition(load_config(cfg, ["competition.allow_no_answer=true"]).competition)
    assert data.y[[2, 5], 0].tolist() == [0, 0] and data.answer_spans[2].tolist() == [0, 0]


def test_answer_offsets_are_read_where_the_data_gives_them(tmp_path):
    cfg = span_competition(tmp_path, tmp_path / "unused")
    train = pd.read_csv(tmp_path / "train.csv")
    train["context"] = "happy and then happy"
    train["answer"] = "happy"
    train["answer_start"] = 15  # the second "happy", not the first occurrence
    train.to_csv(tmp_path / "train.csv", index=False)
    data = load_competition(load_config(cfg, ["competition.answer_start_column=answer_start"]).competition)
    assert data.answer_spans[0].tolist() == [15, 20]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.max_length=auto"], "set it for task span"),
        (["model.doc_stride=40"], "must be under half of model.max_length"),
        (["predict.stride=8"], "task span reads windows itself"),
        (["train.seeds=[1, 2]"], "not with task span yet"),
    ],
)
def test_span_settings_that_cannot_work_are_one_line(overrides, message):
    with pytest.raises(KaggleMLCError, match=message):
        load_config(ROOT / "configs" / "tweet-spans.yaml", overrides)


# ---- decoders, every adapter ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "method", "head"),
    [
        ("llama", "lora", "score"),
        ("gemma", "head", "score"),
        ("qwen2", "qlora", "score"),
        ("gpt2", "ia3", "qa_outputs"),
    ],
)
def test_decoders_train_a_start_end_head_with_every_adapter(tmp_path, cli, arch, method, head):
    """A two-logit token head where transformers' QA class would not load the pretrained body (Llama, Qwen2) or has
    none (Gemma); GPT-2's own QA class. The reloaded folds predict what training wrote."""
    import torch
    from transformers import AutoModelForCausalLM

    from kagglemlc.models.build import build_model

    model = make_decoder(tmp_path / arch, arch)
    cfg_path = span_competition(tmp_path / "comp", model, n_train=40, kind="decoder")
    overrides = [f"adapter.method={method}", "adapter.r=4", "train.epochs=2"]
    cfg = load_config(cfg_path, overrides)
    built = build_model(cfg, ["answer"], "span")
    base = built.get_base_model() if hasattr(built, "get_base_model") else built
    pretrained = AutoModelForCausalLM.from_pretrained(model).get_input_embeddings().weight
    assert torch.equal(base.get_input_embeddings().weight.float(), pretrained.float())  # the body is the pretrained one
    assert hasattr(base, head)
    code, _, err = cli("run", cfg_path, *overrides)
    assert code == 0, err
    run = tmp_path / "comp" / "run"
    written = pd.read_parquet(run / "fold0" / "test.parquet")
    code, _, err = cli("predict", cfg_path, *overrides, "--fold", "0")
    assert code == 0, err
    assert pd.read_parquet(run / "fold0" / "test.parquet")["text"].tolist() == written["text"].tolist()


# ---- the example competition -------------------------------------------------------------------------


def test_the_tweet_example_runs_end_to_end(tmp_path, cli):
    """configs/tweet-spans.yaml through `kagglemlc run` with a tiny model (for time): a valid submission of spans
    of each test tweet, in the sample submission's order."""
    model = make_encoder(tmp_path / "bert", "bert")
    overrides = [f"model.name={model}", f"output_dir={tmp_path / 'run'}", f"submission.dir={tmp_path / 'subs'}",
                 "train.epochs=2", "train.lr=3e-3", "train.precision=no"]  # fmt: skip
    code, _, err = cli("run", ROOT / "configs" / "tweet-spans.yaml", *overrides)
    assert code == 0, err
    sub = pd.read_csv(next((tmp_path / "subs").glob("run-*.csv")), dtype=str, keep_default_na=False)
    test = pd.read_csv(ROOT / "examples" / "tweet-spans" / "test.csv", dtype=str)
    assert list(sub.columns) == ["textID", "selected_text"] and sub["textID"].tolist() == test["textID"].tolist()
    assert all(span in text for span, text in zip(sub["selected_text"], test["text"], strict=True))
    cv = json.loads((tmp_path / "run" / "thresholds.json").read_text())
    assert cv["metric"] == "jaccard" and 0 <= cv["cv_tuned"] <= 1


# ---- zero-shot with an instruct model ------------------------------------------------------------------


def test_snap_to_context_keeps_a_copied_answer_and_maps_the_rest_onto_the_context():
    from kagglemlc.tasks.span import snap_to_context

    context = "the day was happy and then  we saw news"
    assert snap_to_context(" happy and then ", context) == "happy and then"
    assert snap_to_context('"saw the news"', context) == "saw news"  # the run sharing most words (Jaccard 2/3)
    assert snap_to_context("Happy", context) == "happy"
    assert snap_to_context("nothing like it", context) == ""


def test_zero_shot_spans_are_substrings_of_their_context(tmp_path, cli):
    """An instruct model (model.kind generative) zero-shot on a span task: every answer, generated or snapped, is a
    span of its context, scored with the competition metric; training such a config is one line."""
    from tiny_decoders import make_chat_decoder

    model = make_chat_decoder(tmp_path / "chat")
    cfg = span_competition(tmp_path / "comp", model, n_train=20, kind="generative")
    code, _, err = cli("zero-shot", cfg, "generation.max_new_tokens=4")
    assert code == 0, err
    out = tmp_path / "comp" / "run" / "zero-shot"
    frame = pd.read_parquet(out / "answers.parquet")
    data = load_competition(load_config(cfg).competition)
    contexts = dict(zip(data.train_ids.astype(str), data.train_texts, strict=True))
    assert len(frame) == 20 and all(span in contexts[i] for i, span in zip(frame["id"], frame["span"], strict=True))
    assert (frame["span"] != "").any() and (frame["span"] != frame["answer"]).any()  # some snapped onto the context
    metrics = json.loads((out / "metrics.json").read_text())
    expected = span_score("exact_match", frame["span"].tolist(), frame["truth"].tolist())
    assert metrics["metric"] == pytest.approx(expected)
    assert metrics["copied_from_context"] + metrics["snapped_to_context"] == 20
    code, _, err = cli("train", cfg)
    assert code == 2 and "runs `kagglemlc zero-shot` only" in err


def test_a_span_fold_stopped_mid_training_resumes_to_the_same_predictions(tmp_path, monkeypatch):
    """The loop's checkpoints carry a span task as any other: stopped after its second evaluation and resumed, fold 0
    writes the out-of-fold spans and logits of the run that was never stopped."""
    from kagglemlc.stages.train import FoldTrainer
    from kagglemlc.stages.train import train as run_train

    model = make_encoder(tmp_path / "bert")
    overrides = ["train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=1"]
    whole = load_config(span_competition(tmp_path / "whole", model, n_train=48), overrides)
    run_train(whole, 0)
    stopped = load_config(span_competition(tmp_path / "stopped", model, n_train=48), overrides)
    evaluate, calls = FoldTrainer.evaluate, []

    def stop_after_two(self, train_loss):
        result = evaluate(self, train_loss)
        calls.append(self.progress.step)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return result

    with monkeypatch.context() as mp:
        mp.setattr(FoldTrainer, "evaluate", stop_after_two)
        with pytest.raises(KeyboardInterrupt):
            run_train(stopped, 0)
    assert calls == [2, 4] and (stopped.run_dir / "fold0" / "checkpoint").is_dir()
    loss_of, steps = FoldTrainer.loss_of, []
    with monkeypatch.context() as mp:
        mp.setattr(FoldTrainer, "loss_of", lambda self, rows: steps.append(1) or loss_of(self, rows))
        run_train(stopped, 0)
    assert len(steps) == 2  # the micro-batches of steps 5 and 6: resumed, not trained again
    expected = pd.read_parquet(whole.run_dir / "fold0" / "oof.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(stopped.run_dir / "fold0" / "oof.parquet"), expected)
