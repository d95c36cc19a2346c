"""Writes the synthetic text-pair competition in this folder (deterministic), in the shape of Jigsaw's rule
violation task: a rule and a comment per row, the target 1 when the comment breaks the rule.

    python examples/rule-pairs/make_data.py

Each rule forbids one topic word; a comment breaks it when it mentions that word (other topic words are allowed),
so the answer needs both texts. train.csv: row_id, rule, body, rule_violation; test.csv: row_id, rule, body;
sample_submission.csv: row_id, rule_violation (scored by ROC AUC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TOPICS = ["happy", "furious", "scared", "news", "town"]
FILLER = ["the", "a", "day", "it", "was", "and", "then", "we", "saw", "some", "about"]


def main() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(500):
        banned = str(rng.choice(TOPICS))
        mentioned = str(rng.choice(TOPICS))
        words = list(rng.choice(FILLER, size=rng.integers(4, 10))) + [mentioned]
        rng.shuffle(words)
        rows.append(
            {
                "row_id": f"p{i:04d}",
                "rule": f"no {banned} in comments",
                "body": " ".join(words),
                "rule_violation": int(mentioned == banned),
            }
        )
    frame = pd.DataFrame(rows)
    frame.iloc[:400].to_csv(HERE / "train.csv", index=False)
    frame.iloc[400:][["row_id", "rule", "body"]].to_csv(HERE / "test.csv", index=False)
    frame.iloc[400:][["row_id"]].assign(rule_violation=0).to_csv(HERE / "sample_submission.csv", index=False)


if __name__ == "__main__":
    main()
