"""Crash safety of `kagglemlc run`: kill -9 at random moments, rerun the same command, compare with a clean run.

    python bench/kill_resume.py                     # ~6 min on 2 idle CPU cores: a clean run + 17 trials
    python bench/kill_resume.py --timed 3 --seed 1  # fewer random-time trials, another draw
    python bench/kill_resume.py --keep /tmp/kr      # keep every trial's folder for a look

The experiment is the tests' toy competition (tests/conftest.make_competition: 3 labels planted as
keywords, 900 training rows) with the tests' tiny random BERT (tests/tiny_models.make_encoder), 3 folds
of 5 epochs (~1,100 optimiser steps: ~8 s of training on an idle machine, ~15 s for the whole run with
process start), fp32 (`precision: no`), resumable state saved every 5 steps, early stopping off so
every run does the same work.

1. A clean run: `python -m kagglemlc run config.yaml` in a subprocess, polled every few milliseconds to
   time when each output appears (the stage timeline).
2. Trials, each in a fresh copy of the competition folder:
   - timed: SIGKILL to the run's process group after a delay drawn uniformly (seeded) over the clean
     run's duration (the machine is shared and its pace varies: a kill that comes after the run has
     finished is retried, up to 3 tries, over the duration of that uninterrupted run);
   - on an event: SIGKILL as soon as a given path appears (folds.parquet, a checkpoint being written,
     fold1/checkpoint, the best model being written, fold1/metrics.json, fold2/test.parquet, oof.parquet,
     thresholds.json, the submission CSV);
   - twice: killed during fold 0, rerun and killed again during fold 2, then the final rerun.
   After each kill every output file present is parsed (parquet, json, yaml, csv, safetensors, torch
   pickles; temp files and *.tmp / *.old folders are listed but not parsed): atomic writes mean each
   one is complete; and the submissions log as kagglemlc reads it (`data.submissions.read_log`, journaled rows
   included) must name exactly the submission CSVs present. Then the same command is rerun to completion,
   after which log.csv itself must name exactly the CSVs, and no temp file of the killed runs may remain.
3. The final oof.parquet, test.parquet, thresholds.json (thresholds and CV values), each fold's validation
   history and the submission CSV's bytes are compared with the clean run's, bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_competition  # noqa: E402
from kagglemlc.core.paths import LOG_FILE  # noqa: E402
from kagglemlc.data.submissions import read_log  # noqa: E402
from tiny_models import make_encoder  # noqa: E402

FOLDS = 3
POLL_S = 0.002
RUN_TIMEOUT_S = 1800  # generous: on a shared machine a run can take minutes
EVENTS = [
    "folds.parquet",
    "fold0/checkpoint.tmp",  # a checkpoint folder just created
    "fold1/checkpoint.tmp+5ms",  # ... and 5 ms into writing it
    "fold1/checkpoint",
    "fold1/model.tmp+2ms",  # the best model half written
    "fold1/metrics.json",  # the fold's completion mark just written, its checkpoint not yet removed
    "fold2/test.parquet",
    "oof.parquet",
    "thresholds.json",
    "submission csv",
]
"""Kill when this path (under the output dir) appears, optionally a few milliseconds later."""
TRAIN = {
    "epochs": 5,
    "lr": 5e-3,
    "batch_size": 8,
    "eval_batch_size": 64,
    "precision": "no",
    "checkpoint_every": 5,
    "early_stopping_patience": None,
}


def build(folder: Path, model: Path) -> Path:
    """The competition + config in `folder`; returns the config path."""
    return make_competition(
        folder,
        n_train=900,
        n_test=150,
        config={
            "competition": {"slug": "toy"},
            "cv": {"folds": FOLDS, "seed": 0},
            "model": {"name": str(model), "max_length": 32},
            "train": TRAIN,
        },
    )


# ---- running and killing ---------------------------------------------------------------------------


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "kagglemlc", "run", str(config)],
            cwd=config.parent,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: the kill takes any child with it
        )


def kill9(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def submission_files(folder: Path) -> list[Path]:
    subs = folder / "submissions"
    return sorted(p for p in subs.glob("*.csv") if p.name != "log.csv") if subs.is_dir() else []


def exists(folder: Path, event: str) -> bool:
    if event == "submission csv":
        return bool(submission_files(folder))
    return (folder / "run" / event).exists()


def run_to_end(config: Path, log: Path, timeline: dict[str, float] | None = None) -> tuple[int, float]:
    """Runs to completion; with `timeline`, records when each watched path first appears."""
    begin = time.perf_counter()
    proc = start(config, log)
    watched = [
        *(e.split("+")[0] for e in EVENTS),
        "fold0/checkpoint",
        "fold0/metrics.json",
        "fold1/metrics.json",
        "fold2/metrics.json",
    ]
    while proc.poll() is None:
        if timeline is not None:
            now = time.perf_counter() - begin
            for event in watched:
                if event not in timeline and exists(config.parent, event):
                    timeline[event] = now
        if time.perf_counter() - begin > RUN_TIMEOUT_S:
            kill9(proc)
            return -9, time.perf_counter() - begin
        time.sleep(POLL_S)
    return proc.returncode, time.perf_counter() - begin


def run_and_kill(config: Path, log: Path, delay: float | None = None, event: str | None = None) -> dict:
    """Starts the run and SIGKILLs it after `delay` seconds, or when `event` ("path" or "path+5ms") appears."""
    path, _, extra = (event or "").partition("+")
    offset = float(extra.removesuffix("ms")) / 1000 if extra else 0.0
    begin, seen = time.perf_counter(), None
    proc = start(config, log)
    while proc.poll() is None:
        elapsed = time.perf_counter() - begin
        if seen is None and event is not None and exists(config.parent, path):
            seen = elapsed
        if (delay is not None and elapsed >= delay) or (seen is not None and elapsed >= seen + offset):
            kill9(proc)
            return {"killed_at": elapsed, "finished_first": False}
        time.sleep(POLL_S if seen is None else POLL_S / 4)
    return {"killed_at": time.perf_counter() - begin, "finished_first": True, "returncode": proc.returncode}


# ---- what a kill left behind -------------------------------------------------------------------------


def is_temp(rel: Path) -> bool:
    return any(part.endswith((".tmp", ".old")) for part in rel.parts) or rel.name.startswith(".")


def parse(path: Path) -> None:
    """Raises unless the file is complete in its format."""
    suffix = path.suffix
    if suffix == ".parquet":
        pd.read_parquet(path)
    elif suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".yaml":
        yaml.safe_load(path.read_text(encoding="utf-8"))
    elif suffix == ".csv":
        pd.read_csv(path)
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        load_file(path)
    elif suffix in (".bin", ".pkl", ".pt"):  # accelerate's state (torch.save) or a plain pickle (competition.pkl)
        import pickle

        import torch

        try:
            torch.load(path, weights_only=False, map_location="cpu")
        except (RuntimeError, pickle.UnpicklingError):
            with open(path, "rb") as fh:
                pickle.load(fh)


def log_vs_files(folder: Path, raw: bool = False) -> str:
    """ "agree" when the submissions log names exactly the CSVs present; `raw`: log.csv alone, no journal."""
    subs = folder / "submissions"
    if not subs.is_dir():
        return "agree"
    if raw:
        logged = set(pd.read_csv(subs / LOG_FILE, dtype=str)["file"]) if (subs / LOG_FILE).is_file() else set()
    else:
        logged = set(read_log(subs)["file"])
    present = {p.name for p in submission_files(folder)}
    if logged == present:
        return "agree"
    return f"unlogged {sorted(present - logged)}, missing {sorted(logged - present)}"


def inventory(folder: Path) -> dict:
    """Outputs present after a kill: each parsed; temp leftovers listed; the log checked against the CSVs."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name != "bert")
    outputs = [p for p in files if (folder / "run") in p.parents or (folder / "submissions") in p.parents]
    invalid, temp = [], []
    for path in outputs:
        rel = path.relative_to(folder)
        if is_temp(rel):
            temp.append(str(rel))
            continue
        try:
            parse(path)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
            invalid.append(f"{rel}: {type(exc).__name__}")
    return {
        "outputs": [str(p.relative_to(folder)) for p in outputs],
        "invalid": invalid,
        "temp": temp,
        "log": log_vs_files(folder),
    }


