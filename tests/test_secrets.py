"""Credentials never leak: with fake Kaggle, Hugging Face and W&B secrets planted in the environment and in
~/.kaggle/kaggle.json, the whole chain (`run`, `report`, a `submit --upload` with no server and one refused,
a user error and a crash mid-training) writes none of them to any file, to stdout/stderr or to the logs.

Nothing here can reach the internet: KAGGLE_API_ENVIRONMENT=LOCALHOST points the kaggle client at
http://localhost, and HTTP(S)_PROXY route every request either to a closed loopback port (no server:
the upload fails to connect) or to a stub that refuses uploads with HTTP 401 and records what it was sent
(proof that the secrets really were in play).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_competition
from tiny_models import make_encoder

SLUG = "toy-comp"
USERNAME = "secret-test-user"


def _secret(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(16)}"


@pytest.fixture
def planted(tmp_path, monkeypatch) -> dict[str, str]:
    """Fake secrets in every place a user keeps them; HOME is a temp folder. Returns name → value."""
    values = {
        "KAGGLE_KEY": _secret("kgl-key"),
        "KAGGLE_API_TOKEN": _secret("kgl-token"),
        "HF_TOKEN": _secret("hf"),
        "HUGGING_FACE_HUB_TOKEN": _secret("hfhub"),
        "WANDB_API_KEY": _secret("wandb"),
        "kaggle.json key": _secret("kgl-json-key"),
    }
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    kaggle_json = home / ".kaggle" / "kaggle.json"
    kaggle_json.write_text(json.dumps({"username": USERNAME, "key": values["kaggle.json key"]}))
    kaggle_json.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME", "KAGGLE_KERNEL_RUN_TYPE", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    for name, value in values.items():
        if name.isupper():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("VERBOSE", "true")  # the kaggle client then prints whole requests, auth headers included
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    _route_http_to(monkeypatch, _closed_port())
    return values


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening, then closed: connections are refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _route_http_to(monkeypatch, port: int) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    # the client reads its environment when imported: import it afresh under this one
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith(("kaggle.", "kagglesdk"))]:
        monkeypatch.delitem(sys.modules, name)


class _Refuse(BaseHTTPRequestHandler):
    """A stub Kaggle API: the access token is valid, every upload is refused with HTTP 401."""

    seen: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"{self.command} {self.path}\n{self.headers}\n{body.decode(errors='replace')}")
        if self.path.endswith("IntrospectToken"):
            status, payload = 200, {"active": True, "username": USERNAME}
        else:
            status, payload = 401, {"code": 401, "message": "Unauthenticated: bad credentials"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_kaggle(monkeypatch, planted):
    """Routes the kaggle client to the refusing stub; yields what the stub received."""
    _Refuse.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _route_http_to(monkeypatch, server.server_address[1])
    yield _Refuse.seen
    server.shutdown()
    server.server_close()


def _needles(values: dict[str, str]) -> dict[str, bytes]:
    """Every form a secret could be written in: whole, a distinctive part of it, inside a Basic auth header."""
    found = {}
    for name, value in values.items():
        found[name] = value.encode()
        found[f"{name} (part)"] = value.split("-")[-1][:12].encode()
    for name in [n for n in ("KAGGLE_KEY", "kaggle.json key") if n in values]:
        basic = base64.b64encode(f"{USERNAME}:{values[name]}".encode())
        found[f"{name} (Basic auth)"] = basic
    return found


def _readable(path: Path) -> bytes:
    """A file's bytes, plus the decoded text of formats that compress (parquet)."""
    raw = path.read_bytes()
    if path.suffix == ".parquet":
        raw += pd.read_parquet(path).to_csv().encode()
    return raw


def assert_no_secret(values: dict[str, str], tree: Path, texts: dict[str, str]) -> int:
    """No secret in any file under `tree` (except the planted kaggle.json) nor in `texts`; returns files checked."""
    needles = _needles(values)
    planted_file = (tree / "home" / ".kaggle" / "kaggle.json").resolve()
    checked = 0
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and p.resolve() != planted_file):
        content = _readable(path)
        checked += 1
        for name, needle in needles.items():
            assert needle not in content, f"{name} found in {path.relative_to(tree)}"
    for where, text in texts.items():
        for name, needle in needles.items():
            assert needle.decode() not in text, f"{name} found in {where}"
    return checked


@pytest.fixture
def experiment(tmp_path) -> Path:
    """The toy competition with a tiny BERT, a few steps per fold, checkpoints at every step."""
    bert = make_encoder(tmp_path / "bert", "bert")
    train = {"epochs": 1, "max_steps": 3, "lr": 5e-3, "batch_size": 16, "precision": "no", "checkpoint_every": 1}
    return make_competition(
        tmp_path / "comp",
        n_train=48,
        n_test=12,
        config={
            "competition": {"slug": SLUG},
            "cv": {"folds": 2},
            "model": {"name": str(bert), "max_length": 32},
            "train": train,
        },
    )


