"""A code competition through the real kaggle client against the loopback stub of test_submit.py: `export --push`
uploads the bundle as a dataset (created, or a new version) and pushes its notebook; `submit --kernel` makes a code
submission, logged; `--refresh-scores` fills its score. The requests are checked field by field, and the bundle's
bytes as they arrive (folders come zipped: `--dir-mode zip`)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import LABELS, make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.stages.export import write_metadata, write_notebook
from kagglemlc.stages.publish import push_bundle, submit_kernel
from kagglemlc.stages.submit import refresh_scores
from test_submit import SECRET, SLUG, assert_secret_nowhere, kaggle, kaggle_json, random_probs, write_outputs

__all__ = ["kaggle"]  # the stub fixture, shared with test_submit.py
DATASETS = "/api/v1/datasets.DatasetApiService/"
KERNELS = "/api/v1/kernels.KernelsApiService/"


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle as `export` lays it out (small made-up model and wheel files; the notebook and metadata are the
    real ones)."""
    out = tmp_path / "bundle"
    dataset = out / "dataset"
    (dataset / "minilm" / "fold0" / "model").mkdir(parents=True)
    (dataset / "minilm" / "fold0" / "model" / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (dataset / "minilm" / "config.yaml").write_text("name: minilm\n")
    (dataset / "wheels").mkdir()
    (dataset / "wheels" / "kagglemlc-0.1.0-py3-none-any.whl").write_bytes(b"PK wheel bytes " * 100)
    manifest = {
        "kagglemlc": "0.1.0",
        "competition": SLUG,
        "submit": "minilm",
        "test_file": "test.csv",
        "experiments": {"minilm": {"kind": "encoder", "adapter": "none", "merged": False, "model": "fold0/model"}},
        "blends": {},
    }
    (dataset / "kagglemlc-bundle.json").write_text(json.dumps(manifest))
    write_notebook(out, manifest)
    write_metadata(out, SLUG, "YOUR_KAGGLE_USERNAME/minilm-kagglemlc", "YOUR_KAGGLE_USERNAME/minilm-inference")
    return out


@pytest.fixture
def config(tmp_path) -> Path:
    config = make_competition(tmp_path / "comp", config={"competition": {"slug": SLUG}, "name": "minilm"})
    sample = pd.read_csv(tmp_path / "comp" / "sample_submission.csv", dtype=str)
    write_outputs(config, random_probs(list(sample["id"]), LABELS), {n: 0.5 for n in LABELS}, cv=0.7123)
    return config


def _uploads(calls) -> dict[str, bytes]:
    """{file name: bytes PUT}: each StartBlobUpload names a file, the PUT after it carries its bytes."""
    received, name = {}, None
    for call in calls:
        if call.endpoint == "StartBlobUpload":
            name = call.json()["name"]
        elif call.method == "PUT":
            received[name] = call.body
    return received


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_creates_the_dataset_and_pushes_the_notebook(bundle, config, kaggle, tmp_path, capfd):
    kaggle_json(tmp_path / "home")
    kaggle.responses |= {
        "StartBlobUpload": (200, {"token": "blob-token-1", "createUrl": "http://localhost/upload/blob-token-1"}),
        "CreateDataset": (200, {"ref": "tester/minilm-kagglemlc", "url": "https://kaggle.com/x", "status": "ok"}),
        "SaveKernel": (200, {"ref": "tester/minilm-inference", "url": "https://kaggle.com/y", "versionNumber": 4}),
    }
    kernel, version = push_bundle(load_config(config), bundle)
    assert (kernel, version) == ("tester/minilm-inference", 4)
    calls = [c for c in kaggle.calls if c.endpoint != "IntrospectToken"]
    endpoints = [c.endpoint for c in calls]
    assert endpoints[0] == "GetDatasetStatus" and calls[0].path == DATASETS + "GetDatasetStatus"  # 404: new
    assert endpoints.count("StartBlobUpload") == 5 and endpoints[-2:] == ["CreateDataset", "SaveKernel"]
    # the bundle's bytes as they arrived: top-level files as they are, each folder as a zip of its files
    received = _uploads(calls)
    dataset = bundle / "dataset"
    assert sorted(received) == ["inference.ipynb", "inference.py", "kagglemlc-bundle.json", "minilm.zip", "wheels.zip"]
    for name in ("inference.ipynb", "inference.py", "kagglemlc-bundle.json"):
        assert received[name] == (dataset / name).read_bytes()
    for folder in ("minilm", "wheels"):
        with zipfile.ZipFile(io.BytesIO(received[f"{folder}.zip"])) as archive:
            unzipped = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
        assert unzipped == _files(dataset / folder)
    create = calls[-2].json()
    assert create["ownerSlug"] == "tester" and create["slug"] == "minilm-kagglemlc" and create["isPrivate"] is True
    assert len(create["files"]) == 5 and create["licenseName"] == "CC0-1.0"
    save = calls[-1]
    assert save.path == KERNELS + "SaveKernel"
    body = save.json()
    assert body["slug"] == "tester/minilm-inference" and body["kernelType"] == "notebook"
    assert body["datasetDataSources"] == ["tester/minilm-kagglemlc"] and body["competitionDataSources"] == [SLUG]
    assert body["enableGpu"] is True and body["enableInternet"] is False and body["isPrivate"] is True
    pushed = nbformat.reads(body["text"], as_version=4)
    assert "predict_bundle" in pushed.cells[3].source and "--no-index" in pushed.cells[2].source
    metadata = json.loads((bundle / "kernel" / "kernel-metadata.json").read_text())
    assert metadata["id"] == "tester/minilm-inference"  # the owner filled in from the credentials
    assert_secret_nowhere(bundle, capfd)


def test_an_existing_dataset_gets_a_new_version(bundle, config, kaggle, tmp_path):
    kaggle_json(tmp_path / "home")
    kaggle.responses |= {
        "GetDatasetStatus": (200, {"status": "ready"}),
        "StartBlobUpload": (200, {"token": "blob-token-1", "createUrl": "http://localhost/upload/blob-token-1"}),
        "CreateDatasetVersion": (200, {"ref": "tester/minilm-kagglemlc", "status": "ok"}),
        "SaveKernel": (200, {"ref": "tester/minilm-inference", "versionNumber": 5}),
    }
    push_bundle(load_config(config), bundle, notes="second try")
    endpoints = [c.endpoint for c in kaggle.calls if c.endpoint != "IntrospectToken"]
    assert "CreateDataset" not in endpoints and endpoints[-2:] == ["CreateDatasetVersion", "SaveKernel"]
    version = next(c for c in kaggle.calls if c.endpoint == "CreateDatasetVersion").json()
    assert version["ownerSlug"] == "tester" and version["datasetSlug"] == "minilm-kagglemlc"
    assert version["body"]["versionNotes"] == "second try" and len(version["body"]["files"]) == 5


def test_a_refused_notebook_is_one_line(bundle, config, kaggle, tmp_path):
    kaggle_json(tmp_path / "home")
    kaggle.responses |= {
        "StartBlobUpload": (200, {"token": "blob-token-1", "createUrl": "http://localhost/upload/blob-token-1"}),
        "CreateDataset": (200, {"ref": "tester/minilm-kagglemlc", "status": "ok"}),
        "SaveKernel": (403, {"code": 403, "message": "Permission denied"}),
    }
    with pytest.raises(KaggleMLCError, match="could not push notebook tester/minilm-inference.*HTTP 403") as info:
        push_bundle(load_config(config), bundle)
    assert "\n" not in str(info.value) and SECRET not in str(info.value)


def test_submit_kernel_makes_a_code_submission_logged_and_scored(config, kaggle, tmp_path, cli):
    kaggle_json(tmp_path / "home")
    kaggle.responses["CreateCodeSubmission"] = (200, {"message": "Your submission was queued", "ref": 7})
    code, _, err = cli("submit", config, "--kernel", "tester/minilm-inference", "--version", "4")
    assert code == 0, err
    call = kaggle.calls[-1]
    assert call.path == "/api/v1/competitions.CompetitionApiService/CreateCodeSubmission"
    assert call.json() == {
        "competitionName": SLUG,
        "kernelOwner": "tester",
        "kernelSlug": "minilm-inference",
        "kernelVersion": 4,
        "fileName": "submission.csv",
        "submissionDescription": "minilm CV 0.7123 (tester/minilm-inference v4)",
    }
    log = pd.read_csv(tmp_path / "comp" / "submissions" / "log.csv", dtype=str, keep_default_na=False)
    row = log.iloc[-1]
    assert (row["file"], row["experiment"], row["cv"]) == ("kernel:tester/minilm-inference v4", "minilm", "0.712300")
    kaggle.responses["ListSubmissions"] = (
        200,
        {
            "submissions": [
                {"ref": 7, "fileName": "submission.csv", "description": row["message"], "publicScore": "0.66"}
            ]
        },
    )
    refresh_scores(load_config(config))
    log = pd.read_csv(tmp_path / "comp" / "submissions" / "log.csv", dtype=str, keep_default_na=False)
    assert log.iloc[-1]["public_score"] == "0.66"


def test_submit_kernel_needs_owner_and_slug(config, kaggle, tmp_path, cli):
    kaggle_json(tmp_path / "home")
    code, _, err = cli("submit", config, "--kernel", "minilm-inference")
    assert code == 2 and "expected OWNER/SLUG" in err and not kaggle.calls
    code, _, err = cli("submit", config, "--version", "3")
    assert code == 2 and "--kernel" in err
    with pytest.raises(KaggleMLCError, match="no competition 'toy-comp'"):
        submit_kernel(load_config(config), "tester/minilm-inference")  # 404: the stub knows no such endpoint
