"""K-fold splits that keep every label's positives balanced across folds.

    kagglemlc prepare configs/demo.yaml     # → <output_dir>/folds.parquet (id, fold)

multilabel → iterstrat's MultilabelStratifiedKFold; multiclass/binary → sklearn StratifiedKFold.
With `cv.group_column`, whole groups are stratified instead of rows, so no group spans two folds.
The same seed gives the same folds.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from rich.table import Table
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from kagglemlc.config import Config
from kagglemlc.core.console import info, stdout, warn
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import file_lock, write_parquet
from kagglemlc.core.paths import FOLDS_FILE, FOLDS_LOCK
from kagglemlc.data.competition import arrow_ids, cached_competition
from kagglemlc.data.experiment import changed_settings, guard_trained, record_settings, trained_folds


def assign_folds(y: np.ndarray, task: str, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Returns the fold (0..n_folds-1) of every row.

    Args:
        y: (n, L) 0/1 label matrix (one-hot for multiclass, one column for binary).
        task: multilabel | multiclass | binary.
        n_folds: K.
        seed: split seed.
        groups: optional group key per row; rows of a group share a fold.
    """
    if task == "span":  # y: whether a row has an answer
        task = "multiclass"
        y = np.hstack([y, 1 - y])
    n = len(y)
    if n < n_folds:
        raise KaggleMLCError(f"cv.folds is {n_folds} but train has only {n} rows; lower cv.folds")
    if groups is not None:
        codes, group_of_row = np.unique(groups.astype(str), return_inverse=True)
        if len(codes) < n_folds:
            raise KaggleMLCError(f"cv.group_column has {len(codes)} groups, fewer than cv.folds={n_folds}")
        if task == "multilabel":
            group_y = np.zeros((len(codes), y.shape[1]), dtype=y.dtype)
            np.maximum.at(group_y, group_of_row, y)
            return assign_folds(group_y, task, n_folds, seed)[group_of_row]

    if task == "regression":  # stratified on the targets' bins (several targets: iterstrat on all their bins)
        return assign_folds(strata(y), "multilabel" if y.shape[1] > 1 else "multiclass", n_folds, seed, groups)
    fold = np.empty(n, dtype=np.int16)
    target = y.argmax(axis=1) if task == "multiclass" else y[:, 0]
    if task == "multilabel":
        # iterstrat needs two columns: one label is stratified as (positive, negative)
        matrix = y if y.shape[1] > 1 else np.hstack([y, 1 - y])
        splits = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n), matrix)
    elif groups is not None:  # sklearn's grouped splitter keeps the rows of a group together itself
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), target, group_of_row)
    else:
        splits = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n), target)
    with warnings.catch_warnings():
        # prepare() itself warns per label with fewer positives than folds, naming the label
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            for k, (_, val) in enumerate(splits):
                fold[val] = k
        except ValueError as exc:  # e.g. more folds than rows in every class
            raise KaggleMLCError(f"cv.folds={n_folds} cannot stratify these labels ({exc}); lower cv.folds") from None
    return fold


