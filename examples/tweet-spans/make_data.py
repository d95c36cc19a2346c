"""Writes the synthetic span-extraction competition in this folder (deterministic), in the shape of Kaggle's Tweet
Sentiment Extraction: a tweet and its sentiment per row, the target the words of the tweet that carry it.

    python examples/tweet-spans/make_data.py

A tweet mixes filler words with two emotion words of different sentiments (joy: happy, anger: furious, fear:
scared); `sentiment` asks for one of them and `selected_text` is that word and the word after it, so the answer
needs both the question and the context. Neutral tweets (no emotion word) select the whole tweet, as in the real
competition. train.csv: textID, text, sentiment, selected_text; test.csv: textID, text, sentiment;
sample_submission.csv: textID, selected_text (scored by word-level Jaccard).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EMOTIONS = {"joy": "happy", "anger": "furious", "fear": "scared"}
FILLER = ["the", "a", "day", "it", "was", "and", "then", "we", "saw", "some", "news", "about", "town"]


def main() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for _ in range(600):
        words = [str(w) for w in rng.choice(FILLER, size=rng.integers(5, 14))]
        if rng.random() < 0.2:
            sentiment, selected = "neutral", " ".join(words)
        else:
            asked, other = (str(e) for e in rng.choice(list(EMOTIONS), size=2, replace=False))
            at = int(rng.integers(0, len(words) - 1))
            words.insert(at, EMOTIONS[asked])
            words.insert(int(rng.choice([j for j in range(len(words) + 1) if j not in (at, at + 1)])), EMOTIONS[other])
            sentiment, selected = asked, " ".join(words[at : at + 2])
        rows.append({"textID": f"{rng.integers(16**9):09x}", "text": " ".join(words), "sentiment": sentiment,
                     "selected_text": selected})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.iloc[:480].to_csv(HERE / "train.csv", index=False)
    frame.iloc[480:][["textID", "text", "sentiment"]].to_csv(HERE / "test.csv", index=False)
    frame.iloc[480:][["textID"]].assign(selected_text="").to_csv(HERE / "sample_submission.csv", index=False)


if __name__ == "__main__":
    main()
