"""Competition files → label schema: every user error is one line naming the file/column, exit 2, nothing written.

Validation errors run the real `kagglemlc prepare`; the loading tests call `load_competition` on the
same config files to look at what was read.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.data.competition import load_competition


def load(path: Path):
    return load_competition(load_config(path).competition)


def assert_user_error(cli, path: Path, *needles: str) -> str:
    """Runs prepare, expects exit 2 with one `error:` line holding every needle and no output dir."""
    code, out, err = cli("prepare", path)
    assert code == 2, err
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert not (path.parent / "run").exists(), "a failed prepare must write nothing"
    return lines[0]


def with_cell(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[row, column] = value
    return frame


# --- validation errors: one line, exit 2, nothing written ---------------------------------------


def test_missing_train_file(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"train": "nope.csv"}})
    assert_user_error(cli, path, "competition.train", "nope.csv")


def test_missing_test_file(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"test": "nope.csv"}})
    assert_user_error(cli, path, "competition.test", "nope.csv")


def test_missing_text_column(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"text_column": "body"}})
    assert_user_error(cli, path, "train.csv", "'body'", "competition.text_column")


def test_missing_template_column(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"text_column": "{title} [SEP] {text}"}})
    assert_user_error(cli, path, "train.csv", "'title'")


def test_missing_id_column(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"id_column": "qid"}})
    assert_user_error(cli, path, "train.csv", "'qid'", "competition.id_column")


@pytest.mark.parametrize("value", ["2", "yes", "-1", "0.5"])
def test_label_outside_0_1(tmp_path, cli, value):
    path = make_competition(tmp_path, train=with_cell(toy_frame(60), 7, "anger", value))
    line = assert_user_error(cli, path, "train.csv", "'anger'", repr(value))
    assert "line 9" in line  # header is line 1, row 7 is line 9


def test_empty_label_cell(tmp_path, cli):
    path = make_competition(tmp_path, train=with_cell(toy_frame(60), 3, "fear", None))
    assert_user_error(cli, path, "train.csv", "'fear'")


def test_duplicated_train_ids(tmp_path, cli):
    path = make_competition(tmp_path, train=with_cell(toy_frame(60), 10, "id", "r0003"))
    assert_user_error(cli, path, "train.csv", "'id'", "duplicated", "r0003")


def test_duplicated_test_ids(tmp_path, cli):
    test = toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    test = with_cell(test, 5, "id", "t0004")
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    path = make_competition(tmp_path, test=test, sample_submission=sub)
    assert_user_error(cli, path, "test.csv", "duplicated", "t0004")


def test_test_ids_differ_from_sample_submission(tmp_path, cli):
    test = toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    sub = with_cell(sub, 4, "id", "x999")
    path = make_competition(tmp_path, test=test, sample_submission=sub)
    assert_user_error(cli, path, "test.csv", "sample_submission.csv", "t0004")


def test_test_has_fewer_rows_than_sample_submission(tmp_path, cli):
    test = toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    path = make_competition(tmp_path, test=test.iloc[:-1], sample_submission=sub)
    assert_user_error(cli, path, "test.csv", "sample_submission.csv", "19 vs 20")


def test_sample_submission_label_missing_from_train(tmp_path, cli):
    test = toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in [*LABELS, "surprise"]}})
    path = make_competition(tmp_path, test=test, sample_submission=sub)
    assert_user_error(cli, path, "train.csv", "surprise")


def test_explicit_label_missing_from_train(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"labels": ["joy", "surprise"]}})
    assert_user_error(cli, path, "train.csv", "'surprise'")


def test_empty_train(tmp_path, cli):
    path = make_competition(tmp_path, train=toy_frame(0))
    assert (tmp_path / "train.csv").read_text().count("\n") == 1  # header only
    assert_user_error(cli, path, "train.csv", "no rows")


def test_zero_byte_train(tmp_path, cli):
    path = make_competition(tmp_path)
    (tmp_path / "train.csv").write_bytes(b"")
    assert_user_error(cli, path, "train.csv", "empty")


def latin1_train(tmp_path: Path) -> Path:
    path = make_competition(tmp_path)
    train = toy_frame(60)
    train.loc[2, "text"] = "caf\xe9 au lait"
    (tmp_path / "train.csv").write_bytes(train.to_csv(index=False).encode("latin-1"))
    return path


def test_non_utf8_file_names_the_encoding_key(tmp_path, cli):
    path = latin1_train(tmp_path)
    assert_user_error(cli, path, "train.csv", "utf-8", "competition.encoding")


def test_non_utf8_file_reads_with_its_encoding(tmp_path, cli):
    path = latin1_train(tmp_path)
    code, _, err = cli("prepare", path, "competition.encoding=latin-1")
    assert code == 0, err
    data = load_competition(load_config(path, ["competition.encoding=latin-1"]).competition)
    assert data.train_texts[2] == "caf\xe9 au lait"


def test_unknown_encoding_names_the_key(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"encoding": "klingon-8"}})
    assert_user_error(cli, path, "competition.encoding", "klingon-8")


def list_competition(tmp_path: Path, cells: list[str], **config) -> Path:
    train = toy_frame(len(cells))[["id", "text"]].assign(labels=cells)
    return make_competition(tmp_path, train=train, config={"competition": {"label_format": "list", **config}})


def test_unknown_class_name_in_list_format(tmp_path, cli):
    cells = ["joy", "anger,fear", "joy,surprise", "fear"] * 10
    path = list_competition(tmp_path, cells)  # names come from the sample submission's columns
    assert_user_error(cli, path, "train.csv", "'labels'", "'surprise'", "line 4")


def test_multiclass_row_with_two_labels(tmp_path, cli):
    train = toy_frame(60)
    path = make_competition(
        tmp_path, train=train, config={"competition": {"task": "multiclass"}, "train": {"loss": "ce"}}
    )
    assert_user_error(cli, path, "train.csv", "multiclass")


def test_binary_with_several_labels(tmp_path, cli):
    path = make_competition(tmp_path, config={"competition": {"task": "binary"}})
    assert_user_error(cli, path, "competition.task", "binary")


def test_more_folds_than_rows(tmp_path, cli):
    path = make_competition(tmp_path, n_train=4, config={"cv": {"folds": 5}})
    assert_user_error(cli, path, "cv.folds")


# --- warnings: exit 0 --------------------------------------------------------------------------


def test_label_without_positives_warns(tmp_path, cli):
    path = make_competition(tmp_path, train=toy_frame(60).assign(fear=0))
    code, _, err = cli("prepare", path)
    assert code == 0, err
    assert "warning:" in err and "'fear'" in err and "no positive" in err
    assert (tmp_path / "run" / "folds.parquet").is_file()


def test_empty_text_warns_and_is_used_as_empty_string(tmp_path, cli):
    train = toy_frame(60)
    train.loc[[3, 8], "text"] = [None, np.nan]
    path = make_competition(tmp_path, train=train)
    code, _, err = cli("prepare", path)
    assert code == 0, err
    assert "warning:" in err and "2 train rows" in err and "empty text" in err
    data = load(path)
    assert data.train_texts[3] == "" and data.train_texts[8] == ""
    assert all(isinstance(t, str) for t in data.train_texts)


# --- loading ----------------------------------------------------------------------------------


def test_csv_loads_labels_ids_and_texts(tmp_path):
    train = toy_frame(60)
    data = load(make_competition(tmp_path, train=train))
    assert data.label_names == LABELS
    assert data.y.shape == (60, 3) and set(np.unique(data.y)) <= {0, 1}
    np.testing.assert_array_equal(data.y, train[LABELS].to_numpy())
    assert list(data.train_ids) == list(train["id"])
    assert data.train_texts == list(train["text"])
    assert len(data.test_ids) == 30 and len(data.test_texts) == 30


def write_delimited(tmp_path: Path, suffix: str, sep: str) -> Path:
    path = make_competition(
        tmp_path,
        config={
            "competition": {"train": f"train{suffix}", "test": f"test{suffix}", "sample_submission": f"sub{suffix}"}
        },
    )
    for name, target in (("train", "train"), ("test", "test"), ("sample_submission", "sub")):
        frame = pd.read_csv(tmp_path / f"{name}.csv", dtype=str)
        frame.to_csv(tmp_path / f"{target}{suffix}", sep=sep, index=False)
    return path


@pytest.mark.parametrize(("suffix", "sep"), [(".tsv", "\t"), (".txt", ";"), (".txt", "\t"), (".dat", "|")])
def test_delimiter_from_extension_or_sniffed(tmp_path, suffix, sep):
    path = write_delimited(tmp_path, suffix, sep)
    data = load(path)
    reference = load(make_competition(tmp_path / "csv"))
    assert data.label_names == LABELS
    np.testing.assert_array_equal(data.y, reference.y)
    assert data.train_texts == reference.train_texts
    assert list(data.test_ids) == list(reference.test_ids)


def test_explicit_delimiter(tmp_path):
    path = write_delimited(tmp_path, ".txt", ";")
    data = load_competition(load_config(path, ["competition.delimiter=;"]).competition)
    assert data.y.shape == (120, 3)


def test_bom_prefixed_utf8(tmp_path, cli):
    path = make_competition(tmp_path)
    for name in ("train", "test", "sample_submission"):
        frame = pd.read_csv(tmp_path / f"{name}.csv", dtype=str)
        frame.to_csv(tmp_path / f"{name}.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "train.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    data = load(path)
    assert data.train_ids[0] == "r0000" and data.label_names == LABELS
    code, _, err = cli("prepare", path)
    assert code == 0, err


def test_ids_with_leading_zeros_stay_strings(tmp_path, cli):
    train = toy_frame(30).assign(id=[f"{i:03d}" for i in range(30)])
    test = toy_frame(10, seed=1)[["text"]].assign(id=[f"{i:04d}" for i in range(10)])[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    path = make_competition(tmp_path, train=train, test=test, sample_submission=sub)
    data = load(path)
    assert data.train_ids[7] == "007" and data.test_ids[1] == "0001"
    assert list(data.submission["id"][:2]) == ["0000", "0001"]
    code, _, err = cli("prepare", path)
    assert code == 0, err
    folds = pd.read_parquet(tmp_path / "run" / "folds.parquet")
    assert sorted(folds["id"]) == sorted(train["id"]) and "007" in set(folds["id"])


def titled(n: int, seed: int, id_prefix: str = "r") -> pd.DataFrame:
    frame = toy_frame(n, seed=seed, id_prefix=id_prefix)
    return frame.assign(title=[f"title {i}" for i in range(n)]).rename(columns={"text": "body"})


def test_text_template(tmp_path):
    test = titled(10, seed=1, id_prefix="t")[["id", "title", "body"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    train = titled(30, seed=0)
    path = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=sub,
        config={"competition": {"text_column": "{title} [SEP] {body}"}},
    )
    data = load(path)
    assert data.train_texts[0] == f"title 0 [SEP] {train['body'][0]}"
    assert data.test_texts[2] == f"title 2 [SEP] {test['body'][2]}"


def test_text_column_list(tmp_path):
    test = titled(10, seed=1, id_prefix="t")[["id", "title", "body"]]
    sub = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    train = titled(30, seed=0)
    path = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=sub,
        config={"competition": {"text_column": ["title", "body"]}},
    )
    data = load(path)
    assert data.train_texts[4] == f"title 4 {train['body'][4]}"


def test_list_format_with_names(tmp_path):
    cells = ["anger,joy", "fear", "", " joy , fear "] * 10
    data = load(list_competition(tmp_path, cells))
    assert data.label_names == LABELS  # from the sample submission's columns
    np.testing.assert_array_equal(data.y[:4], [[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])


def test_list_format_names_found_in_train(tmp_path):
    cells = ["anger,joy", "fear", "joy"] * 10
    test = toy_frame(10, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], "labels": ""})
    train = toy_frame(len(cells))[["id", "text"]].assign(labels=cells)
    path = make_competition(
        tmp_path, train=train, test=test, sample_submission=sub, config={"competition": {"label_format": "list"}}
    )
    data = load(path)
    assert data.label_names == ["anger", "fear", "joy"]
    np.testing.assert_array_equal(data.y[:3], [[1, 0, 1], [0, 1, 0], [0, 0, 1]])


def test_list_format_with_integer_ids_and_names_file(tmp_path, cli):
    cells = ["0,2", "1", "2", "0"] * 10
    (tmp_path / "labels.txt").write_text("joy\nanger\nfear\n")
    path = list_competition(tmp_path, cells, label_names_file="labels.txt", label_separator=",")
    data = load(path)
    assert data.label_names == ["joy", "anger", "fear"]
    np.testing.assert_array_equal(data.y[:4], [[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    code, _, err = cli("prepare", path)
    assert code == 0, err


def test_list_format_with_id_out_of_range(tmp_path, cli):
    (tmp_path / "labels.txt").write_text("joy\nanger\nfear\n")
    path = list_competition(tmp_path, ["0,2", "1", "3"] * 10, label_names_file="labels.txt")
    assert_user_error(cli, path, "train.csv", "'3'")


def test_float_labels_accepted(tmp_path):
    train = toy_frame(60)
    expected = train[LABELS].to_numpy()
    train[LABELS] = train[LABELS].astype(float)
    path = make_competition(tmp_path, train=train)
    assert "1.0" in (tmp_path / "train.csv").read_text()
    data = load(path)
    np.testing.assert_array_equal(data.y, expected)


MULTICLASS = {"competition": {"task": "multiclass", "metric": "accuracy"}, "train": {"loss": "ce"}}


def test_multiclass_one_hot_wide(tmp_path):
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 3, 60)
    train = toy_frame(60)
    train[LABELS] = np.eye(3, dtype=int)[cls]
    data = load(make_competition(tmp_path, train=train, config=MULTICLASS))
    assert data.task == "multiclass" and data.label_names == LABELS
    np.testing.assert_array_equal(data.y.argmax(axis=1), cls)
    assert (data.y.sum(axis=1) == 1).all()


def test_multiclass_list_format(tmp_path, cli):
    classes = ["neg", "neu", "pos"]
    train = toy_frame(60)[["id", "text"]].assign(sentiment=[classes[i % 3] for i in range(60)])
    test = toy_frame(10, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], "sentiment": "neu"})
    config = {
        **MULTICLASS,
        "competition": {**MULTICLASS["competition"], "label_format": "list", "label_column": "sentiment"},
    }
    path = make_competition(tmp_path, train=train, test=test, sample_submission=sub, config=config)
    data = load(path)
    assert data.label_names == classes
    np.testing.assert_array_equal(data.y.argmax(axis=1), np.arange(60) % 3)
    code, _, err = cli("prepare", path)
    assert code == 0, err


def test_binary(tmp_path, cli):
    train = toy_frame(60)[["id", "text", "joy"]].rename(columns={"joy": "target"})
    test = toy_frame(10, seed=1, id_prefix="t")[["id", "text"]]
    sub = pd.DataFrame({"id": test["id"], "target": 0})
    path = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=sub,
        config={"competition": {"task": "binary", "metric": "f1_micro"}},
    )
    data = load(path)
    assert data.label_names == ["target"] and data.y.shape == (60, 1)
    np.testing.assert_array_equal(data.y[:, 0], train["target"])
    code, _, err = cli("prepare", path)
    assert code == 0, err
