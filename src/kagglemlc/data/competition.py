"""Load and validate a competition's files into one label schema.

    data = load_competition(cfg.competition)
    data.y.shape         # (n_train, n_labels), 0/1 — one-hot for multiclass, one column for binary
    data.label_names     # ['admiration', ..., 'neutral']

Every problem a user can fix (missing file or column, bad label value, duplicated ids, test ids
that differ from the sample submission, wrong encoding) is a `KaggleMLCError` naming the file and
column. Ids are strings end to end, so "007" stays "007". Empty texts are warned about and used as "".
The stages after training load through `cached_competition`, which keeps the result in the experiment's
folder and reuses it while the files and settings are unchanged (see "the cache" below).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kagglemlc import __version__
from kagglemlc.config import CompetitionConfig
from kagglemlc.core.console import warn
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import atomic_path, file_digest
from kagglemlc.core.paths import CACHE_FILE
from kagglemlc.data.tables import build_texts, read_table, require_columns, warn_empty_texts


@dataclass
class CompetitionData:
    """What every stage needs from the competition files.

    The ids are text. `ids("train")` / `ids("test")` give them as the pyarrow array the id checks compare;
    `train_ids` / `test_ids` as numpy object arrays, made from the pyarrow array on first use where the data
    came from the cache (a million Python strings: most of what reading it cost stages that only compare ids).
    """

    task: str
    label_names: list[str]
    train_ids: np.ndarray
    train_texts: list[str]
    y: np.ndarray
    """(n, L) 0/1 labels (one-hot for multiclass): what folds stratify on and every metric scores."""
    groups: np.ndarray | None = None
    test_ids: np.ndarray | None = None
    test_texts: list[str] | None = None
    submission: pd.DataFrame | None = None
    """The sample submission as read (ids as strings), the template every submission must match."""
    train_pairs: list[list[str]] | None = None
    """With `competition.text_pair_column`: the second segment's texts, one list per pair column."""
    test_pairs: list[list[str]] | None = None
    soft: np.ndarray | None = None
    """With `competition.soft_labels`: the (n, L) float32 targets the model learns; `y` is them rounded (≥ 0.5,
    or the most probable class for multiclass)."""
    train_questions: list[str] | None = None
    """task span: each row's question (question_column or the fixed competition.question); None: the context alone.
    For span tasks `train_texts` / `test_texts` are the contexts and `y` is (n, 1): 1 where a row has an answer."""
    test_questions: list[str] | None = None
    answer_spans: np.ndarray | None = None
    """task span: (n, 2) the answer's characters [start, end) in its context; (0, 0) for a no-answer row."""

    @property
    def targets(self) -> np.ndarray:
        """What the loss learns from: the soft targets where there are any, else the labels."""
        return self.y if self.soft is None else self.soft

    def ids(self, which: str) -> pa.Array | None:
        """`arrow_ids` of the "train" or "test" ids (None without test ids), converted at most once."""
        held = self.__dict__[f"{which}_ids"]
        if held is None or isinstance(held, pa.Array):
            return held
        memo = _arrow_memo(f"{which}_ids")
        if memo not in self.__dict__:
            self.__dict__[memo] = arrow_ids(held)
        return self.__dict__[memo]


def _arrow_memo(name: str) -> str:
    """Where a `CompetitionData` keeps the pyarrow form of its `name` ids once it holds the numpy one."""
    return f"_{name}_arrow"


def _ids_field(name: str) -> property:
    """`CompetitionData.<name>`: a numpy object array, made from a pyarrow array held there on first use."""
    memo = _arrow_memo(name)

    def get(data: CompetitionData) -> np.ndarray | None:
        held = data.__dict__[name]
        if isinstance(held, pa.Array):
            data.__dict__[memo], data.__dict__[name] = held, held.to_numpy(zero_copy_only=False)
        return data.__dict__[name]

    def put(data: CompetitionData, value: np.ndarray | pa.Array | None) -> None:
        data.__dict__.pop(memo, None)
        data.__dict__[name] = value

    return property(get, put)


CompetitionData.train_ids = _ids_field("train_ids")
CompetitionData.test_ids = _ids_field("test_ids")


