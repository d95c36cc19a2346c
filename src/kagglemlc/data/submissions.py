"""The submissions folder: its log (submissions/log.csv, one row per written submission) and the journal that
keeps the log and the CSVs agreeing through a kill.

    with log_lock(folder):
        path = new_submission_path(folder, "demo-20250301T120000Z")
        journal(folder, {"file": path.name, ...})    # 1. the row, journaled
        ...                                          # 2. the CSV written
        write_log(folder, read_log(folder))          # 3. the row in the log, the journal spent
    read_log(folder)["public_score"]

A submission is written in three atomic steps under the log's lock: its log row is journaled in
`.<file>.pending.json`, the CSV is written, the log is rewritten with the row and the journal removed.
A kill between any two leaves a journal; `read_log` counts a journaled row as logged exactly when its
CSV exists, so the log and the files agree after any kill, and the next writer makes it permanent.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from kagglemlc.core.files import file_lock, write_csv, write_json
from kagglemlc.core.paths import LOG_FILE, LOG_LOCK, PENDING

LOG_COLUMNS = ["file", "experiment", "cv", "message", "time", "public_score"]


def log_lock(submission_dir: Path) -> AbstractContextManager:
    """The lock every writer of the log holds: concurrent submits take turns, none loses another's row."""
    return file_lock(submission_dir / LOG_LOCK)


def read_log(submission_dir: Path) -> pd.DataFrame:
    """submissions/log.csv as strings (empty cells ""), with every LOG_COLUMNS column; empty when absent.

    Journaled rows whose CSV was written but not yet logged (a kill in between) are included.
    """
    path = submission_dir / LOG_FILE
    log = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=LOG_COLUMNS)
    for column in LOG_COLUMNS:
        if column not in log.columns:
            log[column] = ""
    logged = set(log["file"])
    journals = sorted(submission_dir.glob(PENDING.format(file="*")), key=lambda p: p.stat().st_mtime_ns)  # oldest first
    journaled = [json.loads(p.read_text(encoding="utf-8")) for p in journals]
    written = [row for row in journaled if row["file"] not in logged and (submission_dir / row["file"]).is_file()]
    return pd.concat([log, pd.DataFrame(written, dtype=str)], ignore_index=True) if written else log


def journal(submission_dir: Path, row: dict[str, Any]) -> Path:
    """Journals the log row of a submission about to be written (under `log_lock`)."""
    return write_json(submission_dir / PENDING.format(file=row["file"]), row)


def write_log(submission_dir: Path, log: pd.DataFrame) -> Path:
    """Rewrites the whole log atomically (a crash never leaves half a line); then the journals are spent.

    Only under `log_lock`: a journal seen by its holder is its own or a killed writer's.
    """
    path = write_csv(submission_dir / LOG_FILE, log)
    for journal_file in submission_dir.glob(PENDING.format(file="*")):
        journal_file.unlink(missing_ok=True)
    return path


def new_submission_path(submission_dir: Path, stem: str) -> Path:
    """`<stem>.csv` in the folder, or `<stem>-2.csv`, ... when taken (two submissions within one second)."""
    path, n = submission_dir / f"{stem}.csv", 2
    while path.exists():
        path, n = submission_dir / f"{stem}-{n}.csv", n + 1
    return path
