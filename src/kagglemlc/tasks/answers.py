"""Generated answers → labels: a parser that survives case, spacing, synonyms, extra words and unknown labels.

parser = AnswerParser(["joy", "anger"], synonyms={"joy": ["happiness"]})
parser.parse("Happiness, and ANGER!").labels    # (0, 1)
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import ANSWERS_FILE, OOF_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.predictions import read_probs
from kagglemlc.scoring.metrics import score
from kagglemlc.tasks.prompts import SEPARATOR

NONE_WORDS = frozenset({"none", "nothing", "n/a", "na"})


FILLER_WORDS = frozenset({"and", "or", "the", "a", "an", "label", "labels", "answer", "is", "are", "of"})
# A label after one of these, up to the end of its clause or a word of CONTRAST, is negated: "no anger here, only
# joy" is joy alone, "not anger but joy" too.
NEGATIONS = frozenset({"no", "not", "without", "never", "neither", "nor", "non", "isn't", "aren't", "don't", "doesn't"})
CONTRAST = frozenset({"but", "only", "just", "however", "instead", "rather"})


_SEPARATORS = re.compile(r"[,;|/&\n\r\t•·*+]|\band\b|\bor\b")


_NOT_WORD = re.compile(r"[^\w\s'/]")


def normalize(text: str) -> str:
    """Lower case, unicode-normalised, `_` and `-` as spaces: how label names and answers are compared."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ").replace("-", " ")
    return " ".join(text.split())


@dataclass(frozen=True)
class ParsedAnswer:
    labels: tuple[int, ...]
    """Label indices in the order the answer mentions them (each once)."""
    unknown: tuple[str, ...] = ()
    """Words that are neither a label, a synonym, a near-miss, "none" nor filler: ignored, counted."""
    said_none: bool = False
    """The answer says no label applies: "none", or only negated labels ("no joy")."""

    @property
    def failed(self) -> bool:
        """No label and no explicit "none": the answer could not be read as an answer."""
        return not self.labels and not self.said_none


class AnswerParser:
    """Reads label names out of free text.

    Survives case, spacing, punctuation, bullets and numbering, "and"/"or", prose around the labels,
    synonyms (`generation.synonyms`) and near-misses (difflib similarity ≥ `cutoff`); other words are
    ignored and counted. Multi-word labels match as phrases, longest first.

        AnswerParser(["joy", "anger"], {"anger": ["mad"]}).parse("- Joy\\n- MAD.").labels   # (0, 1)
    """

    def __init__(self, label_names: list[str], synonyms: dict[str, list[str]] | None = None, cutoff: float = 0.85):
        self.label_names, self.cutoff = label_names, cutoff
        self.phrases: dict[str, int] = {}
        for i, name in enumerate(label_names):
            self._add(normalize(name), i, f"label '{name}'")
        index = {name: i for i, name in enumerate(label_names)}
        for label, words in (synonyms or {}).items():
            if label not in index:
                raise KaggleMLCError(
                    f"generation.synonyms: '{label}' is not a label; labels are: {', '.join(label_names[:30])}"
                )
            for word in words:
                self._add(normalize(word), index[label], f"generation.synonyms.{label}: '{word}'")
        self.max_words = max(len(p.split()) for p in self.phrases)

    def _add(self, phrase: str, label: int, what: str) -> None:
        if not phrase:
            raise KaggleMLCError(f"{what} is empty once normalised; give it letters or digits")
        if self.phrases.get(phrase, label) != label:
            other = self.label_names[self.phrases[phrase]]
            raise KaggleMLCError(f"{what} reads the same as label '{other}'; answers could not tell them apart")
        self.phrases[phrase] = label

    def _fuzzy(self, phrase: str) -> int | None:
        if self.cutoff >= 1:
            return None
        close = difflib.get_close_matches(phrase, list(self.phrases), n=1, cutoff=self.cutoff)
        return self.phrases[close[0]] if close else None

    def parse(self, text: str) -> ParsedAnswer:
        found: list[int] = []
        unknown: list[str] = []
        said_none = False
        for chunk in _SEPARATORS.split(normalize(text)):
            words = [w.strip("'/") for w in _NOT_WORD.sub(" ", chunk).split()]
            words = [w for w in words if w and not w.isdigit()]  # numbering "1." "2)"
            negated = _negated(words)
            leftover: list[int] = []  # positions of the words no label phrase took
            i = 0
            while i < len(words):
                for n in range(min(self.max_words, len(words) - i), 0, -1):
                    label = self.phrases.get(" ".join(words[i : i + n]))
                    if label is not None:
                        if negated[i]:
                            said_none = True  # "no joy": an answer that names no label, not a failure
                        else:
                            found.append(label)
                        i += n
                        break
                else:
                    leftover.append(i)
                    i += 1
            if not leftover:
                continue
            rest = [words[j] for j in leftover]
            whole = self._fuzzy(" ".join(rest)) if len(rest) <= self.max_words and not any(negated) else None
            if whole is not None:
                found.append(whole)
                continue
            for j in leftover:
                word = words[j]
                if word in NONE_WORDS:
                    said_none = True
                elif word in FILLER_WORDS or word in NEGATIONS or word in CONTRAST:
                    continue
                elif (label := self._fuzzy(word)) is not None:
                    if negated[j]:
                        said_none = True
                    else:
                        found.append(label)
                else:
                    unknown.append(word)
        labels = tuple(dict.fromkeys(found))
        return ParsedAnswer(labels, tuple(unknown), said_none and not labels)


