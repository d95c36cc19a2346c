"""How fast `prepare` splits into folds, and how well: assign_folds at growing sizes, then the real command.

    python bench/prepare_speed.py                       # all sizes + GoEmotions end to end
    python bench/prepare_speed.py --sizes 48000 250000  # fewer sizes

Part 1 times `kagglemlc.data.folds.assign_folds` on synthetic multilabel matrices (N rows × 28 labels,
label frequencies spaced geometrically from 0.2% to 33%, like GoEmotions' grief … neutral).
Part 2 times `kagglemlc prepare configs/goemotions.yaml` as a user runs it (a fresh process: imports,
CSV reading and validation, folds, writing folds.parquet and config.yaml) into a temporary output_dir.
Every row is run twice with the same seed to check that the split is reproducible.

Prints a markdown table: wall seconds, rows/s, worst per-label fold spread (max − min positives of a
label across folds, the worst label), whether every row lands in exactly one fold, and whether the
second run gave identical folds.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kagglemlc.config import load_config
from kagglemlc.core.paths import FOLDS_FILE
from kagglemlc.data.competition import load_competition
from kagglemlc.data.folds import assign_folds, fold_counts

ROOT = Path(__file__).resolve().parents[1]
GOEMOTIONS = ROOT / "configs" / "goemotions.yaml"
N_LABELS = 28
FOLDS = 5
SEED = 42


def synthetic_labels(n: int, seed: int = 0) -> np.ndarray:
    """(n, 28) 0/1 matrix with GoEmotions-like geometric label frequencies 0.002 … 0.33."""
    rng = np.random.default_rng(seed)
    freq = np.geomspace(0.002, 0.33, N_LABELS)
    return (rng.random((n, N_LABELS), dtype=np.float32) < freq).astype(np.int8)


def quality(y: np.ndarray, fold: np.ndarray) -> tuple[int, bool]:
    """Worst per-label spread across folds, and whether every row has exactly one valid fold."""
    one_fold_each = fold.shape == (len(y),) and bool(((fold >= 0) & (fold < FOLDS)).all())
    return int(np.ptp(fold_counts(y, fold, FOLDS), axis=1).max()), one_fold_each


def bench_assign_folds(n: int) -> dict:
    y = synthetic_labels(n)
    start = time.perf_counter()
    fold = assign_folds(y, "multilabel", FOLDS, SEED)
    wall = time.perf_counter() - start
    spread, one_fold_each = quality(y, fold)
    identical = bool(np.array_equal(fold, assign_folds(y, "multilabel", FOLDS, SEED)))
    return {
        "what": f"assign_folds, synthetic {n:,} × {N_LABELS}",
        "rows": n,
        "wall": wall,
        "spread": spread,
        "one_fold_each": one_fold_each,
        "identical": identical,
    }


def _run_prepare(output_dir: Path) -> float:
    cmd = [sys.executable, "-m", "kagglemlc", "prepare", str(GOEMOTIONS), f"output_dir={output_dir}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return wall


def bench_prepare_cli() -> dict:
    with tempfile.TemporaryDirectory(prefix="kagglemlc-bench-") as tmp:
        first, second = Path(tmp) / "a", Path(tmp) / "b"
        wall = _run_prepare(first)
        _run_prepare(second)
        folds = pd.read_parquet(first / FOLDS_FILE)
        identical = folds.equals(pd.read_parquet(second / FOLDS_FILE))
    data = load_competition(load_config(GOEMOTIONS).competition, with_test=False)
    by_id = folds.set_index("id")["fold"]
    same_ids = folds["id"].is_unique and len(folds) == len(data.train_ids) and by_id.index.isin(data.train_ids).all()
    spread, valid_folds = quality(data.y, by_id.loc[data.train_ids.astype(str)].to_numpy())
    n = len(data.train_ids)
    return {
        "what": f"`kagglemlc prepare` GoEmotions {n:,} × {data.y.shape[1]} (end to end)",
        "rows": n,
        "wall": wall,
        "spread": spread,
        "one_fold_each": bool(same_ids and valid_folds),
        "identical": bool(identical),
    }


def table(results: list[dict]) -> str:
    yes = {True: "yes", False: "**no**"}
    lines = [
        "| run | wall s | rows/s | worst per-label spread | each row in one fold | 2nd run identical |",
        "|---|---:|---:|---:|:---:|:---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['what']} | {r['wall']:.2f} | {r['rows'] / r['wall']:,.0f} | {r['spread']} | "
            f"{yes[r['one_fold_each']]} | {yes[r['identical']]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48_000, 250_000, 500_000, 1_000_000])
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end GoEmotions prepare")
    args = parser.parse_args()

    results = []
    for n in args.sizes:
        results.append(bench_assign_folds(n))
        print(f"{results[-1]['what']}: {results[-1]['wall']:.2f}s", file=sys.stderr)
    if not args.no_cli:
        results.append(bench_prepare_cli())
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{FOLDS} folds, seed {SEED}\n"
    )
    print(table(results))
    synthetic = [r for r in results if r["what"].startswith("assign_folds")]
    if len(synthetic) > 1:
        per_row = ", ".join("{:,}: {:.1f}".format(r["rows"], r["wall"] / r["rows"] * 1e6) for r in synthetic)
        print(f"\nassign_folds µs per row (flat = linear growth): {per_row}")


if __name__ == "__main__":
    main()
