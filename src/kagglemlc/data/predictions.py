"""The prediction files: every oof/test parquet (id + one probability column per label) is read and written here,
and the folds' files are combined into the experiment's (thresholds.json: `kagglemlc.data.thresholds`).

    write_probabilities(path, ids, probs, label_names)     # the one writer of a probability file
    probs = read_probs(run_dir / OOF_FILE, data.train_arrow_ids, label_names, hint)   # rows in the ids' order
    combine_folds(cfg, data)   # fold{k}/oof.parquet → oof.parquet, fold-averaged fold{k}/test.parquet → test.parquet
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import atomic_path, write_json, write_parquet
from kagglemlc.core.paths import (
    ANSWERS_FILE,
    FULL_DIR,
    METRICS_FILE,
    OOF_FILE,
    TEST_ANSWERS_FILE,
    TEST_FILE,
    fold_dir,
)
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.folds import id_positions, same_ids
from kagglemlc.scoring.blend import blend


def read_probs(
    path: Path, ids: np.ndarray | pa.Array, label_names: list[str], hint: str, unique: bool = False
) -> np.ndarray:
    """(len(ids), L) probabilities from an oof/test parquet, rows in the order of `ids`.

    The array is stored label-major (`probs.T` is C-contiguous), the layout the searches work in.

    Args:
        path: the parquet (id + one column per label).
        ids: the ids the file must hold, each exactly once (`folds.arrow_ids(ids)` when several files are
            checked against the same ids: converted once).
        label_names: the columns to return, in this order.
        hint: what to run when the file is missing, e.g. "run `kagglemlc train` first".
        unique: `ids` are known to be distinct (the competition checked them), so a file listing them in
            this order needs no duplicate check.

    Raises:
        KaggleMLCError: missing file or column, ids that differ from `ids`, non-finite values.
    """
    if not path.is_file():
        raise KaggleMLCError(f"{path} not found; {hint}")
    table = pq.read_table(path, memory_map=True)
    missing = [c for c in ["id", *label_names] if c not in table.column_names]
    if missing:
        raise KaggleMLCError(f"{path}: missing column '{missing[0]}' (labels: {', '.join(label_names[:8])}); {hint}")
    extra = [c for c in table.column_names if c not in ("id", *label_names)]
    if extra:
        raise KaggleMLCError(f"{path}: column '{extra[0]}' is not a label of this competition")
    probs = _label_major([table.column(name) for name in label_names])
    found = table.column("id")
    # the usual file lists the ids in the competition's order: no lookup needed
    if not same_ids(found, ids) or not (unique or found.to_pandas().is_unique):
        want = ids.to_numpy(zero_copy_only=False) if isinstance(ids, pa.Array) else ids
        probs = probs[id_positions(found.to_pandas(), want, path, hint)]
    # a NaN or infinity makes the sum non-finite: the exact check runs only then (or when huge values overflow it)
    with np.errstate(over="ignore"):
        total = probs.sum(dtype=np.float64)
    if not np.isfinite(total) and not np.isfinite(probs).all():
        raise KaggleMLCError(f"{path}: holds NaN or infinite probabilities; {hint}")
    return probs


def _label_major(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """(n, L) array of the columns, stored label-major; float columns without nulls copied once, chunk by chunk."""
    kind = columns[0].type if columns else None
    if not (pa.types.is_floating(kind) and all(c.type == kind and c.null_count == 0 for c in columns)):
        return np.stack([c.to_numpy() for c in columns]).T
    out = np.empty((len(columns), len(columns[0])), dtype=kind.to_pandas_dtype())
    for row, column in zip(out, columns, strict=True):
        start = 0
        for chunk in column.chunks:
            row[start : start + len(chunk)] = chunk.to_numpy()
            start += len(chunk)
    return out.T


def probability_frame(ids: np.ndarray, probs: np.ndarray, label_names: list[str]) -> pd.DataFrame:
    """id + one float32 probability column per label: the layout of every oof/test parquet."""
    frame = pd.DataFrame(np.asarray(probs, dtype=np.float32), columns=label_names[: np.shape(probs)[1]])
    frame.insert(0, "id", np.asarray(ids).astype(str))
    return frame


def probability_table(
    ids: np.ndarray | pa.Array, probs: np.ndarray, label_names: list[str], made_by: dict | None = None
) -> pa.Table:
    """id (as text) + one float32 column per label: the layout of every oof/test parquet; `made_by` (what produced
    the probabilities, e.g. which fold models) is kept as JSON in the file's metadata (`read_made_by`)."""
    ids = ids if isinstance(ids, pa.Array) else pa.array(np.asarray(ids).astype(str))
    columns = {name: np.asarray(probs[:, j], dtype=np.float32) for j, name in enumerate(label_names)}
    table = pa.table({"id": ids, **columns})
    return table if made_by is None else table.replace_schema_metadata({MADE_BY: json.dumps(made_by)})


