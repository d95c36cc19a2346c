"""How fast the stages after training run: tune-thresholds, a 5-experiment ensemble and submit.

    python bench/postprocess_speed.py                          # 10k, 100k and 1M rows × 28 labels, best of 3
    python bench/postprocess_speed.py --rows 10000 --repeats 1

Each size writes a synthetic Kaggle-like competition as CSV (train.csv: id, text and 28 0/1 columns
with rates spaced geometrically from 0.2% to 33%; test.csv: id, text, as many rows as train;
sample_submission.csv: id + 28 columns of 0) and five prepared experiments that share one
folds.parquet (`assign_folds`, 5 folds, as `kagglemlc prepare` writes it) and have their own float32
oof.parquet / test.parquet: informative, miscalibrated probabilities with independent noise, so the
fitted blend weights are not trivial. It then times the real stage functions, as the CLI calls them:

- `tune_thresholds(cfg)`: read train.csv (+ sample submission), oof.parquet and folds.parquet, tune
  per-label F1 cuts on all rows and once per fold (nested estimate), write thresholds.json;
- `ensemble([5 configs])`: check folds, read train/test/sample submission and 5 × (oof + test),
  fit the weights on OOF, write the blend's parquets, tune its thresholds;
- `submit(cfg)` (no upload): read the competition, test.parquet and thresholds.json, build and
  validate the frame against the sample submission, write the CSV and the log row.

Metric f1_macro, thresholds.strategy per_label. Each stage runs once without the competition cache
(`<output_dir>/competition.pkl`: the CSVs are parsed and validated, the cache is written), then
`--repeats` times with it; the table gives the best of those and, last, the run without it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kagglemlc.config import load_config
from kagglemlc.core.files import write_parquet
from kagglemlc.core.paths import CACHE_FILE, FOLDS_FILE, OOF_FILE, TEST_FILE, THRESHOLDS_FILE
from kagglemlc.data.folds import assign_folds
from kagglemlc.data.predictions import probability_frame
from kagglemlc.stages.ensemble import ensemble
from kagglemlc.stages.submit import submit
from kagglemlc.stages.tune_thresholds import tune_thresholds

N_LABELS = 28
MEMBERS = 5
FOLDS = 5
WORDS = [
    "the",
    "a",
    "movie",
    "was",
    "great",
    "terrible",
    "really",
    "not",
    "very",
    "so",
    "I",
    "love",
    "hate",
    "this",
    "that",
    "it",
    "good",
    "bad",
    "fine",
    "okay",
    "wow",
]


def synthetic_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 28) 0/1 matrix with GoEmotions-like geometric label frequencies 0.002 … 0.33."""
    return (rng.random((n, N_LABELS), dtype=np.float32) < np.geomspace(0.002, 0.33, N_LABELS)).astype(np.int8)


def texts(n: int, rng: np.random.Generator) -> np.ndarray:
    """n texts of 6–14 words (~50 characters, like a short comment) drawn from 1,000 distinct ones."""
    pool = np.array([" ".join(rng.choice(WORDS, rng.integers(6, 15))) for _ in range(1000)], dtype=object)
    return pool[rng.integers(0, len(pool), n)]


def probabilities(y: np.ndarray, shared: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 probabilities of a decent model: positives score higher; the noise is partly `shared` by all
    members (they err on the same hard rows, as real ones do) and partly their own, and so is the calibration."""
    logits = 2.5 * y - 3.0 + shared + rng.normal(0, 0.8, y.shape) + rng.normal(0, 0.5, y.shape[1])
    return (1 / (1 + np.exp(-logits))).astype(np.float32)


def write_competition(n: int, folder: Path) -> list[Path]:
    """The competition CSVs and MEMBERS prepared experiments; returns the members' YAML paths."""
    rng = np.random.default_rng(n)
    names = [f"label{j:02d}" for j in range(N_LABELS)]
    train_ids = np.array([f"tr{i:07d}" for i in range(n)], dtype=object)
    test_ids = np.array([f"te{i:07d}" for i in range(n)], dtype=object)
    y = synthetic_labels(n, rng)
    y_test = synthetic_labels(n, rng)
    shared, shared_test = rng.normal(0, 0.9, y.shape), rng.normal(0, 0.9, y.shape)

    train = pd.DataFrame(y, columns=names)
    train.insert(0, "text", texts(n, rng))
    train.insert(0, "id", train_ids)
    train.to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "text": texts(n, rng)}).to_csv(folder / "test.csv", index=False)
    sample = pd.DataFrame(0, index=range(n), columns=names)
    sample.insert(0, "id", test_ids)
    sample.to_csv(folder / "sample_submission.csv", index=False)

    folds = pd.DataFrame({"id": train_ids.astype(str), "fold": assign_folds(y, "multilabel", FOLDS, 42)})
    paths = []
    for m in range(MEMBERS):
        path = folder / f"exp{m}.yaml"
        settings = {
            "competition": {
                "train": "train.csv",
                "test": "test.csv",
                "sample_submission": "sample_submission.csv",
                "metric": "f1_macro",
            },
            "cv": {"folds": FOLDS},
            "output_dir": f"runs/exp{m}",
            "submission": {"dir": "submissions"},
        }
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        run_dir = load_config(path).run_dir
        write_parquet(run_dir / FOLDS_FILE, folds)
        write_parquet(run_dir / OOF_FILE, probability_frame(train_ids, probabilities(y, shared, rng), names))
        write_parquet(run_dir / TEST_FILE, probability_frame(test_ids, probabilities(y_test, shared_test, rng), names))
        paths.append(path)
    return paths


