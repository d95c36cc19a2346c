"""Delimited text files as tables of strings: the encoding and delimiter found or named, every problem a user can fix
one `KaggleMLCError` naming the file (and the config key), texts built from the configured column(s) or template."""

from __future__ import annotations

import csv
import string
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from kagglemlc.core.console import warn
from kagglemlc.core.errors import KaggleMLCError

_EXT_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _sniff_delimiter(path: Path, encoding: str) -> str:
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        header = fh.readline(65536)
        head = header + fh.read(65536)
    # the header row names the columns and is short: its most frequent candidate is the delimiter
    # (csv.Sniffer alone guesses wrong when one text field fills the whole sample)
    counts = {d: header.count(d) for d in ",\t;|"}
    if max(counts.values()) > 0:
        return max(counts, key=counts.get)
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def _first_bad_line(path: Path, encoding: str) -> str:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                return f"byte {line[exc.start]:#x} on line {number}"
    return "undecodable bytes"


def _reading(path: Path, encoding: str, delimiter: str | None) -> tuple[str, str]:
    """(encoding, delimiter) to read `path` with: utf-8 also accepts a BOM; the delimiter by extension, else sniffed."""
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    return enc, delimiter or _EXT_DELIMITERS.get(path.suffix.lower()) or _sniff_delimiter(path, enc)


def read_header(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> list[str] | None:
    """A delimited file's column names, read as `read_table` would (None when they cannot be read: the stage
    that reads the whole file names the problem)."""
    try:
        enc, sep = _reading(path, encoding, delimiter)
        return [str(c) for c in pd.read_csv(path, sep=sep, nrows=0, encoding=enc, dtype=str).columns]
    except (OSError, ValueError, UnicodeDecodeError, LookupError, pd.errors.ParserError):
        return None


def read_table(path: Path, key: str, encoding: str = "utf-8", delimiter: str | None = None) -> pd.DataFrame:
    """Reads a CSV/TSV with every cell as a string ("" for empty cells).

    Args:
        path: the file.
        key: the config key that named it, for error messages (e.g. "competition.train").
        encoding: file encoding; utf-8 also accepts a byte-order mark.
        delimiter: field delimiter; default from the extension, else sniffed.
    """
    if not path.is_file():
        raise KaggleMLCError(f"{key}: file not found: {path}")
    try:
        enc, sep = _reading(path, encoding, delimiter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # index_col=False: a trailing delimiter on every data row must not turn the ids into an index
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=enc, index_col=False)
        if caught:
            _check_surplus_fields(path, sep, enc, frame, caught)
    except UnicodeDecodeError:
        raise KaggleMLCError(
            f"{path}: not valid {encoding} ({_first_bad_line(path, enc)}); "
            f"set competition.encoding (e.g. competition.encoding=latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise KaggleMLCError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise KaggleMLCError(
            f"{path}: cannot parse as delimited text ({detail}); check competition.delimiter"
        ) from None
    except LookupError:
        raise KaggleMLCError(f"competition.encoding: unknown encoding '{encoding}'") from None
    return frame


def _check_surplus_fields(path: Path, sep: str, encoding: str, frame: pd.DataFrame, caught: list) -> None:
    """pandas' parser warnings, as one line of ours. Its "Length of header ... does not match" means data rows
    with more fields than the header, whose surplus `index_col=False` drops: harmless when every surplus field
    is empty (a trailing delimiter, as spreadsheet exports write), data loss otherwise (then a user error)."""
    if not any("does not match length of data" in str(w.message) for w in caught):
        warn(f"{path}: {str(caught[0].message).strip().splitlines()[0]}")
        return
    names = [*map(str, frame.columns), "\0surplus"]  # one field more than the header: rows with more still fail
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # this read only looks at the surplus column
        wide = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding, names=names, header=0)
    surplus = wide[names[-1]]
    filled = np.flatnonzero(surplus.to_numpy() != "")
    if len(filled):
        row = int(filled[0])
        raise KaggleMLCError(
            f"{path}: data row {row + 1} has {len(names)} fields but the header names {len(names) - 1} "
            f"(the last one, {surplus.iloc[row][:40]!r}, has no column); fix the row or check competition.delimiter"
        )
    warn(f"{path}: data rows end with a delimiter the header lacks; the empty last field is ignored")


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path, key: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns[:12])) + (" ..." if len(frame.columns) > 12 else "")
        raise KaggleMLCError(f"{path}: missing column '{missing[0]}' (from {key}); the file has: {have}")


def build_texts(frame: pd.DataFrame, spec: str | list[str], path: Path, which: str) -> list[str]:
    """Joins the configured text column(s) or template into one string per row; warns on empty texts."""
    if isinstance(spec, list):
        require_columns(frame, spec, path, "competition.text_column")
        texts = frame[spec].agg(" ".join, axis=1) if spec else pd.Series([""] * len(frame))
    elif "{" in spec:
        fields = [name for _, name, _, _ in string.Formatter().parse(spec) if name]
        require_columns(frame, fields, path, "competition.text_column template")
        texts = frame.apply(lambda row: spec.format_map(row), axis=1) if len(frame) else pd.Series([], dtype=str)
    else:
        require_columns(frame, [spec], path, "competition.text_column")
        texts = frame[spec]
    texts = texts.astype(str)
    blank = texts.str.strip() == ""
    if blank.any():
        warn_empty_texts(path, which, int(blank.sum()))
        texts = texts.where(~blank, "")
    return texts.tolist()


def warn_empty_texts(path: Path, which: str, count: int) -> None:
    warn(f'{path}: {count} {which} rows have an empty text; they are used as ""')
