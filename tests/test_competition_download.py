"""`kagglemlc download --competition SLUG`: the competition's files through the real kaggle client against the
loopback stub of test_submit (DownloadDataFiles answers with a redirect to the archive, as Kaggle does), unzipped
into --out, then `init` and `prepare` on what arrived. Nothing half written, nothing replaced without --force."""

from __future__ import annotations

import io
import zipfile

import pandas as pd

from conftest import LABELS, toy_frame
from test_submit import SECRET, SLUG, kaggle, kaggle_json
from tiny_models import make_encoder

__all__ = ["kaggle"]  # the stub fixture, shared with test_submit.py
ARCHIVE = "http://localhost/files/toy-comp.zip"


def competition_zip(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The three files of a wide-label competition, as Kaggle would zip them."""
    train, test = toy_frame(90), toy_frame(20, seed=1, id_prefix="t")[["id", "text"]]
    sample = pd.DataFrame({"id": test["id"], **{name: 0 for name in LABELS}})
    files = {name: frame.to_csv(index=False).encode() for name, frame in
             [("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)]}  # fmt: skip
    return {**files, **(extra or {})}


def serve(stub, files: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    stub.responses["DownloadDataFiles"] = (302, {"Location": ARCHIVE})
    stub.responses["toy-comp.zip"] = (200, buffer.getvalue())


def test_download_unzips_the_competition_then_init_and_run_take_it(kaggle, cli, tmp_path, monkeypatch):
    kaggle_json(tmp_path / "home")
    files = competition_zip()
    serve(kaggle, files)
    folder = tmp_path / "comp"

    code, out, err = cli("download", "--competition", SLUG, "--out", folder)

    assert code == 0, err
    calls = [(c.method, c.endpoint) for c in kaggle.calls if c.endpoint != "IntrospectToken"]
    assert calls == [("POST", "DownloadDataFiles"), ("GET", "toy-comp.zip")]
    request = next(c for c in kaggle.calls if c.endpoint == "DownloadDataFiles")
    assert request.json() == {"competitionName": SLUG}
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # the archive and its temp folder are gone
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    assert f"kagglemlc init {folder}" in err
    assert SECRET not in out + err and not any(SECRET.encode() in p.read_bytes() for p in folder.rglob("*.csv"))

    code, _, err = cli("init", folder)
    assert code == 0, err
    # the whole chain on what arrived, init's config as written but for a tiny model in place of minilm
    tiny = make_encoder(tmp_path / "tiny")
    monkeypatch.chdir(folder)  # submissions go to ./submissions
    code, _, err = cli("run", "kagglemlc.yaml", f"model.name={tiny}", "train.epochs=1")
    assert code == 0, err
    submission = pd.read_csv(next((folder / "submissions").glob("comp-*.csv")), dtype={"id": str})
    assert list(submission["id"]) == list(pd.read_csv(folder / "sample_submission.csv", dtype={"id": str})["id"])


def test_rules_not_accepted_is_one_line_and_writes_nothing(kaggle, cli, tmp_path):
    kaggle_json(tmp_path / "home")
    message = "You must accept this competition's rules before you'll be able to download files"
    kaggle.responses["DownloadDataFiles"] = (403, {"code": 403, "message": message})
    folder = tmp_path / "comp"

    code, _, err = cli("download", "--competition", SLUG, "--out", folder)

    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "HTTP 403" in err and "accepted the competition's rules" in err
    assert list(folder.iterdir()) == []


def test_files_already_there_stay_unless_force(kaggle, cli, tmp_path):
    kaggle_json(tmp_path / "home")
    files = competition_zip()
    serve(kaggle, files)
    folder = tmp_path / "comp"
    folder.mkdir()
    (folder / "train.csv").write_text("my edited copy\n")

    code, _, err = cli("download", "--competition", SLUG, "--out", folder)
    assert code == 2 and "already has train.csv" in err and "--force" in err
    assert sorted(p.name for p in folder.iterdir()) == ["train.csv"]
    assert (folder / "train.csv").read_text() == "my edited copy\n"

    code, _, err = cli("download", "--competition", SLUG, "--out", folder, "--force")
    assert code == 0, err
    assert (folder / "train.csv").read_bytes() == files["train.csv"]


def test_an_unsafe_member_name_extracts_nothing(kaggle, cli, tmp_path):
    kaggle_json(tmp_path / "home")
    serve(kaggle, competition_zip({"../outside.csv": b"id\n1\n"}))
    folder = tmp_path / "comp"

    code, _, err = cli("download", "--competition", SLUG, "--out", folder)

    assert code == 2 and "unsafe member names (../outside.csv)" in err
    assert list(folder.iterdir()) == [] and not (tmp_path / "outside.csv").exists()


def test_no_credentials_is_one_line(kaggle, cli, tmp_path):
    code, _, err = cli("download", "--competition", SLUG, "--out", tmp_path / "comp")
    assert code == 2 and "no usable Kaggle credentials" in err and len(err.strip().splitlines()) == 1
    assert [c for c in kaggle.calls if c.endpoint == "DownloadDataFiles"] == []
