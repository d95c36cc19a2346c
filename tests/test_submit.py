"""Submit: thresholds applied, the sample submission's ids/order/columns kept, nothing written on a bad
frame, log.csv appended; upload through the real kaggle client against a stub Kaggle API on loopback.

The stub: with KAGGLE_API_ENVIRONMENT=LOCALHOST the kaggle client (kagglesdk) calls http://localhost
(port 80) at /api/v1/competitions.CompetitionApiService/StartSubmissionUpload, PUTs the file to the
returned createUrl, then calls CreateSubmission. Rather than binding port 80 (root only, and shared by
concurrent test runs), the stub listens on a free loopback port and is named as the HTTP proxy: requests
routes every call of the client there unchanged (same URLs, bodies and auth headers).
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.submissions import LOG_COLUMNS
from kagglemlc.stages.submit import NO_CREDENTIALS, refresh_scores, submit, validate_submission

SLUG = "toy-comp"
SECRET = "s3cr3t-kaggle-key-5f0e1d2c3b4a"
API = "/api/v1/competitions.CompetitionApiService/"


# ---- fabricated experiment outputs ---------------------------------------------------------------


def write_outputs(config: Path, probs: pd.DataFrame, thresholds: dict | None = None, cv: float = 0.71, **extra) -> None:
    """test.parquet (rows as given) and thresholds.json in the config's output dir, as the earlier stages write them."""
    cfg = load_config(config)
    run = cfg.run_dir
    run.mkdir(parents=True, exist_ok=True)
    probs.to_parquet(run / "test.parquet", index=False)
    if thresholds is not None:
        (run / "thresholds.json").write_text(
            json.dumps(
                {
                    "strategy": "per_label",
                    "metric": "f1_macro",
                    "task": cfg.competition.task,
                    "thresholds": thresholds,
                    "cv_at_0.5": cv - 0.05,
                    "cv_tuned": cv,
                    "cv_nested": cv - 0.02,
                    **extra,
                }
            )
        )


def random_probs(ids: list[str], labels: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.random((len(ids), len(labels))).astype(np.float32), columns=labels)
    frame.insert(0, "id", ids)
    return frame


def read_submission(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if p.name != "log.csv") if folder.is_dir() else []


