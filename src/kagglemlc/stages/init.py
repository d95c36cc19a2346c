"""`kagglemlc init [FOLDER]`: a commented kagglemlc.yaml from the competition files found in a folder.

    kagglemlc init                 # in a folder with train.csv, test.csv, sample_submission.csv
    kagglemlc train --fold 0       # then the chain reads ./kagglemlc.yaml

The files are found by name (train*, test*, sample_submission* with .csv/.tsv), then the id, text and label columns
and the task are guessed from their headers and values and from the sample submission: every guess is marked
`# guessed:` in the file, with what it was guessed from. An existing kagglemlc.yaml is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kagglemlc.config import load_config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_text
from kagglemlc.core.paths import DEFAULT_CONFIG_FILE
from kagglemlc.data.tables import read_table

SUFFIXES = (".csv", ".tsv")
SEPARATORS = (",", ";", "|", " ")


def _find(folder: Path, stem: str) -> Path | None:
    """`stem.csv`/`.tsv`, else the one file whose name starts with `stem` (None when none or several)."""
    for suffix in SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.name.lower().startswith(stem))
    return found[0] if len(found) == 1 else None


def _is_binary(values: pd.Series) -> bool:
    return bool(values.isin(["0", "1"]).all())


def _guess(train: pd.DataFrame, sample: pd.DataFrame | None) -> tuple[dict, list[str]]:
    """The competition section and the notes on what was guessed from what."""
    notes: list[str] = []
    columns = list(train.columns)
    if sample is not None and sample.columns[0] in columns:
        id_column = sample.columns[0]
        notes.append(f"id_column: the sample submission's first column, '{id_column}'")
    else:
        id_column = next((c for c in columns if c.lower() in ("id", "row_id", "text_id")), None) or next(
            (c for c in columns if train[c].is_unique), columns[0]
        )
        notes.append(f"id_column: '{id_column}', a column of unique values")
    targets = [c for c in (sample.columns[1:] if sample is not None else []) if c in columns]
    others = [c for c in columns if c != id_column and c not in targets]
    if not targets:  # no sample submission: 0/1 columns are the labels
        targets = [c for c in others if _is_binary(train[c])]
        others = [c for c in others if c not in targets]
    lengths = {c: train[c].str.len().mean() for c in others}
    if not lengths:
        raise KaggleMLCError("init: found no text column besides the id and the labels; write kagglemlc.yaml by hand")
    text_column = max(lengths, key=lengths.get)
    notes.append(f"text_column: '{text_column}', the column with the longest values")
    comp: dict = {"id_column": id_column, "text_column": text_column}
    if len(targets) > 1 and all(_is_binary(train[c]) for c in targets):
        one_each = bool((train[targets].astype(int).sum(axis=1) == 1).all())
        comp |= {"task": "multiclass" if one_each else "multilabel", "label_format": "wide"}
        notes.append(f"task: {comp['task']}, {len(targets)} 0/1 label columns" + (", one per row" if one_each else ""))
    elif len(targets) == 1 and _is_binary(train[targets[0]]):
        comp |= {"task": "binary", "labels": [targets[0]], "metric": "f1"}
        notes.append(f"task: binary, one 0/1 target '{targets[0]}' (metric f1: the positive class's F1)")
    elif len(targets) == 1:
        values = train[targets[0]].astype(str)
        separator = next((s for s in SEPARATORS if values.str.contains(s, regex=False).any()), None)
        comp |= {"label_format": "list", "label_column": targets[0]}
        if separator is not None and separator != " ":
            comp |= {"task": "multilabel", "label_separator": separator}
            notes.append(f"task: multilabel, '{targets[0]}' lists labels separated by '{separator}'")
        else:
            comp |= {"task": "multiclass"}
            notes.append(f"task: multiclass, '{targets[0]}' holds one class name per row")
    else:
        raise KaggleMLCError(
            "init: could not tell the label columns (no sample submission naming them, no 0/1 columns); "
            "write kagglemlc.yaml by hand (README, Quick start)"
        )
    return comp, notes


def init(folder: str | Path = ".") -> Path:
    """Writes `<folder>/kagglemlc.yaml` guessed from the competition files there and checks that it loads.

    Raises:
        KaggleMLCError: the file exists already, or no training file / columns can be told apart.
    """
    folder = Path(folder).resolve()
    out = folder / DEFAULT_CONFIG_FILE
    if out.exists():
        raise KaggleMLCError(f"{out} exists; init never overwrites it (edit it, or remove it and run init again)")
    if not folder.is_dir():
        raise KaggleMLCError(f"{folder}: no such folder")
    train_path = _find(folder, "train")
    if train_path is None:
        raise KaggleMLCError(f"{folder}: no train.csv / train.tsv (or one file named train*) found")
    test_path, sample_path = _find(folder, "test"), _find(folder, "sample_submission")
    train = read_table(train_path, "competition.train")
    sample = None if sample_path is None else read_table(sample_path, "competition.sample_submission")
    comp, notes = _guess(train, sample)
    files = {"train": train_path.name}
    files |= {} if test_path is None else {"test": test_path.name}
    files |= {} if sample_path is None else {"sample_submission": sample_path.name}
    lines = [
        f"# kagglemlc.yaml written by `kagglemlc init` from the files in {folder.name}/; check every `guessed:` line.",
        "# Every key: README, Config reference. Run: kagglemlc train --fold 0 (or kagglemlc run).",
        "competition:",
        *(f"  {key}: {value}" for key, value in files.items()),
    ]
    for key, value in comp.items():
        note = next((n for n in notes if n.startswith(f"{key}:")), None)
        shown = f"[{', '.join(value)}]" if isinstance(value, list) else value
        shown = repr(value) if key == "label_separator" else shown
        lines.append(f"  {key}: {shown}" + (f"  # guessed: {note.split(': ', 1)[1]}" if note else ""))
    lines += ["model:", "  name: minilm  # the bundled MiniLM; a local folder or a hub id for a larger model"]
    if comp.get("task") == "multiclass":
        lines += ["train:", "  loss: ce  # one class per row: cross-entropy"]
    lines += ["output_dir: runs/" + (folder.name or "experiment")]
    write_text(out, "\n".join(lines) + "\n")
    try:
        load_config(out)
    except KaggleMLCError as exc:
        out.unlink()
        raise KaggleMLCError(f"init: the guessed config does not load ({exc}); write kagglemlc.yaml by hand") from None
    info(f"{out}: {comp.get('task', 'multilabel')} task, {'; '.join(notes)}")
    return out
