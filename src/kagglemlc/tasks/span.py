"""Span extraction (`competition.task: span`): a start/end head reads question + context windows; the answer is the
best span of the context's own characters.

Each row (question, context) is tokenised as the tokenizer's pair (the question first; a decoder's EOS between the
two, as for text pairs) and a context longer than `model.max_length` is cut into windows sharing `model.doc_stride`
tokens (Hugging Face's overflowing tokens), each token knowing its characters (offsets). Training: every window of a
row is learned, its target the answer's first and last token where the window holds the whole answer, else its first
token ("not here", as in SQuAD v2). Prediction: the windows' token logits go to the context's characters
(`scoring.spans.SpanLogits`, max where windows overlap), so folds and models average logits per character; the best
span (start ≤ end, at most `model.max_answer_tokens` tokens) is decoded from them.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.spans import answer_texts, decode_all
from kagglemlc.engine.batching import Encodings, collate, pairs_unmarked
from kagglemlc.engine.inference import gather_results, process_batches
from kagglemlc.scoring.spans import SpanLogits, span_score, word_jaccard
from kagglemlc.tasks.base import Predictions
from kagglemlc.tasks.generate import generate_answers
from kagglemlc.tasks.prompts import Prompter


class SpanWindows:
    """Every window of some rows: token ids (an `Encodings`), the row each came from, its tokens' character offsets
    and which tokens are the context's."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        contexts: list[str],
        questions: list[str] | None,
        max_length: int,
        stride: int,
    ):
        # a decoder: <s> question </s> context
        if questions is not None and pairs_unmarked(tokenizer) and tokenizer.eos_token:
            questions = [q + tokenizer.eos_token for q in questions]
        context_seq = 0 if questions is None else 1
        args = (contexts,) if questions is None else (questions, contexts)
        out = tokenizer(
            *args,
            truncation=True if questions is None else "only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        self.owner = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
        self.offsets: list[list[tuple[int, int]]] = [list(map(tuple, o)) for o in out["offset_mapping"]]
        self.in_context = [[s == context_seq for s in out.sequence_ids(i)] for i in range(len(self.owner))]
        ids = out["input_ids"]
        types = out.get("token_type_ids") if "token_type_ids" in tokenizer.model_input_names else None
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        self.enc = Encodings(ids, lengths, pad, "right", types)
        order = np.argsort(self.owner, kind="stable")
        bounds = np.searchsorted(self.owner[order], np.arange(len(contexts) + 1))
        self.windows_of = [order[bounds[r] : bounds[r + 1]] for r in range(len(contexts))]

    def targets(self, spans: np.ndarray) -> np.ndarray:
        """(windows, 2) start/end token of each window's answer; (0, 0) where the window lacks (part of) it."""
        out = np.zeros((len(self.owner), 2), dtype=np.int64)
        for w, row in enumerate(self.owner):
            a, b = spans[row]
            if b <= a:
                continue
            tokens = [i for i, inside in enumerate(self.in_context[w]) if inside]
            offsets = self.offsets[w]
            if not tokens or offsets[tokens[0]][0] > a or offsets[tokens[-1]][1] < b:
                continue
            start = next(i for i in tokens if offsets[i][1] > a)
            end = next(i for i in reversed(tokens) if offsets[i][0] < b)
            out[w] = (start, end)
        return out


def start_end_logits(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) logits of a question-answering model, or of a token classifier's two outputs per token."""
    if hasattr(output, "start_logits"):
        return output.start_logits, output.end_logits
    return output.logits[..., 0], output.logits[..., 1]


class SpanTask:
    selection = "the competition metric of the decoded spans (no thresholds)"

    def __init__(self, cfg: Config, tokenizer: PreTrainedTokenizerBase, data: CompetitionData):
        self.cfg, self.tokenizer, self.data = cfg, tokenizer, data
        self._windows: dict[str, SpanWindows] = {}

    def windows(self, split: str) -> SpanWindows:
        if split not in self._windows:
            d, m = self.data, self.cfg.model
            contexts, questions = (
                (d.train_texts, d.train_questions) if split == "train" else (d.test_texts or [], d.test_questions)
            )
            self._windows[split] = SpanWindows(self.tokenizer, contexts, questions, m.max_length, m.doc_stride)
            if split == "train":
                self._targets = torch.as_tensor(self._windows[split].targets(d.answer_spans))
        return self._windows[split]

    def train_encodings(self) -> Encodings:
        """One entry per row (what the loop batches): the length of its longest window."""
        w = self.windows("train")
        lengths = np.array([w.enc.lengths[ws].max() for ws in w.windows_of], dtype=np.int64)
        return Encodings([[]] * len(lengths), lengths, w.enc.pad_id)

    def loss(self, model: torch.nn.Module, rows: np.ndarray, device: torch.device, pad_to: int | None) -> torch.Tensor:
        """Cross-entropy of the start and of the end token over every window of `rows` (padding masked)."""
        w = self.windows("train")
        windows = np.concatenate([w.windows_of[r] for r in rows])
        batch = {k: v.to(device) for k, v in collate(w.enc, windows, pad_to).items()}
        start, end = start_end_logits(model(**batch))
        masked = batch["attention_mask"] == 0
        start, end = start.float().masked_fill(masked, -1e4), end.float().masked_fill(masked, -1e4)
        target = self._targets[windows].to(device)
        ce = torch.nn.functional.cross_entropy
        return (ce(start, target[:, 0]) + ce(end, target[:, 1])) / 2

    def logits(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> list[SpanLogits]:
        """Each row's per-character start/end logits, its windows merged (every process gets all)."""
        w = self.windows(split)
        contexts = self.data.train_texts if split == "train" else self.data.test_texts or []
        windows = np.concatenate([w.windows_of[r] for r in rows]) if len(rows) else np.zeros(0, np.int64)
        pad = 8 if accelerator.device.type == "cuda" else None
        results = []
        model.eval()
        with torch.inference_mode(), accelerator.autocast():
            for positions in process_batches(w.enc.lengths[windows], batch_size, accelerator):
                chosen = windows[positions]
                batch = {k: v.to(accelerator.device) for k, v in collate(w.enc, chosen, pad).items()}
                start, end = (t.float().cpu().numpy() for t in start_end_logits(model(**batch)))
                results += [(int(c), start[i, : w.enc.lengths[c]], end[i, : w.enc.lengths[c]]) for i, c in
                            enumerate(chosen)]  # fmt: skip
        by_window = {c: (s, e) for c, s, e in gather_results(results, accelerator)}
        out = []
        for r in rows:
            row = SpanLogits.empty(len(contexts[r]))
            for c in w.windows_of[r]:
                row.add_window(w.offsets[c], w.in_context[c], *by_window[int(c)])
            out.append(row)
        return out

    def predict(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> Predictions:
        """The decoded spans of `rows` (Predictions.decided: their texts, scores and per-character logits)."""
        logits = self.logits(model, split, rows, accelerator, batch_size)
        contexts = self.data.train_texts if split == "train" else self.data.test_texts or []
        decided = self.decode([contexts[r] for r in rows], logits)
        if split == "train":
            decided.truth = answer_texts(self.data, rows)
        return Predictions(np.zeros((len(rows), 1), np.float32), decided=decided)

    def decode(self, contexts: list[str], logits: list[SpanLogits]) -> SpanPredictions:
        m, allow_empty = self.cfg.model, self.cfg.competition.allow_no_answer
        return SpanPredictions(decode_all(contexts, logits, m.max_answer_tokens, allow_empty), logits)

    def selection_metric(self, y: np.ndarray, predicted: Predictions) -> float:
        decided = predicted.decided
        return span_score(self.cfg.competition.metric, list(decided.frame["text"]), decided.truth)

    def summary(self, predicted: Predictions) -> dict[str, Any]:
        frame = predicted.decided.frame
        return {"empty_answers": int((frame["text"] == "").sum())}

    def describe(self, entry: dict[str, Any]) -> str:
        return f"of the decoded spans ({entry.get('empty_answers', 0)} empty)"


class SpanPredictions:
    """Decoded spans (`frame`: text, score, start, end) and the logits they came from, row by row."""

    def __init__(self, frame: pd.DataFrame, logits: list[SpanLogits], truth: list[str] | None = None):
        self.frame, self.logits, self.truth = frame, logits, truth


def snap_to_context(answer: str, context: str) -> str:
    """A generated answer as a substring of its context: itself where it is one, otherwise the run of the context's
    words (as many as the answer's, give or take two) that shares the most words with it; "" when none does."""
    answer = answer.strip().strip("\"'`").strip()
    if not answer or answer in context:
        return answer
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", context)]
    wanted = set(answer.lower().split())
    n = len(answer.split())
    best, best_score = "", 0.0
    for size in range(max(1, n - 2), n + 3):
        for i in range(0, max(len(words) - size + 1, 0)):
            text = context[words[i][0] : words[i + size - 1][1]]
            score = word_jaccard(text, answer)
            if score > best_score and wanted & set(text.lower().split()):
                best, best_score = text, score
    return best


def zero_shot_spans(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase,
    model: torch.nn.Module,
    data: CompetitionData,
    rows: np.ndarray,
    accelerator: Accelerator,
) -> pd.DataFrame:
    """An instruct model's answers for `rows` of the training file, prompted with the question and the context,
    each snapped to a substring of its context. Returns id, answer (generated), span (snapped), truth."""
    prompter = Prompter(cfg, tokenizer, data.label_names, "span")
    questions = data.train_questions
    texts = [
        (f"Question: {questions[r]}\n" if questions is not None else "") + f"Context: {data.train_texts[r]}"
        for r in rows
    ]
    answers = generate_answers(
        model, prompter, prompter.prompts(texts), accelerator, cfg.train.eval_batch_size,
        cfg.generation.max_new_tokens or cfg.model.max_answer_tokens + 4,
    )  # fmt: skip
    return pd.DataFrame(
        {
            "id": data.train_ids[rows].astype(str),
            "answer": answers,
            "span": [snap_to_context(a, data.train_texts[r]) for a, r in zip(answers, rows, strict=True)],
            "truth": answer_texts(data, rows),
        }
    )
