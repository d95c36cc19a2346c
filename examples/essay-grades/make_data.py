"""Writes the synthetic essay-grading competition in this folder (deterministic: the same files every run).

    python examples/essay-grades/make_data.py

Each essay is a few filler sentences; its grade (1-6, as AES 2.0's holistic scores) sets how many sentences carry a
"strong" word (argument, evidence, ...) and how long the essay is, with noise: a model must count and read, not
match one keyword. train.csv: essay_id, full_text, score; test.csv: essay_id, full_text; sample_submission.csv:
essay_id, score (QWK is the metric).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FILLER = ["i think", "the school", "students", "should", "have", "more", "time", "for", "homework", "and", "sports",
          "because", "it", "is", "good", "in", "my", "opinion", "people", "like", "to", "learn"]  # fmt: skip
STRONG = ["argument", "evidence", "furthermore", "consequently", "perspective", "nevertheless", "demonstrates",
          "significant", "analysis", "counterclaim"]  # fmt: skip


def essay(grade: int, rng: np.random.Generator) -> str:
    sentences = []
    n = int(np.clip(grade + rng.integers(0, 3), 2, 9))
    strong = int(np.clip(grade - 1 + rng.integers(-1, 2), 0, n))
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(4, 9)))
        if i < strong:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(STRONG)))
        sentences.append(" ".join(words).capitalize() + ".")
    rng.shuffle(sentences)
    return " ".join(sentences)


def main() -> None:
    rng = np.random.default_rng(2024)
    grades = rng.choice([1, 2, 3, 4, 5, 6], size=750, p=[0.07, 0.27, 0.36, 0.22, 0.06, 0.02])
    frame = pd.DataFrame({"essay_id": [f"e{i:05d}" for i in range(750)], "full_text": [essay(g, rng) for g in grades]})
    frame["score"] = grades
    train, test = frame.iloc[:600], frame.iloc[600:]
    train.to_csv(HERE / "train.csv", index=False)
    test[["essay_id", "full_text"]].to_csv(HERE / "test.csv", index=False)
    test[["essay_id"]].assign(score=3).to_csv(HERE / "sample_submission.csv", index=False)


if __name__ == "__main__":
    main()
