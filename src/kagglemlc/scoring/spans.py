"""Span extraction, scored and decoded: the answer is a substring of a context (Tweet Sentiment Extraction, chaii,
SQuAD-style question answering).

    boundaries = SpanLogits.empty(len(context))       # a model's start/end logits, per character of the context
    text, score = best_span(context, logits, max_answer_tokens=30)
    span_score("jaccard", predicted_texts, true_texts)

A model reads tokens, but what every fold and every model of an ensemble shares is the context's characters: a
token's start logit is kept at the character where the token starts, its end logit at the character where it ends
(exclusive), every other character holds NaN. Windows of one context and folds of one model fill the same positions
(merged by max over windows, averaged over folds); models with other tokenizers agree wherever their boundaries do
(words), so an ensemble averages logits where all its members have a boundary — never texts.

Metrics, each the mean over rows:
- `jaccard`: Tweet Sentiment Extraction's word-level Jaccard (lower-cased, split on whitespace; two empty texts: 1).
- `exact_match` and `f1`: SQuAD v1.1's, on SQuAD's normalisation (lower case, punctuation and the articles a, an,
  the removed, whitespace collapsed); f1 over the normalised words, counted with repeats.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

SPAN_METRICS = ("jaccard", "exact_match", "f1")


def word_jaccard(a: str, b: str) -> float:
    """Tweet Sentiment Extraction's metric for one row."""
    x, y = set(a.lower().split()), set(b.lower().split())
    if not x and not y:
        return 1.0
    common = len(x & y)
    return common / (len(x) + len(y) - common)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(predicted: str, truth: str) -> float:
    return float(normalize_answer(predicted) == normalize_answer(truth))


def token_f1(predicted: str, truth: str) -> float:
    """SQuAD's F1 of the normalised words (both empty: 1; one empty: 0)."""
    p, t = normalize_answer(predicted).split(), normalize_answer(truth).split()
    if not p or not t:
        return float(p == t)
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


_ROW = {"jaccard": word_jaccard, "exact_match": exact_match, "f1": token_f1}


def span_score(metric: str, predicted: list[str], truth: list[str]) -> float:
    """The mean of `metric` over rows (higher is better)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted spans for {len(truth)} answers")
    if not truth:
        return float("nan")
    row = _ROW[metric]
    return float(np.mean([row(p, t) for p, t in zip(predicted, truth, strict=True)]))


def span_cv(metric: str, predicted: list[str], truth: list[str], fold: np.ndarray, n_folds: int) -> dict:
    """thresholds.json of a span experiment: nothing is tuned, so the CV of the out-of-fold spans is the number
    untuned, tuned and nested alike; each fold's beside it."""
    per_fold = [
        span_score(metric, [predicted[i] for i in rows], [truth[i] for i in rows])
        for rows in (np.flatnonzero(fold == k) for k in range(n_folds))
    ]
    cv = span_score(metric, predicted, truth)
    return {"metric": metric, "task": "span", "cv_at_0.5": cv, "cv_tuned": cv, "cv_nested": cv, "per_fold": per_fold}


@dataclass
class SpanLogits:
    """One context's start/end logits by character: `start[c]` for a span starting at character c, `end[e]` for one
    ending before character e (so len(context) + 1 positions each), NaN where no token boundary is; `null`: the
    score of "no answer" (the windows' first-token logits: their lowest sum, as Hugging Face's squad_v2 decoding)."""

    start: np.ndarray
    end: np.ndarray
    null: float = float("nan")

    @classmethod
    def empty(cls, n_chars: int) -> SpanLogits:
        return cls(np.full(n_chars + 1, np.nan, np.float32), np.full(n_chars + 1, np.nan, np.float32))

    def add_window(
        self, offsets: list[tuple[int, int]], context: list[bool], start: np.ndarray, end: np.ndarray
    ) -> None:
        """Merges one window's token logits (max where windows overlap); `context` marks the context's tokens."""
        for i, ((a, b), inside) in enumerate(zip(offsets, context, strict=True)):
            if not inside or b <= a:
                continue
            self.start[a] = np.fmax(self.start[a], start[i])
            self.end[b] = np.fmax(self.end[b], end[i])
        null = float(start[0] + end[0])
        self.null = null if np.isnan(self.null) else min(self.null, null)


def average_logits(rows: list[SpanLogits], weights: list[float] | None = None) -> SpanLogits:
    """Several models' (or folds') logits of one context: the weighted mean where every one has a boundary, NaN
    elsewhere (np.average propagates a NaN)."""
    w = np.full(len(rows), 1 / len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    start = np.average(np.stack([r.start for r in rows]), axis=0, weights=w).astype(np.float32)
    end = np.average(np.stack([r.end for r in rows]), axis=0, weights=w).astype(np.float32)
    nulls = np.array([r.null for r in rows], dtype=np.float64)
    null = float(np.average(nulls, weights=w)) if np.isfinite(nulls).all() else float("nan")
    return SpanLogits(start, end, null)


def best_span(
    context: str, logits: SpanLogits, max_answer_tokens: int, top_k: int = 20, allow_empty: bool = False
) -> tuple[str, float, int, int]:
    """The best span: start ≤ end, at most `max_answer_tokens` tokens (token starts counted inside it), the highest
    start + end logit among the `top_k` best starts and ends. With `allow_empty`, "" when the null score beats it.

    Returns:
        (the span's text — the context's exact characters, its score, start char, end char exclusive).
    """
    starts = np.flatnonzero(np.isfinite(logits.start))
    ends = np.flatnonzero(np.isfinite(logits.end))
    if len(starts) == 0 or len(ends) == 0:
        return "", float("-inf"), 0, 0
    token_index = np.cumsum(np.isfinite(logits.start))  # token starts at or before each character
    best_starts = starts[np.argsort(-logits.start[starts], kind="stable")[:top_k]]
    best_ends = ends[np.argsort(-logits.end[ends], kind="stable")[:top_k]]
    best = (float("-inf"), 0, 0)
    for s in best_starts:
        for e in best_ends:
            if e <= s or token_index[e - 1] - token_index[s] + 1 > max_answer_tokens:
                continue
            value = float(logits.start[s] + logits.end[e])
            if value > best[0]:
                best = (value, int(s), int(e))
    value, s, e = best
    if allow_empty and np.isfinite(logits.null) and (logits.null > value):
        return "", logits.null, 0, 0
    return context[s:e], value, s, e
