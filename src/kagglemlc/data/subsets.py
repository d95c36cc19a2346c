"""Smaller versions of a competition's training file, for studies: fewer labels, fewer rows.

    names = most_frequent_labels(data, 4)                       # the 4 labels with the most positives
    rows = stratified_rows(data, 800, seed=42)                  # 800 rows, every label's share kept
    overrides = write_subset(cfg.competition, data, rows, names, folder / "train-800-4.csv")

The subset is written as a training file of the same shape (the same columns, delimiter and label format), so
the experiment that reads it is an ordinary one; the overrides point the config at it with the labels listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedShuffleSplit

from kagglemlc.config import CompetitionConfig
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_csv
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.tables import read_table


def most_frequent_labels(data: CompetitionData, n: int) -> list[str]:
    """The `n` labels with the most positives, in the competition's label order (ties: the earlier label)."""
    if not 1 <= n <= len(data.label_names):
        raise KaggleMLCError(f"data.labels: {n} labels asked for, the competition has {len(data.label_names)}")
    counts = data.y.sum(axis=0)
    chosen = sorted(np.argsort(-counts, kind="stable")[:n])
    return [data.label_names[j] for j in chosen]


def named_labels(data: CompetitionData, names: list[str]) -> list[str]:
    """`names`, checked against the competition's labels and put in its label order."""
    unknown = [name for name in names if name not in data.label_names]
    if unknown:
        raise KaggleMLCError(
            f"data.labels: unknown label '{unknown[0]}'; the labels are {', '.join(data.label_names[:12])}"
            + (" ..." if len(data.label_names) > 12 else "")
        )
    return [name for name in data.label_names if name in names]


def stratified_rows(data: CompetitionData, n: int, seed: int) -> np.ndarray:
    """Sorted positions of `n` training rows drawn so that every label keeps its share (iterstrat for multilabel,
    scikit-learn for one label per row); the same `n` and seed give the same rows."""
    total = len(data.y)
    if not 1 <= n <= total:
        raise KaggleMLCError(f"data.train_rows: {n} rows asked for, the training file has {total}")
    if n == total:
        return np.arange(total)
    if data.task == "multilabel":
        split = MultilabelStratifiedShuffleSplit(n_splits=1, train_size=n, test_size=total - n, random_state=seed)
        chosen, _ = next(split.split(np.zeros(total), data.y))
    else:
        classes = data.y.argmax(axis=1)
        if np.bincount(classes).min() < 2 or n < len(np.unique(classes)):  # too few to stratify: a plain draw
            chosen = np.random.default_rng(seed).choice(total, size=n, replace=False)
        else:
            split = StratifiedShuffleSplit(n_splits=1, train_size=n, test_size=total - n, random_state=seed)
            chosen, _ = next(split.split(np.zeros(total), classes))
    return np.sort(np.asarray(chosen)[:n])


def write_subset(
    comp: CompetitionConfig,
    data: CompetitionData,
    rows: np.ndarray,
    labels: list[str],
    path: Path,
) -> list[str]:
    """Writes the training file restricted to `rows` (positions) and `labels` to `path`, in the original's
    shape: wide label columns outside `labels` dropped, list labels outside them removed from each row; with one
    label per row, rows of other labels dropped. Returns the overrides that make a config read it (the labels
    listed, no test file: a study scores out of fold). A file already at `path` is kept: the caller names it after
    the rows and labels it holds, so it is the same subset written by an earlier run."""
    if not path.is_file():
        _write_subset(comp, data, rows, labels, path)
    return [
        f"competition.train={path}",
        f"competition.labels={json.dumps(labels)}",
        "competition.delimiter=','",
        "competition.encoding=utf-8",
        "competition.label_names_file=null",
        "competition.test=null",
        "competition.sample_submission=null",
    ]


def _write_subset(
    comp: CompetitionConfig, data: CompetitionData, rows: np.ndarray, labels: list[str], path: Path
) -> None:
    frame = read_table(comp.train, "competition.train", comp.encoding, comp.delimiter).iloc[rows]
    keep = set(labels)
    if comp.label_format == "wide":
        frame = frame.drop(columns=[name for name in data.label_names if name not in keep])
        if comp.task != "multilabel":
            frame = frame[frame[labels].eq("1").any(axis=1)]
    else:
        separator = comp.label_separator
        index = {name: j for j, name in enumerate(data.label_names)}
        numeric = comp.labels == "auto" and comp.label_names_file is not None

        def kept(cell: str) -> str:
            tokens = [t.strip() for t in cell.split(separator) if t.strip()]
            names = [data.label_names[int(t)] if numeric and t.isdigit() else t for t in tokens]
            return separator.join(name for name in names if name in keep and name in index)

        frame = frame.assign(**{comp.label_column: frame[comp.label_column].map(kept)})
        if comp.task != "multilabel":
            frame = frame[frame[comp.label_column] != ""]
    write_csv(path, frame)
