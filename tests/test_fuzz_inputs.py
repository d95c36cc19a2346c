"""Hostile competition files through the real commands: `prepare` → fabricated probabilities → `tune-thresholds`
→ `submit`, for random mixes of delimiters, quoting, line endings, BOMs, unicode, long and empty texts,
numeric-looking ids, float labels, missing values, extra columns and shuffled column orders.

Every generated case must end one of two ways:
- it works, and correctly: folds.parquet holds every train id exactly once, the texts, labels and ids
  read back are the ones written (ids as strings, "007" stays "007"), and the submission has exactly the
  sample submission's ids, order and columns, with the tuned thresholds applied;
- or the command exits with code 2, prints exactly one `error:` line (the last one, no traceback) and
  leaves no new file in the output or submissions folder.
Either way no raw library warning (pandas' ParserWarning ...) reaches the user: only lines of ours.

Cases with a planted defect (a bad label cell, a duplicated id, ids that differ from the sample
submission, a mid-file ragged row, a wrong encoding...) must end the second way; clean cases whose
delimiter comes from the extension or `competition.delimiter` must end the first way. Only a sniffed
delimiter (a .txt file) may turn a clean case into a clean error.

    python -m pytest -q tests/test_fuzz_inputs.py                      # prints how many cases ended which way
    FUZZ_EXAMPLES=600 python -m pytest -q tests/test_fuzz_inputs.py   # a longer hunt (~2 min)
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from conftest import make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.core.files import write_parquet
from kagglemlc.data.competition import load_competition
from kagglemlc.data.predictions import probability_frame

OUTCOMES: Counter[str] = Counter()
"""How every generated or explicit case ended, reported when the module finishes."""

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "70"))

# ---- pools of hostile names and values -------------------------------------------------------------

ID_COLUMNS = ["id", "ID", "row id", "🆔", "0"]
TEXT_COLUMNS = ["text", "comment text", "tëxt", "body;1", "a|b"]
LABEL_POOL = ["joy", "anger", "fear", "ang er", "fe,ar", "😀 smile", "007", "1.0", "naïve", 'q"t', "a;b", "p|q", "x\ty"]
EXTRA_COLUMNS = ["extra", "notes", "Unnamed", "score", "date"]
HOSTILE_IDS = [
    "007", "0001", "0", "00", "-0", "+1", "1e3", "1.0", "1,5", "NA", "nan", "None", "null", "NULL", "#1",
    " 7", "7 ", "a,b", 'q"t', "ü", "😀", "x;y", "p|q", "0x1F", "1_000", "٣", "",
]  # fmt: skip
TEXT_PIECES = [
    "happy day", "furious", "a, b, c", 'she said "hi"', '"', '""', "line1\nline2", "crlf\r\nend", "cr\ronly",
    "semi;colon", "pi|pe", "tab\there", "façade ü 中文 עברית", "😀🎉👍🏽", "", "   ", "NA", "null", "nan",
    "#comment", "'single'", "\\backslash\\", "trailing,", ",leading", "\u2028sep\u2029", "\x0bvt\x0c",
]  # fmt: skip
LONG_TEXT = ('lorem ipsum, dolor; sit|amet "q" ' * 4000)[:100_000]


# ---- writing delimited files by hand (full control of quoting, line endings, BOM) ------------------


@dataclass
class Layout:
    """How one file is written."""

    suffix: str = ".csv"
    delimiter: str = ","
    quoting: str = "minimal"  # minimal | all | nonnumeric
    newline: str = "\n"
    bom: bool = False
    encoding: str = "utf-8"


def _cell(value: str, layout: Layout) -> str:
    special = any(ch in value for ch in (layout.delimiter, '"', "\r", "\n"))
    numeric = value.replace(".", "", 1).isdigit()
    quote = layout.quoting == "all" or special or (layout.quoting == "nonnumeric" and not numeric)
    return '"' + value.replace('"', '""') + '"' if quote else value


def render(header: list[str], rows: list[list[str]], layout: Layout) -> bytes:
    lines = [layout.delimiter.join(_cell(v, layout) for v in row) for row in [header, *rows]]
    text = "".join(line + layout.newline for line in lines)
    return (("\ufeff" if layout.bom else "") + text).encode(layout.encoding)


# ---- a generated case ----------------------------------------------------------------------------

TRAIN_DEFECTS = ["label_blank", "label_bad", "duplicate_id", "missing_label_column", "ragged_row", "latin1", "no_rows"]
TEST_DEFECTS = ["test_id_not_in_sample", "sample_extra_id", "sample_without_id_column", "test_duplicate_id"]
LATER_DEFECTS = ["sample_changed_after_prepare", "oof_nan"]


def _short(value):
    if isinstance(value, str) and len(value) > 60:
        return f"<{len(value)} characters: {value[:30]!r}...>"
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


@dataclass(repr=False)
class Case:
    id_column: str
    text_column: str
    labels: list[str]
    train_ids: list[str]
    train_texts: list[str]
    y: np.ndarray
    label_cells: list[list[str]]
    test_ids: list[str]
    test_texts: list[str]
    sample_ids: list[str]
    extra_train: list[str]
    extra_test: list[str]
    orders: dict[str, list[str]]
    layouts: dict[str, Layout]
    declared: str | None
    folds: int
    defect: str | None
    seed: int

    def __repr__(self) -> str:  # hypothesis prints failing cases: abbreviate the 100k-character texts
        fields = ", ".join(f"{k}={_short(v)!r}" for k, v in self.__dict__.items())
        return f"Case({fields})"

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis's pretty printer asks for this first
        printer.text(repr(self))

    @property
    def sniffed(self) -> bool:
        return self.declared is None and any(lay.suffix == ".txt" for lay in self.layouts.values())

    def prepare_fails(self) -> bool:
        return self.defect in TRAIN_DEFECTS + TEST_DEFECTS


@st.composite
def layouts(draw, declared: str | None) -> Layout:
    if declared is not None:
        suffix, delimiter = draw(st.sampled_from([".csv", ".tsv", ".txt"])), declared
    else:
        suffix = draw(st.sampled_from([".csv", ".tsv", ".txt"]))
        delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix) or draw(st.sampled_from([";", "|", ",", "\t"]))
    return Layout(
        suffix=suffix,
        delimiter=delimiter,
        quoting=draw(st.sampled_from(["minimal", "all", "nonnumeric"])),
        newline=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        bom=draw(st.booleans()),
    )


def texts(n: int) -> st.SearchStrategy[list[str]]:
    piece = st.one_of(
        st.sampled_from(TEXT_PIECES),
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8),
    )
    return st.lists(st.lists(piece, max_size=4).map("".join), min_size=n, max_size=n)


def id_lists(n: int) -> st.SearchStrategy[list[str]]:
    one = st.one_of(
        st.sampled_from(HOSTILE_IDS), st.from_regex(r"\A0{0,3}[0-9]{1,4}\Z"), st.from_regex(r"\A[a-z]{1,6}\Z")
    )
    return st.lists(one, min_size=n, max_size=n, unique=True)


@st.composite
def cases(draw) -> Case:
    seed = draw(st.integers(0, 2**16))
    id_column = draw(st.sampled_from(ID_COLUMNS))
    text_column = draw(st.sampled_from(TEXT_COLUMNS))
    labels = draw(st.lists(st.sampled_from(LABEL_POOL), min_size=1, max_size=4, unique=True))
    n_train, n_test = draw(st.integers(4, 14)), draw(st.integers(1, 8))
    train_ids, test_ids = draw(id_lists(n_train)), draw(id_lists(n_test))
    train_texts, test_texts = draw(texts(n_train)), draw(texts(n_test))
    if draw(st.integers(0, 9)) == 0:  # one 100k-character text, in train or test
        target = draw(st.sampled_from([train_texts, test_texts]))
        target[draw(st.integers(0, len(target) - 1))] = LONG_TEXT
    y = np.array(draw(st.lists(st.lists(st.integers(0, 1), min_size=len(labels), max_size=len(labels)),
                               min_size=n_train, max_size=n_train)), dtype=np.int8)  # fmt: skip
    style = draw(st.sampled_from(["int", "float", "mixed"]))
    spell = {"int": ["{}"], "float": ["{}.0"], "mixed": ["{}", "{}.0", " {} ", "{}.00"]}[style]
    label_cells = [[draw(st.sampled_from(spell)).format(v) for v in row] for row in y]
    extra_train = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=2, unique=True))
    extra_test = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=2, unique=True))
    orders = {
        "train": draw(st.permutations([id_column, text_column, *labels, *extra_train])),
        "test": draw(st.permutations([id_column, text_column, *extra_test])),
        "sample": draw(st.permutations([id_column, *labels])),
    }
    declared = draw(st.sampled_from([None, None, None, ";", "|", ",", "\t"]))
    layout = layouts(declared)
    defect = draw(st.sampled_from([None] * 9 + TRAIN_DEFECTS + TEST_DEFECTS + LATER_DEFECTS))  # ~40% clean
    if defect == "latin1":
        train_texts[0] = "café crème " + train_texts[0]  # bytes that are not utf-8 once written as latin-1
    return Case(
        id_column=id_column,
        text_column=text_column,
        labels=labels,
        train_ids=train_ids,
        train_texts=train_texts,
        y=y,
        label_cells=label_cells,
        test_ids=test_ids,
        test_texts=test_texts,
        sample_ids=draw(st.permutations(test_ids)),
        extra_train=extra_train,
        extra_test=extra_test,
        orders=orders,
        layouts={"train": draw(layout), "test": draw(layout), "sample": draw(layout)},
        declared=declared,
        folds=draw(st.integers(2, 3)),
        defect=defect,
        seed=seed,
    )


# ---- writing a case to disk ----------------------------------------------------------------------


def _train_rows(case: Case) -> list[dict[str, str]]:
    rows = []
    for i, (rid, text) in enumerate(zip(case.train_ids, case.train_texts)):
        row = {case.id_column: rid, case.text_column: text}
        row.update(zip(case.labels, case.label_cells[i]))
        row.update({c: f"{c}-{i}, x" for c in case.extra_train})
        rows.append(row)
    if case.defect == "label_blank":
        rows[-1][case.labels[0]] = ""
    elif case.defect == "label_bad":
        rows[0][case.labels[-1]] = ["2", "yes", "1.5", "-1", "true"][case.seed % 5]
    elif case.defect == "duplicate_id":
        rows.append({**rows[0], case.text_column: "a copy"})
    return rows


def _write(path: Path, columns: list[str], rows: list[dict[str, str]], layout: Layout, ragged: bool = False) -> None:
    body = [[row[c] for c in columns] for row in rows]
    if ragged:  # one row in the middle with a field too many
        body[len(body) // 2].append("surplus")
    path.write_bytes(render(columns, body, layout))


def write_case(case: Case, folder: Path) -> Path:
    """Writes train/test/sample_submission and the config; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {key: f"{key}{lay.suffix}" for key, lay in case.layouts.items()}
    train_columns = list(case.orders["train"])
    if case.defect == "missing_label_column":
        train_columns.remove(case.labels[0])
    train_layout = case.layouts["train"]
    if case.defect == "latin1":
        train_layout = Layout(**{**train_layout.__dict__, "encoding": "latin-1", "bom": False})
        case.train_texts[:] = [t.encode("latin-1", "replace").decode("latin-1") for t in case.train_texts]
    train_rows = [] if case.defect == "no_rows" else _train_rows(case)
    if case.defect == "latin1":
        latin = lambda v: v.encode("latin-1", "replace").decode("latin-1")  # noqa: E731
        train_rows = [{latin(k): latin(v) for k, v in r.items()} for r in train_rows]
        train_columns = [latin(c) for c in train_columns]
    _write(folder / names["train"], train_columns, train_rows, train_layout, ragged=case.defect == "ragged_row")

    test_rows = [
        {case.id_column: rid, case.text_column: text, **{c: f"{c} {i}" for c in case.extra_test}}
        for i, (rid, text) in enumerate(zip(case.test_ids, case.test_texts))
    ]
    sample_ids = list(case.sample_ids)
    if case.defect == "test_id_not_in_sample":
        test_rows[0][case.id_column] = case.test_ids[0] + "_x"
    elif case.defect == "sample_extra_id":
        sample_ids.append("zz_not_in_test")
    elif case.defect == "test_duplicate_id":
        test_rows.append(dict(test_rows[0]))
    _write(folder / names["test"], list(case.orders["test"]), test_rows, case.layouts["test"])

    sample_columns = list(case.orders["sample"])
    filler = ["0", "", "0.5", "x"][case.seed % 4]  # the sample's values are never read
    sample_rows = [{case.id_column: rid, **{n: filler for n in case.labels}} for rid in sample_ids]
    if case.defect == "sample_without_id_column":
        sample_columns = ["row_key" if c == case.id_column else c for c in sample_columns]
        sample_rows = [{("row_key" if k == case.id_column else k): v for k, v in r.items()} for r in sample_rows]
    _write(folder / names["sample"], sample_columns, sample_rows, case.layouts["sample"])

    competition = {
        "train": names["train"],
        "test": names["test"],
        "sample_submission": names["sample"],
        "id_column": case.id_column,
        "text_column": case.text_column,
        "task": "multilabel",
        "metric": "f1_macro",
    }
    if case.declared is not None:
        competition["delimiter"] = case.declared
    config = {
        "competition": competition,
        "cv": {"folds": case.folds, "seed": case.seed},
        "output_dir": "run",
        "submission": {"dir": "submissions"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# ---- the checks ----------------------------------------------------------------------------------


def snapshot(folder: Path) -> set[str]:
    """Every file under the output and submissions folders (temp files included)."""
    found = set()
    for sub in ("run", "submissions"):
        if (folder / sub).is_dir():
            found |= {str(p.relative_to(folder)) for p in (folder / sub).rglob("*") if p.is_file()}
    return found


def assert_clean_failure(code: int, err: str, before: set[str], folder: Path, what: str) -> str:
    """Exit 2, one `error:` line and nothing after it, no traceback, no new file; returns the message."""
    assert code == 2, f"{what}: exit code {code}, expected 2\n{err[-3000:]}"
    assert "Traceback" not in err, f"{what}: traceback\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, f"{what}: {len(errors)} 'error:' lines\n{err[-3000:]}"
    assert lines[-1] == errors[0], f"{what}: the error message spans several lines or is not last\n{err[-3000:]}"
    new = snapshot(folder) - before
    assert not new, f"{what}: the failing command left files behind: {sorted(new)}"
    return errors[0]


def expected_text(text: str) -> str:
    return text if text.strip() else ""


def check_prepared(case: Case, config: Path) -> None:
    """folds.parquet holds every train id exactly once; ids, texts and labels read back as written."""
    folds = pd.read_parquet(config.parent / "run" / "folds.parquet")
    assert folds["id"].map(type).eq(str).all()
    assert sorted(folds["id"]) == sorted(case.train_ids), "folds.parquet ids differ from train's"
    assert folds["id"].is_unique and set(folds["fold"]) <= set(range(case.folds))
    data = load_competition(load_config(config).competition)
    assert list(data.train_ids) == case.train_ids
    assert data.train_texts == [expected_text(t) for t in case.train_texts]
    assert data.label_names == [c for c in case.orders["sample"] if c != case.id_column]
    want_y = case.y[:, [case.labels.index(n) for n in data.label_names]]
    np.testing.assert_array_equal(data.y, want_y)
    assert list(data.test_ids) == case.test_ids and data.test_texts == [expected_text(t) for t in case.test_texts]


def fabricate_outputs(case: Case, config: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """oof.parquet and test.parquet as `train` writes them (rows shuffled: only the ids may place them)."""
    rng = np.random.default_rng(case.seed)
    cfg = load_config(config)
    names = [c for c in case.orders["sample"] if c != case.id_column]
    oof_ids = list(rng.permutation(np.array(case.train_ids, dtype=object)))
    test_ids = list(rng.permutation(np.array(case.test_ids, dtype=object)))
    oof = probability_frame(np.array(oof_ids, dtype=object), rng.random((len(oof_ids), len(names))), names)
    test = probability_frame(np.array(test_ids, dtype=object), rng.random((len(test_ids), len(names))), names)
    if case.defect == "oof_nan":
        oof.iloc[0, 1] = np.nan
    write_parquet(cfg.run_dir / "oof.parquet", oof)
    write_parquet(cfg.run_dir / "test.parquet", test)
    return oof, test


def read_csv_exact(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def check_submission(case: Case, config: Path, test: pd.DataFrame) -> None:
    subs = sorted(p for p in (config.parent / "submissions").glob("*.csv") if p.name != "log.csv")
    assert len(subs) == 1, subs
    rows = read_csv_exact(subs[0])
    header, body = rows[0], rows[1:]
    assert header == case.orders["sample"], "submission columns differ from the sample's (names or order)"
    id_at = header.index(case.id_column)
    assert [r[id_at] for r in body] == case.sample_ids, "submission ids differ from the sample's (text or order)"
    cuts = json.loads((config.parent / "run" / "thresholds.json").read_text(encoding="utf-8"))["thresholds"]
    probs = test.set_index("id")
    for name in case.labels:
        at = header.index(name)
        want = [str(int(float(probs.at[rid, name]) >= cuts[name])) for rid in case.sample_ids]
        assert [r[at] for r in body] == want, f"label {name!r}: thresholds not applied row by row"


@contextmanager
def no_raw_warnings(what: str) -> Iterator[None]:
    """Fails when a Python warning that the user's terminal would show (not a DeprecationWarning) is raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not shown, f"{what}: a raw warning reaches the user: {shown[0].category.__name__}: {shown[0].message}"


def run_case(case: Case, folder: Path, cli) -> str:
    """Runs one case through prepare → tune-thresholds → submit; returns its outcome's name."""
    with no_raw_warnings(f"case with defect {case.defect}"):
        return _run_case(case, folder, cli)


def _run_case(case: Case, folder: Path, cli) -> str:
    config = write_case(case, folder)
    before = snapshot(folder)
    code, _, err = cli("prepare", config)
    if code != 0 or case.prepare_fails():
        message = assert_clean_failure(code, err, before, folder, f"prepare ({case.defect or 'clean case'})")
        if case.prepare_fails():
            return f"defect {case.defect}: clean error"
        assert case.sniffed, f"a clean case whose delimiter is known failed: {message}"
        return "sniffed: clean error"
    check_prepared(case, config)

    _, test = fabricate_outputs(case, config)
    before = snapshot(folder)
    code, _, err = cli("tune-thresholds", config)
    if case.defect == "oof_nan":
        assert "NaN" in assert_clean_failure(code, err, before, folder, "tune-thresholds with a NaN")
        return f"defect {case.defect}: clean error"
    assert code == 0, err[-3000:]

    if case.defect == "sample_changed_after_prepare":
        sample_path = config.parent / f"sample{case.layouts['sample'].suffix}"
        frame_rows = [{case.id_column: rid, **{n: "0" for n in case.labels}} for rid in case.sample_ids[1:]]
        _write(sample_path, list(case.orders["sample"]), frame_rows, case.layouts["sample"])
    before = snapshot(folder)
    code, _, err = cli("submit", config)
    if case.defect == "sample_changed_after_prepare":
        assert_clean_failure(code, err, before, folder, "submit after the sample submission lost a row")
        return f"defect {case.defect}: clean error"
    assert code == 0, err[-3000:]
    check_submission(case, config, test)
    return "sniffed: works" if case.sniffed else "works"


@pytest.fixture(scope="module", autouse=True)
def outcome_report(request):
    yield
    total = sum(OUTCOMES.values())
    lines = [f"test_fuzz_inputs: {total} cases run"] + [f"  {n:4d}  {k}" for k, n in sorted(OUTCOMES.items())]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n".join(lines))


# ---- the property --------------------------------------------------------------------------------


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # no shrink phase: one example takes 0.1-1 s, so shrinking runs for minutes; Case's repr is short enough to read
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_hostile_competition_files_work_or_fail_cleanly(case, cli):
    before = sum(OUTCOMES.values())
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_case(case, Path(tmp), cli)
    event(outcome)
    OUTCOMES[outcome] += 1
    assert sum(OUTCOMES.values()) == before + 1


# ---- explicit edge cases -------------------------------------------------------------------------


def clean_case(**changes) -> Case:
    """A small valid case with plain values; keyword arguments replace fields."""
    base = {
        "id_column": "id",
        "text_column": "text",
        "labels": ["joy", "anger"],
        "train_ids": [f"r{i}" for i in range(6)],
        "train_texts": ["happy", "furious", "happy day", "so furious", "calm", "happy and furious"],
        "y": np.array([[1, 0], [0, 1], [1, 0], [0, 1], [0, 0], [1, 1]], dtype=np.int8),
        "test_ids": ["t0", "t1", "t2"],
        "test_texts": ["happy", "furious", "calm"],
        "extra_train": [],
        "extra_test": [],
        "declared": None,
        "folds": 2,
        "defect": None,
        "seed": 0,
    }
    base.update(changes)
    base.setdefault("label_cells", [[str(v) for v in row] for row in base["y"]])
    base.setdefault("sample_ids", list(base["test_ids"]))
    base.setdefault(
        "orders",
        {
            "train": [base["id_column"], base["text_column"], *base["labels"]],
            "test": [base["id_column"], base["text_column"]],
            "sample": [base["id_column"], *base["labels"]],
        },
    )
    base.setdefault("layouts", {k: Layout() for k in ("train", "test", "sample")})
    return Case(**base)


def explicit(case: Case, tmp_path: Path, cli) -> str:
    outcome = run_case(case, tmp_path, cli)
    OUTCOMES[f"explicit: {outcome}"] += 1
    return outcome


def test_bom_and_crlf_with_quoted_header(tmp_path, cli):
    lay = Layout(quoting="all", newline="\r\n", bom=True)
    case = clean_case(
        train_texts=["happy\r\nday", "furious, very", 'said "no"', "so furious", "calm", "happy and furious"],
        layouts={k: lay for k in ("train", "test", "sample")},
    )
    assert explicit(case, tmp_path, cli) == "works"
    assert (tmp_path / "train.csv").read_bytes().startswith(b'\xef\xbb\xbf"id"')


def test_leading_zero_ids_end_to_end(tmp_path, cli):
    case = clean_case(
        train_ids=["007", "0001", "7", "1", "00", "0"],
        test_ids=["0007", "010", "10"],
        sample_ids=["10", "0007", "010"],
        label_cells=[["1.0", "0.0"], ["0.0", "1.0"], ["1", "0"], ["0", "1"], ["0.0", "0"], ["1.0", "1"]],
    )
    assert explicit(case, tmp_path, cli) == "works"
    folds = pd.read_parquet(tmp_path / "run" / "folds.parquet")
    assert sorted(folds["id"]) == sorted(["007", "0001", "7", "1", "00", "0"])
    sub = next(p for p in (tmp_path / "submissions").glob("*.csv") if p.name != "log.csv")
    assert [line.split(",")[0] for line in sub.read_text().splitlines()[1:]] == ["10", "0007", "010"]


def test_hundred_thousand_character_texts(tmp_path, cli):
    case = clean_case(
        train_texts=[LONG_TEXT, "furious", "happy day", LONG_TEXT + " furious", "calm", "happy and furious"],
        test_texts=["happy", LONG_TEXT, "calm"],
    )
    assert explicit(case, tmp_path, cli) == "works"


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_hundred_thousand_character_text_in_a_sniffed_txt(tmp_path, cli, delimiter):
    """A .txt whose first data row is longer than the sniffer's sample still reads with its delimiter."""
    lay = Layout(suffix=".txt", delimiter=delimiter)
    case = clean_case(
        train_texts=[LONG_TEXT, "furious", "happy day", "so furious", "calm", "happy and furious"],
        layouts={k: lay for k in ("train", "test", "sample")},
    )
    assert explicit(case, tmp_path, cli) == "sniffed: works"


def test_numeric_looking_ids_must_match_as_text(tmp_path, cli):
    """test.csv says "007", the sample submission says "7": different ids, a clean error naming them."""
    case = clean_case(test_ids=["007", "010", "3"], sample_ids=["7", "010", "3"])
    config = write_case(case, tmp_path)
    code, _, err = cli("prepare", config)
    message = assert_clean_failure(code, err, set(), tmp_path, "prepare with 007 vs 7")
    assert "'007' only in test" in message


def test_trailing_delimiter_on_every_data_row(tmp_path, cli):
    """Spreadsheet exports often end each data row (not the header) with the delimiter: an empty last field.

    The ids must still be the ids; pandas alone would take the first column as the index and shift
    every column left by one.
    """
    case = clean_case()
    config = write_case(case, tmp_path)
    for name in ("train.csv", "test.csv", "sample.csv"):
        path = tmp_path / name
        head, *rows = path.read_text().splitlines()
        path.write_text("\n".join([head, *(r + "," for r in rows)]) + "\n")
    with no_raw_warnings("prepare with trailing delimiters"):
        code, _, err = cli("prepare", config)
    if code == 0:
        check_prepared(case, config)
        said = [line for line in err.splitlines() if "the empty last field is ignored" in line]
        assert len(said) == 3 and all(line.startswith("warning: ") for line in said), err  # one line per file
    else:
        message = assert_clean_failure(code, err, set(), tmp_path, "prepare with trailing delimiters")
        message = message.replace(str(tmp_path), "<tmp>")
        assert "field" in message or "delimiter" in message, f"the error does not name the real problem: {message}"


def test_trailing_delimiter_with_a_list_label_column(tmp_path, cli):
    """The same export with `label_format: list`: the shift must not pass silently (texts read as ids,
    label lists read as texts, every row without labels: only 'no positive rows' warnings)."""
    rows = [("r1", "happy day", "joy"), ("r2", "so furious", "anger"), ("r3", "happy, furious", "joy,anger")]
    rows += [("r4", "calm day", ""), ("r5", "happy", "joy"), ("r6", "furious", "anger")]
    (tmp_path / "train.csv").write_text("id,text,labels\n" + "".join(f'{i},"{t}","{lab}",\n' for i, t, lab in rows))
    config = tmp_path / "config.yaml"
    competition = {"train": "train.csv", "label_format": "list", "labels": ["joy", "anger"]}
    config.write_text(yaml.safe_dump({"competition": competition, "cv": {"folds": 2}, "output_dir": "run"}))
    with no_raw_warnings("prepare with trailing delimiters"):
        code, _, err = cli("prepare", config)
    if code == 0:
        assert sorted(pd.read_parquet(tmp_path / "run" / "folds.parquet")["id"]) == [r[0] for r in rows]
        data = load_competition(load_config(config).competition)
        assert data.train_texts == [r[1] for r in rows]
        assert data.y.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]
    else:
        message = assert_clean_failure(code, err, set(), tmp_path, "prepare with trailing delimiters")
        message = message.replace(str(tmp_path), "<tmp>")
        assert "field" in message or "delimiter" in message, f"the error does not name the real problem: {message}"


@pytest.mark.parametrize("row", [0, 3])
def test_a_surplus_field_with_a_value_is_a_user_error_not_data_loss(tmp_path, cli, row):
    """One data row with a field more than the header, holding a value: pandas (index_col=False) would drop
    the value with a ParserWarning when that row is the first; either way it must be one clean error."""
    case = clean_case()
    config = write_case(case, tmp_path)
    path = tmp_path / "train.csv"
    head, *rows = path.read_text().splitlines()
    rows[row] += ",surplus"
    path.write_text("\n".join([head, *rows]) + "\n")
    with no_raw_warnings("prepare with a surplus field"):
        code, _, err = cli("prepare", config)
    message = assert_clean_failure(code, err, set(), tmp_path, "prepare with a surplus field")
    assert "fields" in message and ("surplus" in message or "line" in message), message
    OUTCOMES["explicit: surplus field: clean error"] += 1


def test_sample_submission_replaced_with_the_same_size_and_mtime(tmp_path, cli):
    """A sample submission swapped for another of the same size that keeps the old mtime (`cp -p`, `rsync -t`,
    unzip of a re-downloaded archive): submit follows the file on disk, not what an earlier command read."""
    case = clean_case(test_ids=["t0", "t1", "t2"], sample_ids=["t0", "t1", "t2"])
    assert explicit(case, tmp_path, cli) == "works"
    sample = tmp_path / "sample.csv"
    before = sample.stat()
    case.sample_ids = ["t2", "t0", "t1"]
    rows = [{"id": rid, "joy": "0", "anger": "0"} for rid in case.sample_ids]
    _write(sample, case.orders["sample"], rows, case.layouts["sample"])
    os.utime(sample, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert sample.stat().st_size == before.st_size and sample.stat().st_mtime_ns == before.st_mtime_ns

    code, _, err = cli("submit", tmp_path / "config.yaml")
    assert code == 0, err
    newest = max((p for p in (tmp_path / "submissions").glob("*.csv") if p.name != "log.csv"), key=os.path.getmtime)
    assert [row[0] for row in read_csv_exact(newest)[1:]] == ["t2", "t0", "t1"], "submit used a stale sample"


def test_semicolon_csv_declared(tmp_path, cli):
    lay = Layout(suffix=".csv", delimiter=";", newline="\r\n")
    case = clean_case(
        train_texts=["happy, yes", "furious; no", "happy day", "so furious", "calm", "happy and furious"],
        declared=";",
        layouts={k: lay for k in ("train", "test", "sample")},
    )
    assert explicit(case, tmp_path, cli) == "works"


def test_shuffled_columns_and_extras_everywhere(tmp_path, cli):
    case = clean_case(
        extra_train=["notes"],
        extra_test=["date", "score"],
        orders={
            "train": ["anger", "notes", "text", "joy", "id"],
            "test": ["score", "text", "date", "id"],
            "sample": ["anger", "id", "joy"],
        },
    )
    assert explicit(case, tmp_path, cli) == "works"


def test_multilabel_with_a_single_label_column(tmp_path, cli):
    """task: multilabel with one label column (a sample submission of id + one target) is still split."""
    case = clean_case(labels=["joy"], y=np.array([[1], [0], [1], [0], [0], [1]], dtype=np.int8))
    assert explicit(case, tmp_path, cli) == "works"


def test_more_folds_than_rows_in_every_class_is_a_user_error(tmp_path, cli):
    """binary, 2 positives and 2 negatives, cv.folds=3: no stratified split exists; say so, no traceback."""
    train = toy_frame(4)[["id", "text", "joy"]].assign(joy=[0, 1, 0, 1])
    test = toy_frame(2, seed=1, id_prefix="t")[["id", "text"]]
    config = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=pd.DataFrame({"id": test["id"], "joy": 0}),
        config={"competition": {"task": "binary"}, "cv": {"folds": 3}},
    )
    code, _, err = cli("prepare", config)
    message = assert_clean_failure(code, err, set(), tmp_path, "prepare with 2 rows per class and 3 folds")
    assert "cv.folds" in message


def test_render_round_trips_through_the_csv_module():
    """The hand-written writer is itself correct: Python's csv module reads back what it wrote."""
    rows = [["a,b", 'q"t', "x\r\ny", " 7", ""], ["1", "2.0", "😀", "tab\there", "cr\ronly"]]
    for quoting in ("minimal", "all", "nonnumeric"):
        for newline in ("\n", "\r\n", "\r"):
            lay = Layout(quoting=quoting, newline=newline)
            text = render(["h1", "h2", "h3", "h4", "h5"], rows, lay).decode()
            assert list(csv.reader(io.StringIO(text, newline=""))) == [["h1", "h2", "h3", "h4", "h5"], *rows]
