"""The defaults grid: which `kagglemlc train` settings score for the bundled MiniLM-L6 (`minilm`).

    python bench/defaults_sample.py                       # once: the 6,000-row sample + base config
    python bench/defaults_grid.py                         # every cell but new-defaults, in order (resumable)
    python bench/defaults_grid.py --cells old-defaults centre c-cw-none
    python bench/defaults_grid.py --cells new-defaults    # the shipped defaults (no overrides at all)
    python bench/defaults_grid.py --list                  # the cells and their overrides
    python bench/defaults_grid.py --table                 # only print the table of what has finished

Each cell is a set of dotted overrides, run through the real command line in a subprocess, in its own
output_dir (<sample>/runs/<cell>), on the same rows and the same 3 folds (made by `kagglemlc train` from
cv.seed, identical in every cell):

    python -m kagglemlc train <sample>/kagglemlc.yaml <overrides> output_dir=<dir>
    python -m kagglemlc tune-thresholds <sample>/kagglemlc.yaml <overrides> output_dir=<dir>

and reads <dir>/thresholds.json: macro-F1 of the out-of-fold predictions at 0.5 (`cv_at_0.5`), with
per-label thresholds tuned on all the OOF (`cv_tuned`, optimistic) and nested (`cv_nested`: tuned on the
other folds, scored on the held-out one; the honest number). Wall seconds cover both commands.

Every cell pins every setting it does not vary to the OLD defaults (OLD below), so its result does not
move when kagglemlc's defaults change; only `new-defaults` passes no override at all.

Resumable: a cell whose thresholds.json exists is not rerun (its wall time is kept in <dir>/bench_cell.json);
a cell killed half-way resumes inside `kagglemlc train` (finished folds are kept). Results go to
<sample>/grid_results.json (every finished cell, each run merged in) and a markdown table on stdout.
Threads: OMP/MKL threads = --threads (default: the CPU count, 2 here); one cell at a time.

Code under test: --src head (default) runs kagglemlc from a snapshot of the committed HEAD
(`git archive HEAD src` into <sample>/src-<commit>/, put first on PYTHONPATH), so edits other people
make in the working tree while a long grid runs cannot change or break it half-way; --src <commit> the
same from that commit (the grid in bench/README.md: --src b89c15a); --src worktree runs the installed
(editable) package, i.e. the working tree as it is. The code is recorded per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SAMPLE = Path("/tmp/kagglemlc-defaults-bench")

# kagglemlc's defaults before the "auto" defaults (src/kagglemlc/config.py at commit b89c15a).
OLD = {
    "model.max_length": "128",
    "train.lr": "5e-5",
    "train.head_lr": "null",
    "train.epochs": "3",
    "train.batch_size": "32",
    "train.warmup_ratio": "0.06",
    "train.class_weights": "none",
    "train.early_stopping_patience": "2",
}
# The centre of the one-factor-at-a-time design: the hand-tuned setting measured earlier.
CENTRE = {**OLD, "train.head_lr": "3e-3", "train.class_weights": "sqrt", "train.epochs": "4"}


def cell(base: dict[str, str], **changes: str) -> dict[str, str]:
    return {**base, **{k.replace("__", "."): v for k, v in changes.items()}}


# In the order they are run: the cells that decide the most first.
CELLS: dict[str, dict[str, str]] = {
    "old-defaults": dict(OLD),
    "centre": dict(CENTRE),  # head_lr 3e-3, sqrt, 4 epochs
    "c-headlr-none": cell(CENTRE, train__head_lr="null"),  # head at the encoder's lr
    "c-cw-none": cell(CENTRE, train__class_weights="none"),
    "c-headlr-1e-2": cell(CENTRE, train__head_lr="1e-2"),
    "c-lr-1e-4": cell(CENTRE, train__lr="1e-4"),
    "c-ep6": cell(CENTRE, train__epochs="6"),
    "c-headlr-1e-3": cell(CENTRE, train__head_lr="1e-3"),
    "c-ep3": cell(CENTRE, train__epochs="3"),
    "c-len64": cell(CENTRE, model__max_length="64"),
    "c-bs16": cell(CENTRE, train__batch_size="16"),
    "c-warm0.1": cell(CENTRE, train__warmup_ratio="0.1"),
    "new-defaults": {},  # what kagglemlc ships; run it on request
}
NOT_BY_DEFAULT = {"new-defaults"}


def short(overrides: dict[str, str], base: dict[str, str] | None) -> str:
    """The overrides that differ from `base` (all of them when base is None)."""
    if not overrides:
        return "(none: the shipped defaults)"
    diff = {k: v for k, v in overrides.items() if base is None or base.get(k) != v}
    return " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in diff.items()) or "(the old defaults, pinned)"


REPO = Path(__file__).resolve().parents[1]


def code_under_test(src: str, sample: Path) -> tuple[dict[str, str], str]:
    """(extra environment, description) for --src head|worktree|<commit>."""

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, check=True).stdout.strip()

    if src == "worktree":
        dirty = git("status", "--porcelain", "--", "src")
        return {}, f"worktree at {git('rev-parse', '--short', 'HEAD')}" + (" + uncommitted src edits" if dirty else "")
    commit = git("rev-parse", "--short", "HEAD" if src == "head" else src)
    snap = sample / f"src-{commit}"
    if not (snap / "src" / "kagglemlc" / "__init__.py").exists():
        tmp = sample / f".src-{commit}.tmp"
        subprocess.run(
            f"rm -rf '{tmp}' && mkdir -p '{tmp}' && git -C '{REPO}' archive {commit} src | tar -x -C '{tmp}' "
            f"&& mv '{tmp}' '{snap}'",
            shell=True,
            check=True,
        )
    path = str(snap / "src") + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return {"PYTHONPATH": path}, f"commit {commit} (snapshot {snap / 'src'})"


def run_cell(name: str, sample: Path, threads: int, code_env: dict[str, str], code: str) -> dict:
    overrides = CELLS[name]
    out = sample / "runs" / name
    result_file = out / "thresholds.json"
    meta_file = out / "bench_cell.json"
    cfg = sample / "kagglemlc.yaml"
    args = [f"{k}={v}" for k, v in overrides.items()] + [f"output_dir={out}"]
    if not result_file.exists():
        out.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            **code_env,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        times = {}
        with open(out / "bench_log.txt", "a", encoding="utf-8") as log:
            for stage in ("train", "tune-thresholds"):
                cmd = [sys.executable, "-m", "kagglemlc", stage, str(cfg), *args]
                print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
                log.write(f"$ {' '.join(cmd)}\n")
                log.flush()
                t = time.perf_counter()
                rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
                times[stage] = round(time.perf_counter() - t, 1)
                if rc != 0:
                    raise SystemExit(f"[{name}] {stage} failed (exit {rc}); see {out / 'bench_log.txt'}")
        meta = {
            "overrides": overrides,
            "wall_s": round(time.perf_counter() - t0, 1),
            "stage_s": times,
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "threads": threads,
            "code": code,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        meta_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return collect(name, sample)


def collect(name: str, sample: Path) -> dict | None:
    out = sample / "runs" / name
    if not (out / "thresholds.json").exists():
        return None
    th = json.loads((out / "thresholds.json").read_text(encoding="utf-8"))
    meta = (
        json.loads((out / "bench_cell.json").read_text(encoding="utf-8")) if (out / "bench_cell.json").exists() else {}
    )
    folds = []
    for m in sorted(out.glob("fold*/metrics.json")):
        fm = json.loads(m.read_text(encoding="utf-8"))
        folds.append(
            {
                k: fm.get(k)
                for k in (
                    "fold",
                    "best_metric",
                    "best_step",
                    "steps",
                    "stopped_early",
                    "train_seconds",
                    "samples_per_second",
                    "precision",
                )
                if k in fm
            }
            | {
                "best_epoch": next(
                    (h["epoch"] for h in fm.get("history", []) if h["step"] == fm.get("best_step")), None
                ),
                "epochs_run": fm["history"][-1]["epoch"] if fm.get("history") else None,
            }
        )
    return {
        "cell": name,
        "overrides": CELLS.get(name, meta.get("overrides")),
        "vs_centre": short(CELLS.get(name, {}), CENTRE),
        "untuned": th.get("cv_at_0.5"),
        "tuned": th.get("cv_tuned"),
        "nested": th.get("cv_nested"),
        "nested_fold_mean": th.get("cv_nested_fold_mean"),
        "wall_s": meta.get("wall_s"),
        "stage_s": meta.get("stage_s"),
        "code": meta.get("code"),
        "load": [meta.get("load_before"), meta.get("load_after")],
        "folds": folds,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| cell | settings (c-*: what differs from the centre) | untuned (0.5) | tuned | nested | wall s "
        "| train samples/s | best epoch / epochs run (per fold) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = {"old-defaults": None, "centre": OLD}.get(r["cell"], CENTRE)
        what = short(r["overrides"], base) + (" (rest: old)" if r["cell"] == "centre" else "")
        f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
        rates = [d["samples_per_second"] for d in r["folds"] if d.get("samples_per_second")]
        rate = f"{sum(rates) / len(rates):.0f}" if rates else "—"
        epochs = ", ".join(f"{d.get('best_epoch') or 0:g}/{d.get('epochs_run') or 0:g}" for d in r["folds"]) or "—"
        lines.append(
            f"| {r['cell']} | {what} | {f(r['untuned'])} | {f(r['tuned'])} | {f(r['nested'])} | "
            f"{'—' if r['wall_s'] is None else round(r['wall_s'])} | {rate} | {epochs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sample",
        type=Path,
        default=DEFAULT_SAMPLE,
        help="folder written by defaults_sample.py (default: %(default)s)",
    )
    ap.add_argument(
        "--cells", nargs="+", choices=list(CELLS), help="cells to run, in this order (default: all but new-defaults)"
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="OMP/MKL threads (default: %(default)s)")
    ap.add_argument(
        "--src",
        default="head",
        help="kagglemlc code to run: head (a snapshot of HEAD, default), a commit, or worktree",
    )
    ap.add_argument("--list", action="store_true", help="print the cells and their overrides, run nothing")
    ap.add_argument("--table", action="store_true", help="print the table of finished cells, run nothing")
    ap.add_argument("--json", type=Path, help="results file (default: <sample>/grid_results.json)")
    args = ap.parse_args(argv)

    if args.list:
        for name, ov in CELLS.items():
            print(f"{name:15s} {' '.join(f'{k}={v}' for k, v in ov.items()) or '(no overrides)'}")
        return
    if not (args.sample / "kagglemlc.yaml").exists():
        raise SystemExit(
            f"{args.sample / 'kagglemlc.yaml'} missing: run python bench/defaults_sample.py --out {args.sample}"
        )
    names = args.cells or [n for n in CELLS if n not in NOT_BY_DEFAULT]
    json_path = args.json or args.sample / "grid_results.json"
    if not args.table:
        code_env, code = code_under_test(args.src, args.sample)
        print(f"kagglemlc code: {code}; threads: {args.threads}", flush=True)
        for name in names:
            r = run_cell(name, args.sample, args.threads, code_env, code)
            print(
                f"[{name}] untuned {r['untuned']:.4f}  tuned {r['tuned']:.4f}  nested {r['nested']:.4f}  "
                f"wall {r['wall_s']} s",
                flush=True,
            )
            write_results(json_path, args.sample)
    rows = write_results(json_path, args.sample)
    print(table(rows))


def write_results(json_path: Path, sample: Path) -> list[dict]:
    rows = [r for r in (collect(n, sample) for n in CELLS) if r is not None]
    sample_info = sample / "sample.json"
    doc = {
        "sample": str(sample),
        "old_defaults": OLD,
        "centre": CENTRE,
        "sample_info": {k: v for k, v in json.loads(sample_info.read_text()).items() if k != "positives"}
        if sample_info.exists()
        else None,
        "cells": rows,
    }
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