@pytest.fixture
def experiment(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The toy multilabel competition with slug, shuffled test.parquet and per-label thresholds."""
    config = make_competition(tmp_path / "comp", config={"competition": {"slug": SLUG}})
    sample = pd.read_csv(tmp_path / "comp" / "sample_submission.csv", dtype=str)
    probs = random_probs(list(sample["id"]), LABELS).sample(frac=1, random_state=3)
    write_outputs(config, probs, {"joy": 0.3, "anger": 0.6, "fear": 0.9})
    return config, probs


# ---- the written file ----------------------------------------------------------------------------


def test_thresholds_applied_in_sample_order(experiment):
    config, probs = experiment
    path = submit(load_config(config))
    assert path.parent == config.parent / "submissions" and path.name.startswith("run-") and path.suffix == ".csv"
    sub = read_submission(path)
    sample = pd.read_csv(config.parent / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns)
    assert list(sub["id"]) == list(sample["id"])  # test.parquet was shuffled
    expected = probs.set_index("id").loc[sample["id"]]
    for name, t in {"joy": 0.3, "anger": 0.6, "fear": 0.9}.items():
        assert list(sub[name]) == [str(int(p >= t)) for p in expected[name]]


def test_leading_zero_ids_survive(tmp_path):
    ids = ["007", "0042", "10", "3", "0"]
    test = pd.DataFrame({"id": ids, "text": ["happy day"] * 5})
    sample = pd.DataFrame({"id": ["3", "007", "0", "10", "0042"], **{name: 0 for name in LABELS}})
    config = make_competition(tmp_path, test=test, sample_submission=sample)
    write_outputs(config, random_probs(ids, LABELS), {name: 0.5 for name in LABELS})
    path = submit(load_config(config))
    assert list(read_submission(path)["id"]) == ["3", "007", "0", "10", "0042"]
    assert path.read_text().splitlines()[2].startswith("007,")


def test_probabilities_kind_writes_the_probabilities(tmp_path):
    train = toy_frame(60)[["id", "text", "joy"]]
    test = toy_frame(12, seed=1, id_prefix="t")[["id", "text"]]
    config = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=pd.DataFrame({"id": test["id"], "joy": 0.5}),
        config={"competition": {"task": "binary", "metric": "roc_auc"}, "submission": {"kind": "probabilities"}},
    )
    probs = random_probs(list(test["id"]), ["joy"])
    write_outputs(config, probs)  # no thresholds.json: probabilities need none
    sub = pd.read_csv(submit(load_config(config)), dtype={"id": str})
    assert sub["joy"].dtype == np.float64
    np.testing.assert_allclose(sub["joy"], probs["joy"], rtol=1e-6)


def test_binary_labels(tmp_path):
    train = toy_frame(60)[["id", "text", "joy"]]
    test = toy_frame(12, seed=1, id_prefix="t")[["id", "text"]]
    config = make_competition(
        tmp_path,
        train=train,
        test=test,
        sample_submission=pd.DataFrame({"id": test["id"], "joy": 0}),
        config={"competition": {"task": "binary"}},
    )
    probs = random_probs(list(test["id"]), ["joy"])
    write_outputs(config, probs, {"joy": 0.25})
    sub = read_submission(submit(load_config(config)))
    assert list(sub["joy"]) == [str(int(p >= 0.25)) for p in probs["joy"]]


MULTICLASS = {"competition": {"task": "multiclass", "metric": "accuracy"}, "train": {"loss": "ce"}}


def _multiclass_probs(ids: list[str]) -> pd.DataFrame:
    """Rows alternate between a clear joy and a joy/anger near-tie that a +0.2 bias on anger flips."""
    rows = [[0.7, 0.2, 0.1] if i % 2 else [0.45, 0.4, 0.15] for i in range(len(ids))]
    frame = pd.DataFrame(rows, columns=LABELS)
    frame.insert(0, "id", ids)
    return frame


def test_multiclass_one_target_column_gets_class_names(tmp_path):
    train = toy_frame(60)
    train["emotion"] = np.array(LABELS)[np.arange(60) % 3]
    test = toy_frame(6, seed=1, id_prefix="t")[["id", "text"]]
    config = make_competition(
        tmp_path,
        train=train[["id", "text", "emotion"]],
        test=test,
        sample_submission=pd.DataFrame({"id": test["id"], "emotion": "joy"}),
        config={
            **MULTICLASS,
            "competition": {**MULTICLASS["competition"], "label_format": "list", "label_column": "emotion"},
        },
    )
    names = sorted(LABELS)  # labels read from a list column are sorted: anger, fear, joy
    probs = _multiclass_probs(list(test["id"]))[["id", *names]]
    write_outputs(config, probs, {}, bias={"anger": 0.2, "fear": 0.0, "joy": 0.0})
    sub = read_submission(submit(load_config(config)))
    assert list(sub.columns) == ["id", "emotion"]
    assert list(sub["emotion"]) == ["anger", "joy"] * 3


def test_multiclass_column_per_class_gets_one_hot(tmp_path):
    train = toy_frame(60)
    one_hot = np.eye(3, dtype=int)[np.arange(60) % 3]
    train[LABELS] = one_hot
    test = toy_frame(6, seed=1, id_prefix="t")[["id", "text"]]
    config = make_competition(tmp_path, train=train, test=test, config=MULTICLASS)
    write_outputs(config, _multiclass_probs(list(test["id"])), {}, bias={"joy": 0.0, "anger": 0.2, "fear": 0.0})
    sub = read_submission(submit(load_config(config)))
    assert sub[LABELS].astype(int).values.tolist() == [[0, 1, 0], [1, 0, 0]] * 3


# ---- validation: a bad frame writes nothing ------------------------------------------------------


def test_missing_id_is_an_error_and_writes_nothing(experiment):
    config, probs = experiment
    write_outputs(config, probs.iloc[1:], {name: 0.5 for name in LABELS})
    with pytest.raises(KaggleMLCError, match="test.parquet: ids do not match") as excinfo:
        submit(load_config(config))
    assert excinfo.value.exit_code == 2
    assert not (config.parent / "submissions").exists()


def test_nan_probability_is_an_error_and_writes_nothing(experiment):
    config, probs = experiment
    probs = probs.copy()
    probs.iloc[4, 2] = np.nan
    write_outputs(config, probs, {name: 0.5 for name in LABELS})
    with pytest.raises(KaggleMLCError, match="NaN"):
        submit(load_config(config))
    assert not (config.parent / "submissions").exists()


def test_missing_thresholds_names_the_stage(experiment):
    config, _ = experiment
    (load_config(config).run_dir / "thresholds.json").unlink()
    with pytest.raises(KaggleMLCError, match="tune-thresholds"):
        submit(load_config(config))


SAMPLE = pd.DataFrame({"id": ["007", "b", "c"], "joy": ["0"] * 3, "anger": ["0"] * 3})


def _frame(**changes) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ["007", "b", "c"], "joy": [1, 0, 1], "anger": [0, 0, 1]})
    for column, values in changes.items():
        frame[column] = values
    return frame


@pytest.mark.parametrize(
    ("frame", "values", "problem"),
    [
        (_frame(), "labels", None),
        (_frame(id=["b", "007", "c"]), "labels", "row 1 has id 'b'"),
        (_frame(id=[7, "b", "c"]), "labels", "ids as text"),
        (_frame()[["id", "anger", "joy"]], "labels", "columns"),
        (_frame().iloc[:2], "labels", "2 rows instead of 3"),
        (_frame(joy=[1.0, np.nan, 0.0]), "labels", "column 'joy' has a missing value on row 2"),
        (_frame(joy=[1.0, 0.0, 0.0]), "labels", "0/1 integers"),
        (_frame(joy=[2, 0, 0]), "labels", "0/1 integers"),
        (_frame(joy=[0.2, 0.5, 1.0], anger=[0.0, 0.1, 0.9]), "probabilities", None),
        (_frame(joy=[0.2, 1.5, 1.0], anger=[0.0, 0.1, 0.9]), "probabilities", "probabilities in"),
    ],
)
def test_validate_submission(frame, values, problem):
    if problem is None:
        validate_submission(frame, SAMPLE, "id", values, "sample_submission.csv")
        return
    with pytest.raises(KaggleMLCError, match=problem):
        validate_submission(frame, SAMPLE, "id", values, "sample_submission.csv")


def test_log_appended_per_submission(experiment):
    config, _ = experiment
    cfg = load_config(config)
    first = submit(cfg)
    second = submit(cfg, message="second try")
    assert first != second
    log = pd.read_csv(config.parent / "submissions" / "log.csv", dtype=str, keep_default_na=False)
    assert list(log.columns) == LOG_COLUMNS
    assert list(log["file"]) == [first.name, second.name]
    assert list(log["message"]) == ["run CV 0.7100", "second try"]
    assert list(log["cv"]) == ["0.710000"] * 2 and list(log["public_score"]) == ["", ""]


# ---- upload through the real kaggle client -------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def endpoint(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class KaggleStub:
    """A fake Kaggle API: records each request, answers from `responses` (endpoint → (status, JSON))."""

    port: int = 0
    calls: list[Call] = field(default_factory=list)
    responses: dict[str, tuple[int, dict]] = field(
        default_factory=lambda: {
            "StartSubmissionUpload": (
                200,
                {"token": "blob-token-1", "createUrl": "http://localhost/upload/blob-token-1"},
            ),
            "blob-token-1": (200, {}),
            "CreateSubmission": (200, {"message": "Successfully submitted to Toy Competition", "ref": 101}),
            "ListSubmissions": (200, {"submissions": []}),
            "IntrospectToken": (200, {"active": True, "username": "tester"}),
        }
    )

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if "chunked" in handler.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(handler.rfile.readline().strip(), 16):
                body += handler.rfile.read(size)
                handler.rfile.readline()
            handler.rfile.readline()
        else:
            body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        call = Call(handler.command, urlsplit(handler.path).path, dict(handler.headers), body)
        self.calls.append(call)
        status, payload = self.responses.get(call.endpoint, (404, {"code": 404, "message": "unknown endpoint"}))
        # a file's bytes go out as an archive; a 3xx's payload is {"Location": url}; anything else as JSON
        data = payload if isinstance(payload, bytes) else b"" if 300 <= status < 400 else json.dumps(payload).encode()
        handler.send_response(status)
        if 300 <= status < 400:
            handler.send_header("Location", payload["Location"])
        kind = "application/zip" if isinstance(payload, bytes) else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.stub.answer(self)  # type: ignore[attr-defined]

    do_PUT = do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A stub Kaggle API, an empty HOME, no KAGGLE_* credentials, and a freshly imported kaggle client.

    The client reads KAGGLE_API_ENVIRONMENT and its config dir when it is imported, so each test
    imports it anew under its own environment.
    """
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    server.stub = KaggleStub(port=server.server_address[1])  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "KAGGLE_CONFIG_DIR",
        "XDG_CONFIG_HOME",
        "KAGGLE_KERNEL_RUN_TYPE",
        "VERBOSE",
        "VERBOSE_OUTPUT",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.stub.port}")
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith(("kaggle.", "kagglesdk"))]:
        monkeypatch.delitem(sys.modules, name)
    yield server.stub
    server.shutdown()
    server.server_close()