def _negated(words: list[str]) -> list[bool]:
    """Which words of a clause stand after a negation (`NEGATIONS`) and before a word of contrast (`CONTRAST`)."""
    out, negating = [], False
    for word in words:
        if word in NEGATIONS:
            negating = True
        elif word in CONTRAST:
            negating = False
        out.append(negating and word not in NEGATIONS)
    return out


def parsed_matrix(parsed: list[ParsedAnswer], n_labels: int, task: str) -> np.ndarray:
    """(n, L) 0/1 predictions from parsed answers; multiclass keeps the first label named."""
    hard = np.zeros((len(parsed), n_labels), dtype=np.int8)
    for i, answer in enumerate(parsed):
        labels = answer.labels[:1] if task == "multiclass" else answer.labels
        hard[i, list(labels)] = 1
    return hard


def answer_labels(y_row: np.ndarray, task: str) -> list[int]:
    """The labels a training row's answer lists, in label order."""
    return [int(np.argmax(y_row))] if task == "multiclass" else np.flatnonzero(y_row).tolist()


def answer_summary(frame: pd.DataFrame) -> dict[str, float | int]:
    """Parse failures and unknown words of a frame of answers, for metrics.json."""
    n = len(frame)
    failed = int(frame["parse_failed"].sum())
    return {
        "rows": n,
        "parse_failures": failed,
        "parse_failure_rate": round(failed / max(n, 1), 4),
        "unknown_words": int(frame["unknown_words"].sum()),
    }


def answers_matrix(frame: pd.DataFrame, label_names: list[str], task: str) -> np.ndarray:
    """(n, L) 0/1 predictions from a saved answers file's `labels` column (the parsed labels, "joy, fear")."""
    index = {name: j for j, name in enumerate(label_names)}
    hard = np.zeros((len(frame), len(label_names)), dtype=np.int8)
    for i, text in enumerate(frame["labels"].fillna("").astype(str)):
        named = [index[n] for n in text.split(SEPARATOR) if n in index]
        hard[i, named[:1] if task == "multiclass" else named] = 1
    return hard


def vote(answers: list[np.ndarray], probs: np.ndarray, task: str) -> np.ndarray:
    """The models' parsed answers (each (n, L) 0/1) as one: a label where at least half of them named it;
    multiclass: the class named most often, ties (and rows no model answered) to the most probable in `probs`."""
    votes = np.sum(answers, axis=0, dtype=np.float64)
    if task != "multiclass":
        return (votes * 2 >= len(answers)).astype(np.int8)
    best = votes + probs / (probs.sum(axis=1, keepdims=True) + 1e-9) * 0.5  # probabilities break ties only
    return np.eye(probs.shape[1], dtype=np.int8)[best.argmax(axis=1)]


def answers_cv(run_dir: Path, folds: int, data: CompetitionData, metric: str) -> float | None:
    """The competition metric of the out-of-fold parsed answers (every fold's oof_answers.parquet), what
    `submission.from: answers` submits; multiclass rows that name no class fall back to the most probable one.
    None until every fold has its answers."""
    paths = [fold_dir(run_dir, k) / ANSWERS_FILE for k in range(folds)]
    if not all(p.is_file() for p in paths):
        return None
    frame = pd.concat([pd.read_parquet(p) for p in paths]).astype({"id": str}).set_index("id")
    ids = np.asarray(data.train_ids).astype(str)
    hard = answers_matrix(frame.loc[ids], data.label_names, data.task)
    if data.task == "multiclass":
        probs = read_probs(run_dir / OOF_FILE, data.train_ids, data.label_names, "rerun `kagglemlc train`")
        hard = vote([hard], probs, data.task)
    return float(score(metric, data.y, hard.astype(np.float32), data.task))
