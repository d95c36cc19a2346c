"""Encoder switches against the defaults: CV of mean pooling, LLRD 0.9 and one re-initialised layer with `minilm`.

    python bench/defaults_sample.py --out /tmp/kagglemlc-defaults-bench     # once: the 6,000-row sample, 3 folds
    python bench/encoder_switches.py --dry-run                              # the commands, nothing run
    python bench/encoder_switches.py                                        # every cell, in order (resumable)
    python bench/encoder_switches.py --cells defaults mean-pooling          # some of them
    python bench/encoder_switches.py --table                                # only the table of what has finished

The same fixed GoEmotions sample as the defaults grid (bench/defaults_grid.py: 6,000 rows, 3 folds from cv.seed
42, MiniLM-L6, fp32 on CPU). Each cell is the shipped defaults (nothing pinned, the `auto` rules choose lr, head_lr,
epochs, max_length, class weights) plus one switch, run through the real command line in a subprocess in its own
output_dir (<sample>/runs/switch-<cell>), on the same rows and folds:

    python -m kagglemlc train <sample>/kagglemlc.yaml <switch> output_dir=<dir>
    python -m kagglemlc tune-thresholds <sample>/kagglemlc.yaml <switch> output_dir=<dir>

and reads <dir>/thresholds.json: macro-F1 of the out-of-fold predictions at 0.5, tuned on all the OOF, and nested
(tuned on the other folds, scored on the held-out one: the honest number). Cells, wall times, resuming, threads
and --src (which code runs: a snapshot of HEAD by default) work as in bench/defaults_grid.py, whose runner this
uses; results go to <sample>/switch_results.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import defaults_grid as grid

CELLS: dict[str, dict[str, str]] = {
    "defaults": {},  # what kagglemlc ships (since this bench: pooling auto = mean for MiniLM, = the mean-pooling cell)
    "own-head": {"model.pooling": "null"},  # the checkpoint's own head on [CLS]: the defaults the table measured
    "mean-pooling": {"model.pooling": "mean"},
    "llrd-0.9": {"train.llrd": "0.9"},
    "reinit-1": {"model.reinit_layers": "1"},
}


def commands(name: str, sample: Path) -> list[list[str]]:
    """The two commands a cell runs, as `grid.run_cell` runs them."""
    args = [f"{k}={v}" for k, v in CELLS[name].items()] + [f"output_dir={sample / 'runs' / f'switch-{name}'}"]
    cfg = str(sample / "kagglemlc.yaml")
    return [[sys.executable, "-m", "kagglemlc", stage, cfg, *args] for stage in ("train", "tune-thresholds")]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=grid.DEFAULT_SAMPLE, help="defaults_sample.py's folder")
    ap.add_argument("--cells", nargs="+", choices=list(CELLS), help="cells to run, in this order (default: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="OMP/MKL threads (default: %(default)s)")
    ap.add_argument("--src", default="head", help="kagglemlc code to run: head (default), a commit, or worktree")
    ap.add_argument("--dry-run", action="store_true", help="print each cell's commands, run nothing")
    ap.add_argument("--table", action="store_true", help="print the table of finished cells, run nothing")
    args = ap.parse_args(argv)
    names = args.cells or list(CELLS)
    # the grid's runner and collector read its CELLS by name: the switch cells go in under their folder names
    grid.CELLS.update({f"switch-{name}": CELLS[name] for name in CELLS})
    if args.dry_run:
        for name in names:
            for cmd in commands(name, args.sample):
                print(" ".join(cmd[1:]))
        return
    if not (args.sample / "kagglemlc.yaml").exists():
        missing = args.sample / "kagglemlc.yaml"
        raise SystemExit(f"{missing} missing: run python bench/defaults_sample.py --out {args.sample}")
    if not args.table:
        code_env, code = grid.code_under_test(args.src, args.sample)
        print(f"kagglemlc code: {code}; threads: {args.threads}", flush=True)
        for name in names:
            r = grid.run_cell(f"switch-{name}", args.sample, args.threads, code_env, code)
            print(f"[{name}] untuned {r['untuned']:.4f}  tuned {r['tuned']:.4f}  nested {r['nested']:.4f}", flush=True)
    rows = [r for r in (grid.collect(f"switch-{n}", args.sample) for n in CELLS) if r is not None]
    doc = {"sample": str(args.sample), "cells": rows}
    (args.sample / "switch_results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(table(rows))


def table(rows: list[dict]) -> str:
    """One line per finished cell: its switch, the three CV numbers and the wall time."""
    lines = ["| cell | switch | untuned (0.5) | tuned | nested | wall s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        switch = " ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "(the shipped defaults)"
        wall = "—" if r["wall_s"] is None else round(r["wall_s"])
        lines.append(f"| {r['cell']} | {switch} | {r['untuned']:.4f} | {r['tuned']:.4f} | {r['nested']:.4f} | {wall} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