def kaggle_json(home: Path) -> None:
    folder = home / ".kaggle"
    folder.mkdir()
    (folder / "kaggle.json").write_text(json.dumps({"username": "tester", "key": SECRET}))
    (folder / "kaggle.json").chmod(0o600)


def assert_secret_nowhere(folder: Path, capfd) -> None:
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err
    for path in (p for p in folder.rglob("*") if p.is_file()):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("credentials", ["kaggle.json", "env", "token"])
def test_upload_through_the_kaggle_client(experiment, kaggle, credentials, tmp_path, monkeypatch, capfd):
    config, _ = experiment
    if credentials == "kaggle.json":
        kaggle_json(tmp_path / "home")
    elif credentials == "env":
        monkeypatch.setenv("KAGGLE_USERNAME", "tester")
        monkeypatch.setenv("KAGGLE_KEY", SECRET)
    else:
        monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)

    path = submit(load_config(config), message="minilm, tuned thresholds", upload=True)

    calls = [c for c in kaggle.calls if c.endpoint != "IntrospectToken"]
    assert [(c.method, c.endpoint) for c in calls] == [
        ("POST", "StartSubmissionUpload"),
        ("PUT", "blob-token-1"),
        ("POST", "CreateSubmission"),
    ]
    start, put, create = calls
    assert start.path == API + "StartSubmissionUpload"
    assert start.headers["Host"] == "localhost"  # KAGGLE_API_ENVIRONMENT=LOCALHOST: http://localhost, port 80
    assert start.json()["competitionName"] == SLUG and start.json()["fileName"] == path.name
    assert start.json()["contentLength"] == path.stat().st_size
    assert put.body == path.read_bytes()
    assert create.json() == {
        "competitionName": SLUG,
        "blobFileTokens": "blob-token-1",
        "submissionDescription": "minilm, tuned thresholds",
    }
    expected_auth = (
        f"Bearer {SECRET}"
        if credentials == "token"
        else "Basic " + base64.b64encode(f"tester:{SECRET}".encode()).decode()
    )
    assert start.headers["Authorization"] == create.headers["Authorization"] == expected_auth
    assert "Authorization" not in put.headers  # the storage URL gets the file, never the credentials
    assert_secret_nowhere(tmp_path / "comp", capfd)


