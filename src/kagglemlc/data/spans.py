"""Span predictions on disk (`competition.task: span`): the same oof.parquet / test.parquet names as every task, one
row per id with the decoded span (text, score, start, end: characters of the context) and the per-character logits
it was decoded from (start_logits, end_logits, null), so that folds and experiments average logits, not texts.

    write_spans(fold_dir, "oof", ids, frame, logits)
    frame, logits = read_spans(path, ids)                  # rows in the order of `ids`
    combine_span_folds(cfg, data)                          # fold{k}/ → oof.parquet, fold-averaged test.parquet
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_parquet
from kagglemlc.core.paths import METRICS_FILE, OOF_FILE, TEST_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData
from kagglemlc.scoring.spans import SpanLogits, average_logits, best_span

SPAN_COLUMNS = ["id", "text", "score", "start", "end", "start_logits", "end_logits", "null"]


def span_frame(ids: np.ndarray, decoded: pd.DataFrame, logits: Sequence[SpanLogits]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.asarray(ids).astype(str),
            "text": decoded["text"].to_numpy(dtype=object),
            "score": decoded["score"].to_numpy(dtype=np.float64),
            "start": decoded["start"].to_numpy(dtype=np.int64),
            "end": decoded["end"].to_numpy(dtype=np.int64),
            "start_logits": [lg.start.astype(np.float32) for lg in logits],
            "end_logits": [lg.end.astype(np.float32) for lg in logits],
            "null": np.array([lg.null for lg in logits], dtype=np.float64),
        }
    )


def write_spans(folder: Path, split: str, ids: np.ndarray, decoded: pd.DataFrame, logits: Sequence[SpanLogits]) -> Path:
    """A fold's spans of its validation ("oof") or test rows → folder/oof.parquet or test.parquet."""
    path = folder / (OOF_FILE if split == "oof" else TEST_FILE)
    write_parquet(path, span_frame(ids, decoded, logits))
    return path


def read_spans(path: Path, ids: np.ndarray | None = None) -> tuple[pd.DataFrame, list[SpanLogits]]:
    """A span file's decoded rows and logits, in the order of `ids` (as written without)."""
    if not path.is_file():
        raise KaggleMLCError(f"{path} not found; run `kagglemlc train` first")
    frame = pd.read_parquet(path)
    if list(frame.columns) != SPAN_COLUMNS:
        raise KaggleMLCError(f"{path}: not span predictions (columns {list(frame.columns)[:4]} ...); rerun train")
    if ids is not None:
        frame = frame.set_index("id")
        wanted = np.asarray(ids).astype(str)
        if len(frame) != len(wanted) or not frame.index.isin(wanted).all() or frame.index.has_duplicates:
            raise KaggleMLCError(f"{path}: its ids are not the competition's; rerun train")
        frame = frame.loc[wanted].reset_index()
    logits = [
        SpanLogits(np.asarray(s, np.float32), np.asarray(e, np.float32), float(n))
        for s, e, n in zip(frame["start_logits"], frame["end_logits"], frame["null"], strict=True)
    ]
    return frame, logits


def answer_texts(data: CompetitionData, rows: np.ndarray | None = None) -> list[str]:
    """The true answers of training `rows` (all by default): their spans' characters ("" for no-answer rows)."""
    spans, contexts = data.answer_spans, data.train_texts
    rows = range(len(contexts)) if rows is None else rows
    return [contexts[r][spans[r, 0] : spans[r, 1]] for r in rows]


def decode_all(contexts: list[str], logits: Sequence[SpanLogits], max_tokens: int, allow_empty: bool) -> pd.DataFrame:
    decoded = [best_span(c, lg, max_tokens, allow_empty=allow_empty) for c, lg in zip(contexts, logits, strict=True)]
    return pd.DataFrame(decoded, columns=["text", "score", "start", "end"])


def average_span_files(
    paths: Sequence[Path], ids: np.ndarray, contexts: list[str], cfg: Config, weights: Sequence[float] | None = None
) -> tuple[pd.DataFrame, list[SpanLogits]]:
    """Several models' span files of the same rows: logits averaged per character, then decoded again."""
    members = [read_spans(p, ids)[1] for p in paths]
    logits = [average_logits(list(rows), None if weights is None else list(weights)) for rows in zip(*members)]
    m = cfg.model
    return decode_all(contexts, logits, m.max_answer_tokens, cfg.competition.allow_no_answer), logits


def combine_span_folds(cfg: Config, data: CompetitionData) -> bool:
    """The top-level oof.parquet (every fold's validation rows) and test.parquet (the folds' logits averaged, decoded
    again) once every fold is complete. Returns True when written."""
    folds = range(cfg.cv.folds)
    if not all((fold_dir(cfg.run_dir, k) / METRICS_FILE).is_file() for k in folds):
        return False
    oof = pd.concat([pd.read_parquet(fold_dir(cfg.run_dir, k) / OOF_FILE) for k in folds]).set_index("id")
    train_ids = data.train_ids.astype(str)
    if len(oof) != len(train_ids) or oof.index.has_duplicates or not oof.index.isin(train_ids).all():
        raise KaggleMLCError(f"{cfg.run_dir}: the folds' oof.parquet files do not cover train once; rerun train")
    write_parquet(cfg.run_dir / OOF_FILE, oof.loc[train_ids].reset_index()[SPAN_COLUMNS])
    if data.test_ids is not None:
        paths = [fold_dir(cfg.run_dir, k) / TEST_FILE for k in folds]
        decoded, logits = average_span_files(paths, data.test_ids, data.test_texts or [], cfg)
        write_parquet(cfg.run_dir / TEST_FILE, span_frame(data.test_ids, decoded, logits))
    info(f"all {cfg.cv.folds} folds complete → {cfg.run_dir / OOF_FILE}")
    return True
