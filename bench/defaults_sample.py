"""A fixed, stratified GoEmotions sample for the defaults grid (bench/defaults_grid.py).

    python bench/defaults_sample.py                               # -> /tmp/kagglemlc-defaults-bench/
    python bench/defaults_sample.py --out DIR --rows 6000 --test-rows 500

Writes into the output folder (never into git):
  train.csv              exactly `--rows` rows of GoEmotions' train.csv (id, text, 28 label columns), chosen with
                         iterstrat's MultilabelStratifiedShuffleSplit (seed `--seed`), so every label keeps
                         its share of the full file; rows kept in their original order.
  test.csv               the first `--test-rows` rows of the real test.csv (id, text).
  sample_submission.csv  the sample_submission rows of those ids, in the same order.
  kagglemlc.yaml         the base config: the three files, task multilabel, metric f1_macro,
                         cv {folds: 3, seed: 42}, model {name: minilm}, train.precision: no (fp32 on CPU).
                         Everything else is left at kagglemlc's defaults: cells pass their settings as
                         overrides, so a defaults change only moves the cell that pins nothing.
  sample.json            what was written: rows, per-label positives (sample vs full file), seed, sha256s.

Deterministic: the same arguments write byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/goemotions")
DEFAULT_OUT = Path("/tmp/kagglemlc-defaults-bench")

CONFIG = """\
# Base config of the defaults grid (written by bench/defaults_sample.py). Only the files, the task, the
# metric, the folds, the model and fp32 are set here; each grid cell passes its settings as overrides.
competition:
  train: train.csv
  test: test.csv
  sample_submission: sample_submission.csv
  task: multilabel
  metric: f1_macro
cv: {{folds: {folds}, seed: {cv_seed}}}
model: {{name: minilm}}
train: {{precision: "{precision}"}}
output_dir: runs/default
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument(
        "--data", type=Path, default=DATA, help="GoEmotions folder (train.csv, test.csv, sample_submission.csv)"
    )
    ap.add_argument("--rows", type=int, default=6000, help="training rows in the sample (default: %(default)s)")
    ap.add_argument("--test-rows", type=int, default=500, help="rows of test.csv kept (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the stratified sample (default: %(default)s)")
    ap.add_argument("--folds", type=int, default=3, help="cv.folds of the base config (default: %(default)s)")
    ap.add_argument("--cv-seed", type=int, default=42, help="cv.seed of the base config (default: %(default)s)")
    ap.add_argument(
        "--precision", default="no", help="train.precision of the base config (default: %(default)s = fp32)"
    )
    args = ap.parse_args(argv)

    train = pd.read_csv(args.data / "train.csv", dtype={"id": str})
    labels = [c for c in train.columns if c not in ("id", "text")]
    y = train[labels].to_numpy(dtype=np.int64)
    if args.rows >= len(train):
        raise SystemExit(f"--rows {args.rows} >= the {len(train)} rows of train.csv")
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, train_size=args.rows, test_size=len(train) - args.rows, random_state=args.seed
    )
    keep, rest = next(splitter.split(np.zeros(len(train)), y))
    # iterstrat's split lands a few rows off the requested size: top up from (or trim to) exactly --rows,
    # seeded, a handful of rows that cannot move any label's share measurably.
    rng = np.random.default_rng(args.seed)
    if len(keep) < args.rows:
        keep = np.concatenate([keep, rng.choice(rest, args.rows - len(keep), replace=False)])
    elif len(keep) > args.rows:
        keep = rng.choice(keep, args.rows, replace=False)
    sample = train.iloc[np.sort(keep)]

    test = pd.read_csv(args.data / "test.csv", dtype={"id": str}).head(args.test_rows)
    sub = (
        pd.read_csv(args.data / "sample_submission.csv", dtype={"id": str})
        .set_index("id")
        .loc[test["id"]]
        .reset_index()
    )

    args.out.mkdir(parents=True, exist_ok=True)
    sample.to_csv(args.out / "train.csv", index=False)
    test.to_csv(args.out / "test.csv", index=False)
    sub.to_csv(args.out / "sample_submission.csv", index=False)
    (args.out / "kagglemlc.yaml").write_text(
        CONFIG.format(folds=args.folds, cv_seed=args.cv_seed, precision=args.precision), encoding="utf-8"
    )

    full_pos = train[labels].sum()
    samp_pos = sample[labels].sum()
    info = {
        "rows": len(sample),
        "labels": len(labels),
        "test_rows": len(test),
        "seed": args.seed,
        "cv": {"folds": args.folds, "seed": args.cv_seed},
        "source": str(args.data),
        "positives": {
            lab: {
                "sample": int(samp_pos[lab]),
                "full": int(full_pos[lab]),
                "share_sample": round(float(samp_pos[lab]) / len(sample), 5),
                "share_full": round(float(full_pos[lab]) / len(train), 5),
            }
            for lab in labels
        },
        "sha256": {
            name: sha256(args.out / name)
            for name in ("train.csv", "test.csv", "sample_submission.csv", "kagglemlc.yaml")
        },
    }
    (args.out / "sample.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    worst = max(
        labels, key=lambda lab: abs(info["positives"][lab]["share_sample"] - info["positives"][lab]["share_full"])
    )
    rarest = min(labels, key=lambda lab: int(samp_pos[lab]))
    print(f"{len(sample)} of {len(train)} train rows x {len(labels)} labels, {len(test)} test rows -> {args.out}")
    print(
        f"rarest label in the sample: {rarest} ({int(samp_pos[rarest])} positives, "
        f"{int(full_pos[rarest])} in the full file); "
        f"largest share difference: {worst} {info['positives'][worst]['share_sample']:.4f} vs "
        f"{info['positives'][worst]['share_full']:.4f}"
    )
    return args.out


if __name__ == "__main__":
    main()