def stage_at_kill(folder: Path, log: Path) -> str:
    """Where the killed run was, from the files it left and the last lines it printed."""
    run = folder / "run"
    if not (run / "folds.parquet").is_file():
        return "prepare"
    for k in range(FOLDS):
        fold = run / f"fold{k}"
        if not (fold / "metrics.json").is_file():
            step = None
            for name in ("checkpoint", "checkpoint.old"):
                progress = fold / name / "progress.json"
                if progress.is_file():
                    step = json.loads(progress.read_text())["step"]
                    break
            lines = log.read_text(errors="replace").splitlines()
            trained = any(f"fold {k} step" in ln and "/" in ln and _at_end(ln) for ln in lines)
            if trained:
                return f"predict fold {k}"
            return f"train fold {k}" + (f" (ckpt step {step})" if step is not None else " (no ckpt)")
    stamps = json.loads((run / "stages.json").read_text()) if (run / "stages.json").is_file() else {}
    if not (run / "oof.parquet").is_file() or "train" not in stamps:
        return "combine folds"
    if not (run / "thresholds.json").is_file() or "tune-thresholds" not in stamps:
        return "tune-thresholds"
    if not submission_files(folder) or "submit" not in stamps:
        return "submit"
    return "done"


def _at_end(line: str) -> bool:
    """True for a log line 'fold k step S/T ...' with S == T (training finished)."""
    try:
        done, total = line.split(" step ")[1].split()[0].split("/")
        return done == total
    except (IndexError, ValueError):
        return False


