"""Speed of threshold tuning on synthetic OOF probabilities (numpy only: no model, no GPU).

    python bench/thresholds_speed.py                   # 50k×28 and 500k×28 (GoEmotions-like label rates)
    python bench/thresholds_speed.py --rows 50000 --labels 28 --folds 5

"search" times `fit_cuts` alone (one exact search on all OOF rows) for each metric and strategy.
"stage" times `tune_thresholds` end to end as `kagglemlc tune-thresholds` runs it: read the training
CSV and oof.parquet, tune on all rows and once per fold (nested CV), score everything, write
thresholds.json. bench/postprocess_speed.py times that stage (with and without the competition cache)
next to `ensemble` and `submit` on full synthetic competitions.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kagglemlc.config import load_config
from kagglemlc.scoring.cuts import fit_cuts
from kagglemlc.stages.tune_thresholds import tune_thresholds

SEARCHES = [
    ("f1_macro", "per_label"),
    ("f1_macro", "global"),
    ("f1_micro", "per_label"),
    ("jaccard", "per_label"),
    ("f1_samples", "global"),
]


def synthetic(n: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with rates from 0.5% to 30% and float32 probabilities of a decent, miscalibrated model."""
    rng = np.random.default_rng(seed)
    rates = np.geomspace(0.005, 0.3, n_labels)
    y = (rng.random((n, n_labels)) < rates).astype(np.int8)
    logits = 2.5 * y - 3.0 + rng.normal(0, 1.2, y.shape)
    return y, (1 / (1 + np.exp(-logits))).astype(np.float32)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stage_seconds(y: np.ndarray, probs: np.ndarray, n_folds: int, folder: Path) -> float:
    """Writes a competition + prepared experiment with this OOF and times `tune_thresholds` on it."""
    names = [f"label{j:02d}" for j in range(y.shape[1])]
    ids = [f"r{i}" for i in range(len(y))]
    train = pd.DataFrame(y, columns=names)
    train.insert(0, "text", "x")
    train.insert(0, "id", ids)
    train.to_csv(folder / "train.csv", index=False)
    config = folder / "bench.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "competition": {"train": "train.csv", "labels": names, "metric": "f1_macro"},
                "cv": {"folds": n_folds},
                "output_dir": "run",
            }
        )
    )
    cfg = load_config(config)
    cfg.run_dir.mkdir(parents=True)
    fold = np.random.default_rng(1).integers(0, n_folds, len(y))
    pd.DataFrame({"id": ids, "fold": fold}).to_parquet(cfg.run_dir / "folds.parquet")
    oof = pd.DataFrame(probs, columns=names)
    oof.insert(0, "id", ids)
    oof.to_parquet(cfg.run_dir / "oof.parquet")
    return timed(lambda: tune_thresholds(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 500_000])
    parser.add_argument("--labels", type=int, default=28)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    header = ["rows × labels", *[f"{m} {s}" for m, s in SEARCHES], f"stage f1_macro ({args.folds} folds)"]
    results = []
    for n in args.rows:
        y, probs = synthetic(n, args.labels)
        row = [f"{n:,} × {args.labels}"]
        for metric, strategy in SEARCHES:
            row.append(f"{timed(lambda: fit_cuts(y, probs, 'multilabel', metric, strategy)):.2f} s")  # noqa: B023
        with tempfile.TemporaryDirectory() as tmp:
            row.append(f"{stage_seconds(y, probs, args.folds, Path(tmp)):.1f} s")
        results.append(row)

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}\n")
    widths = [max(len(h), *(len(r[i]) for r in results)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in results:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