def arrow_ids(ids: np.ndarray | pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """`ids` as a pyarrow large_string array, what `folds.same_ids` compares: convert once, compare often."""
    try:
        ids = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids)
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        return ids.cast(pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # not all str: as text, as `id_positions`
        return pa.array(np.asarray(ids).astype(str), type=pa.large_string())


def _auto_labels(cfg: CompetitionConfig, submission: pd.DataFrame | None) -> list[str]:
    if cfg.labels != "auto":
        return list(cfg.labels)
    if submission is None:
        raise KaggleMLCError(
            "competition.labels is 'auto' but competition.sample_submission is not set; list the labels"
        )
    return [c for c in submission.columns if c != cfg.id_column]


def _soft_labels(train: pd.DataFrame, names: list[str], cfg: CompetitionConfig) -> np.ndarray:
    """(n, L) float32 targets in [0, 1] from the wide label columns (`competition.soft_labels`)."""
    require_columns(train, names, cfg.train, "the label columns")
    out = np.zeros((len(train), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        raw = train[name].str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        bad = ~values.between(0, 1)  # NaN (not a number) is not between either
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise KaggleMLCError(
                f"{cfg.train}: column '{name}' must hold probabilities in [0, 1] (competition.soft_labels), "
                f"found {raw.iloc[row]!r} on line {row + 2}"
            )
        out[:, j] = values.to_numpy(dtype=np.float32)
    return out


def _rounded(soft: np.ndarray, task: str) -> np.ndarray:
    """0/1 labels of soft targets: each ≥ 0.5, or the most probable class (one-hot) for multiclass."""
    if task == "multiclass":
        return np.eye(soft.shape[1], dtype=np.int8)[soft.argmax(axis=1)]
    return (soft >= 0.5).astype(np.int8)


def _targets(train: pd.DataFrame, names: list[str], cfg: CompetitionConfig) -> np.ndarray:
    """(n, T) float32 targets of a regression task from the target columns; any cell that is not a finite number is
    one error naming the column and line."""
    require_columns(train, names, cfg.train, "the target columns")
    y = np.zeros((len(train), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        raw = train[name].str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise KaggleMLCError(
                f"{cfg.train}: target column '{name}' must hold numbers, found {raw.iloc[row]!r} on line {row + 2}"
            )
        y[:, j] = values.to_numpy(dtype=np.float32)
    return y


def _wide_labels(train: pd.DataFrame, names: list[str], cfg: CompetitionConfig) -> np.ndarray:
    require_columns(train, names, cfg.train, "the label columns")
    ones = [train[name] == "1" for name in names]
    if names and all((one | (train[name] == "0")).all() for one, name in zip(ones, names)):
        # the usual file holds nothing but "0" and "1": string comparisons suffice, no number parsing
        return np.column_stack([one.to_numpy(dtype=np.int8) for one in ones])
    y = np.zeros((len(train), len(names)), dtype=np.int8)
    for j, name in enumerate(names):
        raw = train[name].str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            hint = (
                f"; for a column of class names use label_format: list with label_column: {name}"
                if cfg.task != "multilabel"
                else ""
            )
            raise KaggleMLCError(
                f"{cfg.train}: column '{name}' must hold 0/1, found {raw.iloc[row]!r} on line {row + 2}{hint}"
            )
        y[:, j] = values.to_numpy(dtype=np.int8)
    return y


def _list_label_names(train: pd.DataFrame, cfg: CompetitionConfig, submission: pd.DataFrame | None) -> list[str]:
    if cfg.labels != "auto":
        return list(cfg.labels)
    if cfg.label_names_file is not None:
        if not cfg.label_names_file.is_file():
            raise KaggleMLCError(f"competition.label_names_file: file not found: {cfg.label_names_file}")
        return [ln.strip() for ln in cfg.label_names_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if submission is not None and len(submission.columns) > 2:
        return [c for c in submission.columns if c != cfg.id_column]
    tokens = train[cfg.label_column].str.split(cfg.label_separator).explode().str.strip()
    found = sorted(set(tokens[tokens != ""]))
    return sorted(found, key=int) if all(t.lstrip("-").isdigit() for t in found) else found


def _list_labels(
    train: pd.DataFrame, cfg: CompetitionConfig, submission: pd.DataFrame | None
) -> tuple[list[str], np.ndarray]:
    require_columns(train, [cfg.label_column], cfg.train, "competition.label_column")
    names = _list_label_names(train, cfg, submission)
    index = {name: j for j, name in enumerate(names)}
    numeric_ids = cfg.labels == "auto" and cfg.label_names_file is not None
    cells = train[cfg.label_column].str.split(cfg.label_separator)
    y = np.zeros((len(train), len(names)), dtype=np.int8)
    for i, cell in enumerate(cells):
        for token in (t.strip() for t in cell):
            if not token:
                continue
            j = int(token) if numeric_ids and token.isdigit() and int(token) < len(names) else index.get(token)
            if j is None:
                raise KaggleMLCError(
                    f"{cfg.train}: column '{cfg.label_column}' line {i + 2} has unknown label {token!r}; "
                    f"known labels: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
                )
            y[i, j] = 1
    return names, y


def _check_ids(ids: pd.Series, path: Path, column: str) -> None:
    dup = ids[ids.duplicated()]
    if len(dup):
        raise KaggleMLCError(
            f"{path}: column '{column}' has duplicated ids, e.g. {dup.iloc[0]!r} ({len(dup)} duplicates)"
        )


def load_competition(
    cfg: CompetitionConfig, with_test: bool = True, group_column: str | None = None
) -> CompetitionData:
    """Reads train (and test + sample submission) and returns the validated label schema.

    Args:
        cfg: the config's competition section.
        with_test: also read and check the test file against the sample submission.
        group_column: a train column to return as `groups` (cv.group_column).

    Raises:
        KaggleMLCError: for every problem with the files the user can fix.
    """
    return _load(cfg, with_test, group_column)


@contextmanager
def cached_competition(
    cfg: CompetitionConfig,
    cache_dir: Path,
    with_test: bool = True,
    group_column: str | None = None,
    texts: bool = True,
) -> Iterator[CompetitionData]:
    """`load_competition`, reusing `cache_dir/competition.pkl` (warnings included) while it is current.

        with cached_competition(cfg.competition, cfg.run_dir, with_test=False, texts=False) as data:
            ...  # the stage's reading and checking

    The cache is (re)written when the block ends without an error, so a failing stage leaves no new file.
    With `texts=False` (a stage that never reads them) a hit leaves `train_texts`/`test_texts` None: making
    a million Python strings back is most of what reading the cache costs.
    """
    key = _cache_key(cfg)
    hit = None if key is None else _read_cache(cache_dir / CACHE_FILE, key, with_test, group_column, texts)
    if hit is not None:
        data, empty = hit
        _replay_warnings(cfg, data, empty)
        yield data
        return
    data = _load(cfg, with_test, group_column)
    yield data
    if key is not None:
        _write_cache(cache_dir / CACHE_FILE, key, data, with_test, group_column)


def _load(cfg: CompetitionConfig, with_test: bool, group_column: str | None) -> CompetitionData:
    read = lambda path, key: read_table(path, key, cfg.encoding, cfg.delimiter)  # noqa: E731
    train = read(cfg.train, "competition.train")
    if train.empty:
        raise KaggleMLCError(f"{cfg.train}: the training file has no rows")
    submission = read(cfg.sample_submission, "competition.sample_submission") if cfg.sample_submission else None
    require_columns(train, [cfg.id_column], cfg.train, "competition.id_column")
    _check_ids(train[cfg.id_column], cfg.train, cfg.id_column)
    if cfg.task == "span":
        data = _load_spans(cfg, train, submission, group_column)
        if with_test and cfg.test is not None:
            _load_test(cfg, data)
        return data

    soft = None
    if cfg.label_format == "list":
        names, y = _list_labels(train, cfg, submission)
    else:
        names = _auto_labels(cfg, submission)
        if submission is not None and cfg.labels == "auto":
            missing = [n for n in names if n not in train.columns]
            if missing:
                raise KaggleMLCError(
                    f"{cfg.train}: lacks label columns of the sample submission: {', '.join(missing[:8])}"
                    f"{' ...' if len(missing) > 8 else ''} (or set competition.label_format: list)"
                )
        soft = _soft_labels(train, names, cfg) if cfg.soft_labels else None
        if cfg.task == "regression":
            y = _targets(train, names, cfg)
        else:
            y = _wide_labels(train, names, cfg) if soft is None else _rounded(soft, cfg.task)
    if not names:
        raise KaggleMLCError("competition.labels: no labels found; list them or check competition.sample_submission")
    _check_task(cfg, names, y)

    groups = _groups(train, cfg, group_column)

    data = CompetitionData(
        task=cfg.task,
        label_names=names,
        train_ids=train[cfg.id_column].to_numpy(dtype=object),
        train_texts=build_texts(train, cfg.text_column, cfg.train, "train"),
        y=y,
        groups=groups,
        submission=submission,
        soft=soft,
        train_pairs=_pairs(train, cfg, cfg.train, "train"),
    )
    if with_test and cfg.test is not None:
        _load_test(cfg, data)
    return data


def _groups(train: pd.DataFrame, cfg: CompetitionConfig, group_column: str | None) -> np.ndarray | None:
    """cv.group_column's value per training row (None without one)."""
    if not group_column:
        return None
    require_columns(train, [group_column], cfg.train, "cv.group_column")
    return train[group_column].to_numpy(dtype=object)


def _column_texts(frame: pd.DataFrame, column: str, path: Path, key: str) -> list[str]:
    require_columns(frame, [column], path, key)
    return frame[column].fillna("").astype(str).tolist()


def _questions(frame: pd.DataFrame, cfg: CompetitionConfig, path: Path) -> list[str] | None:
    if cfg.question_column is not None:
        return _column_texts(frame, cfg.question_column, path, "competition.question_column")
    return None if cfg.question is None else [cfg.question] * len(frame)


def _load_spans(
    cfg: CompetitionConfig, train: pd.DataFrame, submission: pd.DataFrame | None, group_column: str | None
) -> CompetitionData:
    """task span: contexts, questions and each answer located in its context (first occurrence, or at
    answer_start_column); the label is the sample submission's one answer column."""
    contexts = _column_texts(train, cfg.context_column, cfg.train, "competition.context_column")
    answers = _column_texts(train, cfg.answer_column, cfg.train, "competition.answer_column")
    starts = None
    if cfg.answer_start_column is not None:
        require_columns(train, [cfg.answer_start_column], cfg.train, "competition.answer_start_column")
        starts = pd.to_numeric(train[cfg.answer_start_column], errors="coerce").fillna(-1).astype(int).tolist()
    spans = np.zeros((len(train), 2), dtype=np.int64)
    missing = []
    for i, (context, answer) in enumerate(zip(contexts, answers, strict=True)):
        at = -1 if not answer.strip() else context.find(answer) if starts is None else starts[i]
        if at < 0 or context[at : at + len(answer)] != answer:
            missing.append(i)
            continue
        spans[i] = (at, at + len(answer))
    if missing and not cfg.allow_no_answer:
        shown = "; ".join(f"line {i + 2}: {answers[i][:40]!r}" for i in missing[:3])
        raise KaggleMLCError(
            f"{cfg.train}: {len(missing)} answers are not in their context ({shown}"
            f"{' ...' if len(missing) > 3 else ''}); fix them, or set competition.allow_no_answer: true to keep them "
            "as no-answer rows"
        )
    names = [c for c in submission.columns if c != cfg.id_column] if submission is not None else [cfg.answer_column]
    if len(names) != 1:
        raise KaggleMLCError(
            f"{cfg.sample_submission}: task span writes one answer column; the sample submission has {len(names)}"
        )
    y = np.ones((len(train), 1), dtype=np.float32)
    y[missing] = 0
    groups = _groups(train, cfg, group_column)
    return CompetitionData(
        task="span",
        label_names=names,
        train_ids=train[cfg.id_column].to_numpy(dtype=object),
        train_texts=contexts,
        y=y,
        groups=groups,
        submission=submission,
        train_questions=_questions(train, cfg, cfg.train),
        answer_spans=spans,
    )


def _pairs(frame: pd.DataFrame, cfg: CompetitionConfig, path: Path, which: str) -> list[list[str]] | None:
    """The texts of every `text_pair_column` (None without pairs)."""
    columns = cfg.text_pair_column
    if columns is None:
        return None
    return [build_texts(frame, c, path, f"{which} pair") for c in ([columns] if isinstance(columns, str) else columns)]


def _check_task(cfg: CompetitionConfig, names: list[str], y: np.ndarray) -> None:
    if cfg.task == "binary" and len(names) != 1:
        raise KaggleMLCError(
            f"competition.task is binary but {len(names)} label columns were found; "
            "list the one target in competition.labels"
        )
    if cfg.task == "multiclass":
        per_row = y.sum(axis=1)
        bad = np.flatnonzero(per_row != 1)
        if len(bad):
            raise KaggleMLCError(
                f"{cfg.train}: line {bad[0] + 2} has {per_row[bad[0]]} labels but competition.task is multiclass "
                f"(exactly one); use task: multilabel"
            )
    if cfg.task == "regression":
        if cfg.metric == "qwk" and (len(names) != 1 or not np.array_equal(y, np.rint(y))):
            raise KaggleMLCError(
                f"competition.metric: qwk scores one integer grade per row; {cfg.train.name} has {len(names)} target "
                "column(s) " + ("" if len(names) != 1 else "with non-integer values")
            )
        return
    for name in (n for n, pos in zip(names, y.sum(axis=0)) if pos == 0):
        warn(f"label '{name}' has no positive rows in {cfg.train.name}; it can never be learned")


def _load_test(cfg: CompetitionConfig, data: CompetitionData) -> None:
    test = read_table(cfg.test, "competition.test", cfg.encoding, cfg.delimiter)
    require_columns(test, [cfg.id_column], cfg.test, "competition.id_column")
    _check_ids(test[cfg.id_column], cfg.test, cfg.id_column)
    data.test_ids = test[cfg.id_column].to_numpy(dtype=object)
    if cfg.task == "span":
        data.test_texts = _column_texts(test, cfg.context_column, cfg.test, "competition.context_column")
        data.test_questions = _questions(test, cfg, cfg.test)
    else:
        data.test_texts = build_texts(test, cfg.text_column, cfg.test, "test")
        data.test_pairs = _pairs(test, cfg, cfg.test, "test")
    if data.submission is not None:
        sub = data.submission
        require_columns(sub, [cfg.id_column], cfg.sample_submission, "competition.id_column")
        test_set, sub_set = set(data.test_ids), set(sub[cfg.id_column])
        if len(sub) != len(test) or test_set != sub_set:
            only_test = sorted(test_set - sub_set)[:1]
            only_sub = sorted(sub_set - test_set)[:1]
            example = (
                f"e.g. {only_test[0]!r} only in test"
                if only_test
                else f"e.g. {only_sub[0]!r} only in sample submission"
                if only_sub
                else "duplicated ids"
            )
            raise KaggleMLCError(
                f"{cfg.test}: ids do not match {cfg.sample_submission.name} ({len(test)} vs {len(sub)} rows, {example})"
            )


# ---- the cache -----------------------------------------------------------------------------------
# Parsing and validating the CSVs is most of what the stages after training spend at 1M rows. A stage
# that loads through `cached_competition` (prepare included) keeps the result; it is reused only while the key
# matches: the competition settings, the package version and the path and content sha256 of every configured
# competition file. Any edit of a file or of the settings is a miss, and a miss loads and validates the files
# as always. The cache is kept per experiment (its output_dir), where stages may write; the texts come along,
# so a hit returns exactly what a load returns (the sample submission's repeated columns are stored once),
# except that a stage may decline the texts (and test ids) it never reads: those parts are then not unpickled.


def _cache_key(cfg: CompetitionConfig) -> dict | None:
    """What the cached data depends on; None when a configured file is missing (the load reports it)."""
    paths = [p for p in (cfg.train, cfg.test, cfg.sample_submission, cfg.label_names_file) if p is not None]
    if not all(p.is_file() for p in paths):
        return None
    # content, not size + mtime: a file replaced within the same second must not reuse the cache (hashed
    # concurrently: hashlib releases the GIL)
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        stamps = [(str(p.resolve()), digest) for p, digest in zip(paths, pool.map(file_digest, paths), strict=True)]
    return {"version": __version__, "settings": cfg.model_dump(mode="json"), "files": stamps}


def _pack_sample(sample: pd.DataFrame | None) -> dict | None:
    """The sample submission with each column of one repeated value (most of them) kept as that value."""
    if sample is None:
        return None
    repeated = [c for c in sample if len(sample) and (sample[c] == sample[c].iloc[0]).all()]
    return {
        "columns": list(sample.columns),
        "varying": sample.drop(columns=repeated),
        "repeated": {c: (sample[c].iloc[0], sample[c].dtype) for c in repeated},
    }


def _unpack_sample(packed: dict | None) -> pd.DataFrame | None:
    if packed is None:
        return None
    varying, repeated = packed["varying"], packed["repeated"]
    filled: dict = {}  # one column per (value, dtype): most sample submissions repeat a single "0"
    for value, dtype in repeated.values():
        if (value, str(dtype)) not in filled:
            filled[value, str(dtype)] = pd.Series(value, index=varying.index, dtype=dtype)
    return pd.DataFrame(
        {c: filled[repeated[c][0], str(repeated[c][1])] if c in repeated else varying[c] for c in packed["columns"]}
    )


# The file: the key, a header, then pickled parts read only when asked for (the test's and the texts' make
# up most of it and most stages need neither).
_PARTS = ("core", "test_ids", "train_texts", "test_texts")


def _write_cache(path: Path, key: dict, data: CompetitionData, with_test: bool, group_column: str | None) -> None:
    texts = {"train_texts": data.train_texts, "test_texts": data.test_texts}
    core = {f.name: getattr(data, f.name) for f in fields(data) if f.name not in ("train_ids", "test_ids", *texts)}
    core |= {"train_ids": data.ids("train"), "submission": _pack_sample(data.submission)}
    # ids as pyarrow arrays: pickled as buffers, read back in milliseconds (and as Python strings only when used)
    parts = [pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL) for part in (core, data.ids("test"), *texts.values())]
    empty = {which: 0 if t is None else t.count("") for which, t in texts.items()}  # replayed as warnings
    header = {"with_test": with_test, "group_column": group_column, "empty": empty, "sizes": [len(p) for p in parts]}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(key, fh, protocol=pickle.HIGHEST_PROTOCOL)  # first, so that a stale cache is read no further
        pickle.dump(header, fh, protocol=pickle.HIGHEST_PROTOCOL)
        for part in parts:
            fh.write(part)


def _read_cache(
    path: Path, key: dict, with_test: bool, group_column: str | None, texts: bool
) -> tuple[CompetitionData, dict[str, int]] | None:
    """The cached data (and its count of empty texts) when its key matches and it holds what is asked; else None."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            if pickle.load(fh) != key:
                return None
            header = pickle.load(fh)
            if (with_test and not header["with_test"]) or group_column not in (None, header["group_column"]):
                return None
            wanted = {"core", "test_ids"} if with_test else {"core"}
            wanted |= {"train_texts", "test_texts"} if texts and with_test else {"train_texts"} if texts else set()
            parts = {}
            for name, size in zip(_PARTS, header["sizes"], strict=True):
                if name in wanted:
                    parts[name] = pickle.loads(fh.read(size))
                else:
                    fh.seek(size, 1)
    except Exception:  # unreadable (truncated, written by another pandas ...): a miss, the files are read again
        return None
    data = CompetitionData(**{"train_texts": None, **parts.pop("core"), **parts})
    data.submission = _unpack_sample(data.submission)
    if group_column is None:
        data.groups = None
    return data, header["empty"] if with_test else {**header["empty"], "test_texts": 0}


def _replay_warnings(cfg: CompetitionConfig, data: CompetitionData, empty: dict[str, int]) -> None:
    """The warnings a full load gives, in its order."""
    _check_task(cfg, data.label_names, data.y)
    for which, path in (("train", cfg.train), ("test", cfg.test)):
        if empty[f"{which}_texts"]:
            warn_empty_texts(path, which, empty[f"{which}_texts"])