# ---- comparing with the clean run ----------------------------------------------------------------------


def results(folder: Path) -> dict:
    run = folder / "run"
    thresholds = json.loads((run / "thresholds.json").read_text())
    subs = submission_files(folder)
    return {
        "oof": pd.read_parquet(run / "oof.parquet"),
        "test": pd.read_parquet(run / "test.parquet"),
        "thresholds": thresholds["thresholds"],
        "cv": {k: thresholds[k] for k in ("cv_at_0.5", "cv_tuned", "cv_nested")},
        "submission": subs[-1].read_bytes() if subs else None,
        "n_submissions": len(subs),
        "metrics": [json.loads((run / f"fold{k}" / "metrics.json").read_text()) for k in range(FOLDS)],
        "leftover_checkpoints": sorted(str(p.relative_to(run)) for p in run.glob("fold*/checkpoint*")),
    }


def _frame_identical(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (
        list(a.columns) == list(b.columns)
        and a["id"].tolist() == b["id"].tolist()
        and all(np.array_equal(a[c].to_numpy(), b[c].to_numpy()) for c in a.columns if c != "id")
    )


def compare(clean: dict, got: dict) -> list[str]:
    """The differences from the clean run (empty: bit-identical)."""
    diffs = []
    for key in ("oof", "test"):
        if not _frame_identical(clean[key], got[key]):
            worst = max(
                float(np.abs(clean[key][c].to_numpy() - got[key][c].to_numpy()).max()) for c in clean[key].columns[1:]
            )
            diffs.append(f"{key}.parquet differs (max |Δ| {worst:.3g})")
    if clean["thresholds"] != got["thresholds"]:
        diffs.append("thresholds differ")
    if clean["cv"] != got["cv"]:
        diffs.append("CV values differ")
    if clean["submission"] != got["submission"]:
        diffs.append("submission CSV differs")
    for k, (a, b) in enumerate(zip(clean["metrics"], got["metrics"])):
        if [h["metric"] for h in a["history"]] != [h["metric"] for h in b["history"]] or a["best_step"] != b[
            "best_step"
        ]:
            diffs.append(f"fold{k} validation history differs")
    return diffs


# ---- the trials ----------------------------------------------------------------------------------------


@dataclass
class Trial:
    name: str
    kills: list[float | str]
    """One kill per entry, each followed by the next run: a fraction of the run's expected duration
    (a random-time kill), or an event (see EVENTS)."""


MAX_TRIES = 3
"""A random-time kill that comes after the run has finished (the shared machine got faster) is retried."""


def run_trial(trial: Trial, work: Path, model: Path, clean: dict, expected: list[float]) -> dict:
    """Kills as the trial says, reruns to the end, compares. `expected` holds the latest full-run duration."""
    folder = work / f"trial-{trial.name.replace(':', '-').replace('/', '-').replace(' ', '-')}"
    for attempt in range(1, MAX_TRIES + 1):
        shutil.rmtree(folder, ignore_errors=True)
        config = build(folder, model)
        log = folder / "log.txt"
        kills = []
        for when in trial.kills:
            how = {"event": when} if isinstance(when, str) else {"delay": when * expected[0]}
            kill = run_and_kill(config, log, **how)
            kill["stage"] = "finished before the kill" if kill["finished_first"] else stage_at_kill(folder, log)
            kill.update(inventory(folder))
            kills.append(kill)
        missed = [k for k, w in zip(kills, trial.kills) if k["finished_first"] and not isinstance(w, str)]
        if not missed or attempt == MAX_TRIES:
            break
        expected[0] = missed[0]["killed_at"]  # that run went uninterrupted: the machine's current pace
    with open(log, "a") as fh:
        fh.write("\n==== rerun ====\n")
    code, seconds = run_to_end(config, log)
    rerun_log = log.read_text(errors="replace").split("==== rerun ====")[-1]
    resumed = [
        ln.split(":")[0] + " @ step " + ln.split("resuming at step ")[1].split()[0]
        for ln in rerun_log.splitlines()
        if "resuming at step" in ln
    ]
    skipped = [ln.split(":")[0] for ln in rerun_log.splitlines() if "up to date" in ln]
    got = results(folder) if code == 0 else None
    temp_after = sorted(name for name in {_temp_name(t) for t in inventory(folder)["temp"]} if not _is_lock(name))
    diffs = compare(clean, got) if got is not None else ["rerun failed"]
    return {
        "trial": trial.name + (f" (try {attempt})" if attempt > 1 else ""),
        "kills": kills,
        "rerun_code": code,
        "rerun_s": seconds,
        "resumed": resumed,
        "skipped": skipped,
        "diffs": diffs,
        "n_submissions": None if got is None else got["n_submissions"],
        "leftover_checkpoints": None if got is None else got["leftover_checkpoints"],
        "temp_after_rerun": temp_after,
        "log_after_rerun": log_vs_files(folder, raw=True),
    }


def key_files(outputs: list[str]) -> str:
    """A short summary of the outputs present: top-level files and, per fold, what it holds."""
    top = [p.removeprefix("run/") for p in outputs if p.startswith("run/") and p.count("/") == 1]
    top = [p for p in top if not p.startswith(".")]
    folds = []
    for k in range(FOLDS):
        inside = {p.split("/")[2] for p in outputs if p.startswith(f"run/fold{k}/")}
        if inside:
            folds.append(
                f"fold{k}[{','.join(sorted(s.removesuffix('.parquet').removesuffix('.json') for s in inside))}]"
            )
    subs = [p for p in outputs if p.startswith("submissions/") and not p.endswith("log.csv")]
    log = ["log.csv"] if "submissions/log.csv" in outputs else []
    return " ".join(top + folds + ([f"{len(subs)} submission CSV"] if subs else []) + log) or "—"


def _is_lock(name: str) -> bool:
    """The OS lock files kagglemlc keeps on purpose: .lock (run), .lock-fold<k> (train), .folds.lock, .log.lock."""
    return name.startswith(".lock") or name.endswith(".lock")


def _temp_name(rel: str) -> str:
    """fold0/checkpoint.tmp/... → fold0/checkpoint.tmp; run/.thresholds.json.host-9.x1.tmp → .thresholds.json.*.tmp."""
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.endswith((".tmp", ".old")):
            return "/".join(parts[1 : i + 1])
    name = parts[-1]
    return name if not name.endswith(".tmp") else ".".join(name.split(".")[:-3]) + ".*.tmp"


def _row_cells(r: dict) -> list[str]:
    kills = "; then ".join(f"{k['killed_at']:.1f} → {k['stage']}" for k in r["kills"])
    present = " / ".join(key_files(k["outputs"]) for k in r["kills"])
    invalid = [bad for k in r["kills"] for bad in k["invalid"]]
    temp = sorted(name for name in {_temp_name(t) for k in r["kills"] for t in k["temp"]} if not _is_lock(name))
    parses = ("yes" if not invalid else "NO: " + ", ".join(invalid)) + (f" (temp: {', '.join(temp)})" if temp else "")
    rerun = f"exit {r['rerun_code']}, {r['rerun_s']:.1f} s"
    if r["resumed"]:
        rerun += "; resumed " + ", ".join(r["resumed"])
    if r["skipped"]:
        rerun += "; skipped " + ", ".join(r["skipped"])
    same = "yes" if not r["diffs"] else "NO: " + "; ".join(r["diffs"])
    notes = [f"{r['n_submissions']} submission CSVs"] if (r["n_submissions"] or 0) > 1 else []
    notes += ["left behind: " + ", ".join(r["leftover_checkpoints"])] if r["leftover_checkpoints"] else []
    notes += ["temp files still there: " + ", ".join(r["temp_after_rerun"])] if r["temp_after_rerun"] else []
    logs = [k["log"] for k in r["kills"]] + [r["log_after_rerun"]]
    log = "yes" if all(x == "agree" for x in logs) else "NO: " + "; ".join(x for x in logs if x != "agree")
    return [r["trial"], kills, present, parses, log, rerun, same + (f" ({'; '.join(notes)})" if notes else "")]


def print_table(rows: list[dict]) -> None:
    header = ["trial", "kill at (s) → stage", "outputs present at the kill", "all parse", "log = CSVs", "rerun"]
    header.append("identical?")
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(_row_cells(r)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timed", type=int, default=6, help="trials killed at a random time (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--no-events", action="store_true", help="skip the kill-on-event trials")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up while it runs, even redirected

    work = args.keep or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = make_encoder(work / "bert", "bert")
        clean_config = build(work / "clean", model)
        timeline: dict[str, float] = {}
        code, duration = run_to_end(clean_config, work / "clean" / "log.txt", timeline)
        if code != 0:
            sys.exit(f"the clean run failed (exit {code}); see {work / 'clean' / 'log.txt'}")
        clean = results(work / "clean")
        print(f"clean run: {duration:.1f} s; outputs appeared at (s):")
        for event, at in sorted(timeline.items(), key=lambda kv: kv[1]):
            print(f"  {at:6.2f}  {event}")

        rng = random.Random(args.seed)
        expected = [duration]
        trials = [Trial(f"t{i + 1}", [rng.uniform(0, 1)]) for i in range(args.timed)]
        if not args.no_events:
            trials += [Trial(f"e:{event}", [event]) for event in EVENTS]
        # killed mid fold 0, rerun, killed again mid fold 2, then the final rerun
        trials.append(Trial("twice", ["fold0/checkpoint+50ms", "fold2/checkpoint+20ms"]))

        rows = []
        for trial in trials:
            row = run_trial(trial, work, model, clean, expected)
            rows.append(row)
            kills = "; ".join(f"{k['killed_at']:.1f}s {k['stage']}" for k in row["kills"])
            print(f"{trial.name}: killed {kills}; rerun exit {row['rerun_code']}; diffs: {row['diffs'] or 'none'}")
        print_table(rows)
        identical = sum(not r["diffs"] for r in rows)
        invalid = sum(bool(k["invalid"]) for r in rows for k in r["kills"])
        disagree = sum(k["log"] != "agree" for r in rows for k in r["kills"])
        disagree += sum(r["log_after_rerun"] != "agree" for r in rows)
        temps = sum(bool(r["temp_after_rerun"]) for r in rows)
        print(
            f"\n{identical}/{len(rows)} reruns bit-identical to the clean run; {invalid} kills left unparsable "
            f"outputs; the submissions log disagreed with the CSVs {disagree} times; {temps} reruns left temp files"
        )
        if args.json:
            args.json.write_text(
                json.dumps({"clean_s": duration, "timeline": timeline, "rows": rows}, indent=1, default=str)
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