@pytest.mark.parametrize(
    ("endpoint", "status", "message", "expected"),
    [
        ("StartSubmissionUpload", 404, "Competition not found", "no competition 'toy-comp'.*competition.slug"),
        (
            "CreateSubmission",
            400,
            "Submission not allowed: your team reached its daily submission limit (5)",
            "daily submission limit is reached",
        ),
        ("CreateSubmission", 429, "Too many requests", "daily submission limit is reached"),
    ],
)
def test_upload_refused_is_one_clear_error(experiment, kaggle, tmp_path, capfd, endpoint, status, message, expected):
    config, _ = experiment
    kaggle_json(tmp_path / "home")
    kaggle.responses[endpoint] = (status, {"code": status, "message": message})
    with pytest.raises(KaggleMLCError, match=expected) as excinfo:
        submit(load_config(config), upload=True)
    text = str(excinfo.value)
    assert "\n" not in text and SECRET not in text
    assert_secret_nowhere(tmp_path / "comp", capfd)


def test_missing_credentials_stop_before_writing(experiment, kaggle, capfd):
    config, _ = experiment
    with pytest.raises(KaggleMLCError) as excinfo:
        submit(load_config(config), upload=True)
    assert str(excinfo.value) == NO_CREDENTIALS
    assert not kaggle.calls and not csv_files(config.parent / "submissions")
    out, _ = capfd.readouterr()
    assert "Authentication required" not in out  # the client's help text is not printed around our error


def test_missing_slug_is_an_error_before_writing(tmp_path, kaggle):
    config = make_competition(tmp_path / "comp")
    write_outputs(config, random_probs([f"t{i:04d}" for i in range(30)], LABELS), {n: 0.5 for n in LABELS})
    with pytest.raises(KaggleMLCError, match="competition.slug is not set"):
        submit(load_config(config), upload=True)
    assert not csv_files(tmp_path / "comp" / "submissions")


def test_refresh_scores_fills_the_log(experiment, kaggle, tmp_path):
    config, _ = experiment
    kaggle_json(tmp_path / "home")
    cfg = load_config(config)
    first, second, third = submit(cfg), submit(cfg, message="by description"), submit(cfg, message="pending")
    kaggle.responses["ListSubmissions"] = (
        200,
        {
            "submissions": [
                {"ref": 3, "fileName": "renamed.csv", "description": "pending", "publicScore": ""},
                {"ref": 2, "fileName": "renamed.csv", "description": "by description", "publicScore": "0.61"},
                {"ref": 1, "fileName": first.name, "description": "run CV 0.7100", "publicScore": "0.6543"},
            ]
        },
    )
    refresh_scores(cfg)
    assert kaggle.calls[-1].endpoint == "ListSubmissions" and kaggle.calls[-1].json()["competitionName"] == SLUG
    log = pd.read_csv(config.parent / "submissions" / "log.csv", dtype=str, keep_default_na=False)
    scores = dict(zip(log["file"], log["public_score"], strict=True))
    assert scores == {first.name: "0.6543", second.name: "0.61", third.name: ""}