def test_no_secret_in_any_output_log_or_message(tmp_path, experiment, planted, cli, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("kaggle", "kagglesdk", "urllib3", "requests", "transformers", "accelerate"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    texts: dict[str, str] = {}

    def command(*args: str, expect: int) -> str:
        code, out, err = cli(*args)
        texts[f"stdout of {args[0]} {args[2:]}"], texts[f"stderr of {args[0]} {args[2:]}"] = out, err
        assert code == expect, err[-2000:]
        return err

    command("run", experiment, expect=0)
    command("report", experiment, expect=0)
    command("report", experiment, "--json", expect=0)
    run = experiment.parent / "run"
    assert (run / "report.md").is_file() and (run / "stages.json").is_file()
    assert (experiment.parent / "submissions" / "log.csv").is_file()

    # upload with nothing listening: a clean error, no secret in it
    err = command("submit", experiment, "--upload", "-m", "try", expect=2)
    assert "error: cannot reach the Kaggle API" in err

    # a user error: one line, exit 2
    err = command("train", experiment, "train.lr=-1", expect=2)
    assert "train.lr" in err

    # a crash in the middle of training: the traceback and the checkpoint it leaves behind are clean too
    def crash(self) -> None:
        raise RuntimeError("simulated crash after the fold's last evaluation")

    crashed = f"output_dir={tmp_path / 'crashed'}"
    command("prepare", experiment, crashed, expect=0)
    monkeypatch.setattr("kagglemlc.stages.train.FoldTrainer.finish", crash)
    with pytest.raises(RuntimeError, match="simulated crash") as excinfo:
        cli("train", experiment, crashed, "--fold", "0")
    texts["crash traceback"] = "".join(traceback.format_exception(excinfo.value))
    texts["crash output"] = "".join(capsys.readouterr())
    assert (tmp_path / "crashed" / "fold0" / "checkpoint").is_dir()  # the resume state is among the files checked

    texts["logs"] = caplog.text
    checked = assert_no_secret(planted, tmp_path, texts)
    assert checked > 20


@pytest.mark.parametrize("credential", ["KAGGLE_API_TOKEN", "KAGGLE_KEY", "kaggle.json key"])
def test_refused_upload_leaks_nothing(
    tmp_path, experiment, planted, refusing_kaggle, cli, caplog, monkeypatch, credential
):
    """`submit --upload` against a Kaggle API that refuses: the client did send the secret, nothing of it comes back.

    The client prefers the access token, then KAGGLE_USERNAME/KAGGLE_KEY, then kaggle.json: each is tried alone.
    """
    caplog.set_level(logging.DEBUG)
    from kagglemlc.core.files import write_parquet
    from kagglemlc.core.paths import THRESHOLDS_FILE
    from kagglemlc.data.predictions import probability_frame

    if credential != "KAGGLE_API_TOKEN":
        monkeypatch.delenv("KAGGLE_API_TOKEN")
    if credential == "kaggle.json key":
        monkeypatch.delenv("KAGGLE_USERNAME")
        monkeypatch.delenv("KAGGLE_KEY")
    # the stages before submit, fabricated: this test is about the upload
    run = experiment.parent / "run"
    test_ids = pd.read_csv(experiment.parent / "test.csv", dtype=str)["id"].to_numpy()
    probs = [[0.2, 0.6, 0.9]] * len(test_ids)
    write_parquet(run / "test.parquet", probability_frame(test_ids, probs, ["joy", "anger", "fear"]))
    (run / THRESHOLDS_FILE).write_text(
        json.dumps({"task": "multilabel", "thresholds": {"joy": 0.5, "anger": 0.5, "fear": 0.5}, "cv_tuned": 0.5})
    )
    code, out, err = cli("submit", experiment, "--upload")
    assert code == 2 and "HTTP 401" in err, err
    sent = "\n".join(refusing_kaggle)
    needles = _needles({credential: planted[credential]})
    assert any(n.decode() in sent for n in needles.values()), (
        f"the stub never saw {credential}: the test would prove nothing"
    )
    assert_no_secret(planted, tmp_path, {"stdout": out, "stderr": err, "logs": caplog.text})


def test_the_check_finds_a_secret_wherever_it_is_written(tmp_path):
    """The grep itself works: in plain files, inside parquet, as a Basic auth header, and in captured text."""
    from kagglemlc.core.files import write_parquet

    values = {"KAGGLE_KEY": _secret("kgl-key")}
    cases = {
        "plain.txt": lambda p: p.write_text(f"key={values['KAGGLE_KEY']}"),
        "table.parquet": lambda p: write_parquet(p, pd.DataFrame({"id": ["a"], "note": [values["KAGGLE_KEY"] * 3]})),
        "headers.log": lambda p: p.write_bytes(b"Authorization: Basic " + _needles(values)["KAGGLE_KEY (Basic auth)"]),
    }
    for name, write in cases.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        write(folder / name)
        with pytest.raises(AssertionError, match="KAGGLE_KEY"):
            assert_no_secret(values, folder, {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssertionError, match="in stderr"):
        assert_no_secret(values, tmp_path / "empty", {"stderr": "...kgl-key-" + values["KAGGLE_KEY"][8:20]})