MADE_BY = "kagglemlc.made_by"  # a probability file's metadata key: which models produced it


def read_made_by(path: Path) -> dict:
    """What produced a probability file (`probability_table(made_by=...)`); {} when it does not say."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[MADE_BY.encode()]) if MADE_BY.encode() in metadata else {}


def write_table(path: Path, table: pa.Table) -> None:
    """Writes a probability table to `path` as it is, fsynced: without dictionary encoding or compression
    (probabilities and unique ids gain nothing from either, and trying them was most of the time spent writing a
    million-row blend)."""
    pq.write_table(table, path, use_dictionary=False, compression="none")
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_probabilities(
    path: Path, ids: np.ndarray | pa.Array, probs: np.ndarray, label_names: list[str], made_by: dict | None = None
) -> Path:
    """An oof/test probability file, written atomically (`write_table` into a temporary file, then renamed)."""
    with atomic_path(path) as tmp:
        write_table(tmp, probability_table(ids, probs, label_names, made_by))
    return path


def average_files(sources: Sequence[Path], target: Path, made_by: dict | None = None) -> Path:
    """The mean of probability files holding the same ids and labels (one model per seed) → `target`."""
    frames = [pd.read_parquet(p) for p in sources]
    mean = average_folds(frames)
    names = list(mean.columns[1:])
    return write_probabilities(target, mean["id"].to_numpy(), mean[names].to_numpy(), names, made_by)


def average_folds(frames: Sequence[pd.DataFrame], method: str = "mean") -> pd.DataFrame:
    """Equal-weight blend of id + probability frames (the folds' test predictions), rows in the first's order.

    Raises:
        KaggleMLCError: frames with different columns or ids.
    """
    first = frames[0]
    ids = first["id"].astype(str)
    arrays = []
    for k, frame in enumerate(frames):
        if list(frame.columns) != list(first.columns):
            raise KaggleMLCError(f"prediction {k} has columns {list(frame.columns)}, not {list(first.columns)}")
        indexed = frame.set_index(frame["id"].astype(str)).drop(columns="id")
        if len(indexed) != len(ids) or not indexed.index.isin(ids).all():
            raise KaggleMLCError(f"prediction {k} covers other ids than prediction 0")
        arrays.append(indexed.loc[ids].to_numpy())
    out = pd.DataFrame(blend(arrays, method=method).astype(np.float32), columns=first.columns.drop("id"))
    out.insert(0, "id", ids.to_numpy())
    return out


def combine_fold_tests(run_dir: Path, n_folds: int, method: str = "mean") -> pd.DataFrame:
    """The fold-averaged test predictions from `fold{k}/test.parquet`, k = 0..n_folds-1."""
    paths = [fold_dir(run_dir, k) / TEST_FILE for k in range(n_folds)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise KaggleMLCError(f"{missing[0]} not found; run `kagglemlc train` (or `predict`) for every fold first")
    return average_folds([pd.read_parquet(p) for p in paths], method)


def fold_complete(cfg: Config, fold: int) -> bool:
    return (fold_dir(cfg.run_dir, fold) / METRICS_FILE).is_file()


def combine_folds(cfg: Config, data: CompetitionData) -> bool:
    """Writes the top-level oof.parquet and fold-averaged test.parquet once every fold is complete.

    Returns:
        True when both were written.
    """
    folds = range(cfg.cv.folds)
    if not all(fold_complete(cfg, k) for k in folds):
        return False
    oof = pd.concat([pd.read_parquet(fold_dir(cfg.run_dir, k) / OOF_FILE) for k in folds])
    oof = oof.set_index("id")
    train_ids = data.train_ids.astype(str)
    if len(oof) != len(train_ids) or oof.index.has_duplicates or not oof.index.isin(train_ids).all():
        raise KaggleMLCError(
            f"{cfg.run_dir}: the folds' oof.parquet files do not cover train exactly once; rerun train"
        )
    write_probabilities(cfg.run_dir / OOF_FILE, train_ids, oof.loc[train_ids].to_numpy(), list(oof.columns))
    if data.test_ids is not None:
        test = combine_fold_tests(cfg.run_dir, cfg.cv.folds)
        names = list(test.columns[1:])
        write_probabilities(cfg.run_dir / TEST_FILE, test["id"].to_numpy(), test[names].to_numpy(), names)
    info(f"all {cfg.cv.folds} folds complete → {cfg.run_dir / OOF_FILE}")
    return True


def submitted_files(cfg: Config) -> list[Path]:
    """The test probability files `submission.use` submits: test.parquet (the folds' mean), full/test.parquet (the
    full fit's) or both, averaged."""
    folds, full = cfg.run_dir / TEST_FILE, cfg.run_dir / FULL_DIR / TEST_FILE
    files = {"folds": [folds], "full": [full], "both": [folds, full]}[cfg.submission.use]
    if full in files and not full.is_file():
        raise KaggleMLCError(
            f"submission.use: {cfg.submission.use} needs {full}; set train.full_fit: true and run `kagglemlc train`"
        )
    return files


def submitted_test(cfg: Config, ids: np.ndarray | pa.Array, label_names: list[str], hint: str) -> np.ndarray:
    """The test probabilities `submission.use` submits (`submitted_files`), rows in the order of `ids`."""
    arrays = [read_probs(path, ids, label_names, hint) for path in submitted_files(cfg)]
    return arrays[0] if len(arrays) == 1 else blend(arrays)


def submitted_answers(cfg: Config, ids: np.ndarray) -> list[pd.DataFrame]:
    """The generated test answers `submission.use` submits (each fold's model, the full fit's, or all of them), one
    frame per model, rows in the order of `ids`."""
    folders = [fold_dir(cfg.run_dir, k) for k in range(cfg.cv.folds)] if cfg.submission.use != "full" else []
    folders += [cfg.run_dir / FULL_DIR] if cfg.submission.use != "folds" else []
    frames = []
    for path in (folder / TEST_ANSWERS_FILE for folder in folders):
        if not path.is_file():
            raise KaggleMLCError(f"{path} not found; submission.from: answers needs them: run `kagglemlc train` first")
        frame = pd.read_parquet(path).astype({"id": str}).set_index("id")
        wanted = pd.Index(np.asarray(ids).astype(str))
        if not wanted.isin(frame.index).all():
            raise KaggleMLCError(f"{path} holds other ids than the sample submission; run `kagglemlc predict`")
        frames.append(frame.loc[wanted])
    return frames


TEST_DIGEST = "test_sha256"  # in fold{k}/metrics.json: the content of the test file fold{k}/test.parquet predicts


def test_is_current(folder: Path, digest: str) -> bool:
    """Whether `folder` (a fold's, a seed's or the full fit's) holds test predictions of the test file `digest`."""
    try:
        recorded = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8")).get(TEST_DIGEST)
    except (OSError, ValueError):
        return False
    return recorded == digest and (folder / TEST_FILE).is_file()


def note_test_digest(folder: Path, digest: str) -> None:
    path = folder / METRICS_FILE
    if path.is_file():
        write_json(path, {**json.loads(path.read_text(encoding="utf-8")), TEST_DIGEST: digest})


def write_predictions(
    folder: Path,
    split: str,
    ids: np.ndarray,
    probs: np.ndarray,
    label_names: list[str],
    answers: pd.DataFrame | None = None,
) -> Path:
    """A fold's predictions of the "oof" (validation) or "test" rows → folder/oof.parquet or test.parquet, and a
    generative model's answers beside them (oof_answers.parquet / test_answers.parquet). The one writer of both.

    Returns:
        the probabilities' path.
    """
    if answers is not None:
        answers_file = ANSWERS_FILE if split == "oof" else TEST_ANSWERS_FILE
        write_parquet(folder / answers_file, answers.assign(id=np.asarray(ids).astype(str))[["id", *answers.columns]])
    return write_probabilities(folder / (OOF_FILE if split == "oof" else TEST_FILE), ids, probs, label_names)