def timed(fn) -> float:
    """Wall time of one call; the stages' own log lines and tables are swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def cold_and_warm(fn, cache: Path, repeats: int) -> tuple[float, float]:
    """One run without the competition cache (CSVs parsed and validated, cache written), then the best of
    `repeats` runs that find it."""
    cache.unlink(missing_ok=True)
    cold = timed(fn)
    return cold, min(timed(fn) for _ in range(repeats))


@contextlib.contextmanager
def hidden(paths: list[Path]):
    """The files moved aside for the block, then put back."""
    present = [p for p in paths if p.is_file()]
    for p in present:
        p.rename(p.with_name(p.name + ".hidden"))
    try:
        yield
    finally:
        for p in present:
            p.with_name(p.name + ".hidden").rename(p)


def bench(n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kagglemlc-bench-") as tmp:
        start = time.perf_counter()
        paths = write_competition(n, Path(tmp))
        print(f"{n:,} rows: files written in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        cwd = Path.cwd()
        os.chdir(tmp)  # submission.dir and output_dir resolve inside the temporary folder
        try:
            cfgs = [load_config(p) for p in paths]
            cfg = cfgs[0]
            cache = cfg.run_dir / CACHE_FILE  # the ensemble reads its first member's
            result = {"rows": n}
            result["thresholds cold"], result["thresholds"] = cold_and_warm(
                lambda: tune_thresholds(cfg), cache, repeats
            )
            # members as `kagglemlc run` leaves them: each with its thresholds.json (the ensemble reuses their CVs)
            for member in cfgs[1:]:
                timed(lambda: tune_thresholds(member))  # noqa: B023
            result["ensemble cold"], result["ensemble"] = cold_and_warm(
                lambda: ensemble(paths, name="bench"), cache, repeats
            )
            with hidden([c.run_dir / THRESHOLDS_FILE for c in cfgs]):  # every member's CV computed by the ensemble
                result["ensemble untuned"] = min(timed(lambda: ensemble(paths, name="bench")) for _ in range(repeats))
            result["submit cold"], result["submit"] = cold_and_warm(lambda: submit(cfg), cache, repeats)
        finally:
            os.chdir(cwd)
    print(", ".join(f"{k} {v:.2f}s" for k, v in result.items() if k != "rows"), file=sys.stderr)
    return result


STAGES = ("thresholds", "ensemble", "submit")


def table(results: list[dict]) -> str:
    lines = [
        f"| rows × labels | tune-thresholds s | ensemble ({MEMBERS} experiments) s | ensemble, members untuned s "
        "| submit s | µs per row (thresholds / ensemble / submit) "
        "| without the cache: thresholds / ensemble / submit s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        walls = f"{r['thresholds']:.2f} | {r['ensemble']:.2f} | {r['ensemble untuned']:.2f} | {r['submit']:.2f}"
        per_row = " / ".join(f"{r[s] / r['rows'] * 1e6:.1f}" for s in STAGES)
        cold = " / ".join(f"{r[s + ' cold']:.2f}" for s in STAGES)
        lines.append(f"| {r['rows']:,} × {N_LABELS} | {walls} | {per_row} | {cold} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results = [bench(n, args.repeats) for n in args.rows]
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}; best of {args.repeats} with the cache; "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