def _bins(t: np.ndarray, name: str, bins: int) -> tuple[np.ndarray, list[str]]:
    """One target's bin of every row and the bins' names: its distinct values when few (grades: "score = 3"),
    else its quantile bins ("score bin 2")."""
    values = np.unique(t)
    if len(values) <= bins:
        return np.searchsorted(values, t), [f"{name} = {v:g}" for v in values]
    edges = np.unique(np.quantile(t, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, t, side="right"), [f"{name} bin {b + 1}" for b in range(len(edges) + 1)]


def strata(y: np.ndarray, bins: int = 5) -> np.ndarray:
    """Regression targets as one-hot bins per target (`_bins`): the (n, all bins) 0/1 matrix folds stratify on."""
    columns = []
    for t in y.T:
        codes, labels = _bins(t, "", bins)
        columns.append(np.eye(len(labels), dtype=np.int8)[codes])
    return np.hstack(columns)


def strata_names(y: np.ndarray, names: list[str], bins: int = 5) -> list[str]:
    """The column names of `strata(y)`."""
    return [label for t, name in zip(y.T, names, strict=True) for label in _bins(t, name, bins)[1]]


def fold_counts(y: np.ndarray, fold: np.ndarray, n_folds: int) -> np.ndarray:
    """(L, K) positives of every label in every fold."""
    one_hot = np.eye(n_folds, dtype=np.int64)[fold]
    return y.astype(np.int64).T @ one_hot


def _print_table(label_names: list[str], counts: np.ndarray, rows_per_fold: np.ndarray) -> None:
    table = Table(title="rows and positives per fold", show_edge=False)
    table.add_column("label")
    for k in range(counts.shape[1]):
        table.add_column(f"fold {k}", justify="right")
    table.add_column("total", justify="right")
    table.add_column("spread", justify="right")
    table.add_row(
        "rows", *map(str, rows_per_fold), str(rows_per_fold.sum()), str(np.ptp(rows_per_fold)), end_section=True
    )
    for name, row in zip(label_names, counts):
        table.add_row(name, *map(str, row), str(row.sum()), str(np.ptp(row)))
    stdout.print(table)


def read_folds(run_dir: Path) -> pd.DataFrame:
    """The experiment's folds (id as string, fold as int); a clear error when prepare has not run."""
    path = run_dir / FOLDS_FILE
    if not path.is_file():
        raise KaggleMLCError(f"{path} not found; run `kagglemlc prepare` with this config first")
    return pd.read_parquet(path)


def fold_of_rows(run_dir: Path, ids: np.ndarray | pa.Array, folds: pd.DataFrame | None = None) -> np.ndarray:
    """The fold of every row of `ids` (the competition's training ids), from folds.parquet.

    Args:
        run_dir: the experiment's directory.
        ids: the training ids, as in `CompetitionData.train_ids` (or `arrow_ids` of them).
        folds: folds.parquet's content when the caller has read it already.
    """
    folds = read_folds(run_dir) if folds is None else folds
    if same_ids(folds["id"], ids):  # the usual file: prepare wrote it in this order
        return folds["fold"].to_numpy()
    want = ids.to_numpy(zero_copy_only=False) if isinstance(ids, pa.Array) else ids
    rows = id_positions(folds["id"], want, run_dir / FOLDS_FILE, "rerun `kagglemlc prepare`")
    return folds["fold"].to_numpy()[rows]


def same_ids(found: np.ndarray | pd.Series | pa.Array | pa.ChunkedArray, ids: np.ndarray | pa.Array) -> bool:
    """Whether a file's id column lists exactly `ids`, in this order (ids compared as text)."""
    if len(found) != len(ids):
        return False
    found = arrow_ids(found)
    return found.null_count == 0 and found.equals(arrow_ids(ids))


def id_positions(found: pd.Series, ids: np.ndarray, path: Path, hint: str) -> np.ndarray:
    """Where each of `ids` sits in a file's id column; an error unless the file holds exactly these ids, once."""
    have = pd.Index(found.astype(str).to_numpy(dtype=object))
    want = pd.Index(np.asarray(ids).astype(str).astype(object))
    rows = have.get_indexer(want) if not have.has_duplicates else np.full(len(want), -1)
    if len(have) == len(want) and (rows >= 0).all():
        return rows
    lacking, unknown = want.difference(have), have.difference(want)
    detail = "duplicated ids"
    if len(lacking) or len(unknown):
        detail = f"e.g. {lacking[0]!r} missing" if len(lacking) else f"e.g. {unknown[0]!r} unknown"
    counts = f"{len(have)} vs {len(want)} rows"
    raise KaggleMLCError(f"{path}: ids do not match the competition's ({counts}, {detail}); {hint}")


def ensure_folds(cfg: Config, remake: bool = False) -> Path:
    """folds.parquet, made exactly as `prepare` makes it when it is absent (or when `remake`).

    `kagglemlc train --fold 0` is the first command users type in a competition folder. Two processes that
    start at once on a shared disk take turns here: the second finds the first one's file and uses it.

    Raises:
        KaggleMLCError: the file on disk was made with other split settings than the config's.
    """
    path = cfg.run_dir / FOLDS_FILE
    with file_lock(cfg.run_dir / FOLDS_LOCK):
        if path.is_file() and not remake:
            changes = changed_settings(cfg, ("prepare",))
            if changes:
                raise KaggleMLCError(
                    f"{path} was made with other settings ({'; '.join(changes[:4])}); "
                    "run `kagglemlc prepare` to split again, or undo the change"
                )
            return path
        info(f"{path}: {'making it again' if path.is_file() else 'not found'}; splitting as `kagglemlc prepare` does")
        return make_folds(cfg)


def make_folds(cfg: Config, resolve_auto: Callable[[list[str]], None] | None = None) -> Path:
    """Validates the competition files, splits train into folds and writes `folds.parquet` (what `prepare` does).

    Args:
        resolve_auto: called with the training texts before the settings are recorded (prepare chooses the
            `auto` settings there when the model is at hand).

    Returns:
        The path of folds.parquet.
    """
    guard_trained(cfg, stages=("prepare",))  # a new split would not match the folds already trained on the old one
    start = time.perf_counter()
    # through the cache: the stages after training then find the competition parsed and validated
    with cached_competition(cfg.competition, cfg.run_dir, with_test=True, group_column=cfg.cv.group_column) as data:
        fold = assign_folds(data.y, data.task, cfg.cv.folds, cfg.cv.seed, data.groups)
        regression = data.task == "regression"  # counted by the targets' bins
        counted = strata(data.y) if regression else data.y
        names = strata_names(data.y, data.label_names) if regression else data.label_names
        counts = fold_counts(counted, fold, cfg.cv.folds)
        for name, total in zip(names, counts.sum(axis=1)):
            if 0 < total < cfg.cv.folds:
                warn(
                    f"label '{name}' has {total} positives, fewer than cv.folds={cfg.cv.folds}: "
                    "some folds validate without it"
                )
        if resolve_auto is not None:
            resolve_auto(data.train_texts)
        if not trained_folds(cfg.run_dir):  # config.yaml describes the models there: they are the same
            record_settings(cfg)
        folds = pd.DataFrame({"id": data.train_ids.astype(str), "fold": fold})
        path = write_parquet(cfg.run_dir / FOLDS_FILE, folds)
    _print_table(names, counts, np.bincount(fold, minlength=cfg.cv.folds))
    spread = np.ptp(counts, axis=1)
    worst = int(spread.argmax())
    info(
        f"{len(fold):,} rows × {len(data.label_names)} labels in {cfg.cv.folds} folds; worst per-label spread "
        f"{spread[worst]} ('{names[worst]}'); {time.perf_counter() - start:.1f}s → {path}"
    )
    return path
