"""Models from the Hugging Face Hub: a hub id becomes a snapshot folder in the Hugging Face cache.

    snapshot = hub_snapshot("microsoft/deberta-v3-base", revision=None, cache_dir=None, offline=False)
    snapshot.folder   # <cache>/models--microsoft--deberta-v3-base/snapshots/<commit>: what from_pretrained reads
    snapshot.commit   # the commit the branch or tag pointed at

Online, the files from_pretrained reads (the top folder's config, tokenizer and code files, and one set of weights:
safetensors before PyTorch .bin; no TensorFlow, Flax, ONNX, GGUF or `original/` checkpoints) are fetched by
`huggingface_hub.snapshot_download` into the cache (`cache_dir`, default `HF_HUB_CACHE`): files already there are
not fetched again, a connection dropped in the middle of a file is resumed where it stopped (an HTTP Range
request), and a terminal shows progress bars. Offline (`offline`, or HF_HUB_OFFLINE=1) the cache alone answers and
no request is sent. The token is huggingface_hub's own (`hf auth login`, or HF_TOKEN): nothing here reads, prints
or writes it, and error messages are written from the error's type, never from its text.
"""

from __future__ import annotations

import functools
import glob
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import enable_progress_bars, validate_repo_id
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from kagglemlc.core.console import info, warn
from kagglemlc.core.errors import KaggleMLCError

# Weights of every format a model repo may carry; only the ones from_pretrained loads are fetched.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".onnx", ".tflite", ".gguf")
# from_pretrained's own order of preference: (single file, index of shards)
WEIGHT_FORMATS = ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME))
# snapshot_download's byte bars (shown in a terminal only); transformers turns every hub bar off when imported
PROGRESS_GROUP = "huggingface_hub.snapshot_download"


@dataclass(frozen=True)
class Snapshot:
    """A hub model at one commit, as a folder of the Hugging Face cache."""

    folder: str
    commit: str


def hub_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1), as huggingface_hub read it."""
    return bool(constants.HF_HUB_OFFLINE)


def wanted_files(files: list[str]) -> list[str]:
    """The repo files from_pretrained reads: the top folder's, with one set of weights; and a sentence-transformers
    checkpoint's pooling config (`model.pooling: auto` reads it).

    >>> wanted_files(["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx"])
    ['config.json', 'model.safetensors']
    >>> wanted_files(["modules.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors"])
    ['modules.json', '1_Pooling/config.json']
    """
    top = [f for f in files if "/" not in f]
    weights = _weights(top)
    pooling = [f for f in files if re.fullmatch(r"\d+_Pooling/config\.json", f)]
    return [f for f in top if f in weights or not f.endswith(WEIGHT_SUFFIXES)] + pooling


def _weights(files: list[str]) -> set[str]:
    for single, index in WEIGHT_FORMATS:
        if single in files:
            return {single}
        if index in files:  # shards as save_pretrained names them: model-00001-of-00004.safetensors
            stem, suffix = single.rsplit(".", 1)
            return {index} | {f for f in files if f.startswith(f"{stem}-") and f.endswith(f".{suffix}")}
    return set()


@functools.cache
def hub_snapshot(repo_id: str, revision: str | None, cache_dir: Path | None, offline: bool) -> Snapshot:
    """The hub model's snapshot folder: downloaded (what is missing of it) unless offline, then read from the cache.

    Asked once per process and model: every stage of `run` and every cell of a sweep use the same commit.

    Args:
        repo_id: the hub id, e.g. `microsoft/deberta-v3-base`.
        revision: a branch, tag or commit; default: the main branch.
        cache_dir: the Hugging Face cache to use; default: huggingface_hub's (`HF_HUB_CACHE`).
        offline: read the cache only and send nothing.

    Raises:
        KaggleMLCError: one line: not a valid id, not on the Hub (or private), gated, an unknown revision, a token
            refused, the Hub unreachable or offline with the model not in the cache, a download that failed.
    """
    cache = None if cache_dir is None else str(cache_dir)
    try:
        validate_repo_id(repo_id)
    except ValueError:
        raise KaggleMLCError(
            f"model.name '{repo_id}' not found: not a local folder, not a bundled alias (minilm), and not a valid "
            "Hugging Face Hub id (org/name)"
        ) from None
    if offline:
        cached = _cached(repo_id, revision, cache)
        if cached is None:
            raise KaggleMLCError(
                f"model.name '{repo_id}'{_at(revision)} not found: not a local folder, not a bundled alias (minilm), "
                f"and not in the Hugging Face cache at {_cache(cache)}; offline (model.offline or HF_HUB_OFFLINE=1), "
                "nothing is downloaded: run `kagglemlc download CONFIG` where there is internet (same cache), "
                "or point model.name at a folder"
            )
        return cached
    try:
        files = HfApi().model_info(repo_id, revision=revision, files_metadata=True).siblings
    except HfHubHTTPError as exc:
        if _status(exc) < 500:
            raise _refused(repo_id, revision, exc) from None
        return _from_cache_instead(repo_id, revision, cache, f"HTTP {_status(exc)}")
    except Exception as exc:  # no answer (no network, DNS, proxy, timeout): the HTTP client's errors vary by version
        return _from_cache_instead(repo_id, revision, cache, type(exc).__name__)
    return _download(repo_id, revision, cache, files)


def _download(repo_id: str, revision: str | None, cache_dir: str | None, files: list | None) -> Snapshot:
    """Fetches what is missing of the wanted files; returns the snapshot folder, named by its commit."""
    wanted = None if files is None else wanted_files([f.rfilename for f in files])
    try:
        # the config first: a gated repo, or one that holds no transformers model, stops here before a line is printed
        commit = Path(hf_hub_download(repo_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir)).parent.name
        _announce(repo_id, commit, cache_dir, [f for f in files or [] if f.rfilename in (wanted or ())])
        if constants.HF_HUB_DISABLE_PROGRESS_BARS is not True:  # else huggingface_hub warns that the user said no
            enable_progress_bars(PROGRESS_GROUP)
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=None if wanted is None else [glob.escape(f) for f in wanted],
        )
    except (HfHubHTTPError, LocalEntryNotFoundError) as exc:
        raise _refused(repo_id, revision, exc) from None
    except Exception as exc:  # the connection lost for good, a full disk ...: the files complete so far stay cached
        raise KaggleMLCError(
            f"model.name '{repo_id}': the download from the Hugging Face Hub failed ({type(exc).__name__}); the files "
            "complete so far are kept: run the command again to fetch the rest"
        ) from None
    return Snapshot(folder, Path(folder).name)


def _announce(repo_id: str, commit: str, cache_dir: str | None, files: list) -> None:
    """One line before a download (progress bars show in a terminal only): what is fetched, how much, where to."""
    missing = [f for f in files if not _in_cache(repo_id, f.rfilename, cache_dir, commit)]
    if missing:
        size = sum(f.size or 0 for f in missing) / 1e6
        info(f"downloading {repo_id} (commit {commit}): {len(missing)} files, {size:,.1f} MB → {_cache(cache_dir)}")


def _in_cache(repo_id: str, filename: str, cache_dir: str | None, revision: str | None) -> bool:
    return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str)


def _cached(repo_id: str, revision: str | None, cache_dir: str | None) -> Snapshot | None:
    """The cached snapshot of the revision (a branch or tag through the ref the last download wrote), or None."""
    config = try_to_load_from_cache(repo_id, CONFIG_NAME, cache_dir=cache_dir, revision=revision)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return Snapshot(str(folder), folder.name)


def _from_cache_instead(repo_id: str, revision: str | None, cache_dir: str | None, reason: str) -> Snapshot:
    cached = _cached(repo_id, revision, cache_dir)
    if cached is None:
        raise KaggleMLCError(
            f"model.name '{repo_id}'{_at(revision)}: the Hugging Face Hub could not be reached ({reason}) and the "
            f"model is not in the cache at {_cache(cache_dir)}; check the connection (or HF_ENDPOINT), or run "
            "`kagglemlc download CONFIG` where there is internet"
        )
    warn(f"the Hugging Face Hub could not be reached ({reason}): '{repo_id}' from the cache, commit {cached.commit}")
    return cached


def _refused(repo_id: str, revision: str | None, exc: Exception) -> KaggleMLCError:
    """The Hub's answer as one line. Written from the error's type and status only: its text quotes the request."""
    cause = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__  # an HTTP error the cache could not make up for
    if isinstance(cause, GatedRepoError):
        return KaggleMLCError(
            f"model.name '{repo_id}' is gated on the Hugging Face Hub: accept its licence on "
            f"{constants.ENDPOINT}/{repo_id} (logged in), then `hf auth login` or set HF_TOKEN to a token of that "
            "account"
        )
    if isinstance(cause, RevisionNotFoundError):
        return KaggleMLCError(
            f"model.revision '{revision}' not found in '{repo_id}' on the Hugging Face Hub: a branch, tag or commit "
            "of that model"
        )
    if isinstance(cause, RepositoryNotFoundError):
        return KaggleMLCError(
            f"model.name '{repo_id}' not found: not a local folder, not a bundled alias (minilm), and not on the "
            "Hugging Face Hub; check the id (a private model needs a token that can read it: `hf auth login`, or "
            "set HF_TOKEN)"
        )
    if isinstance(cause, EntryNotFoundError):
        return KaggleMLCError(
            f"model.name '{repo_id}'{_at(revision)} has no {CONFIG_NAME} on the Hugging Face Hub: not a transformers "
            "model"
        )
    if isinstance(cause, HfHubHTTPError) and _status(cause) in (401, 403):
        return KaggleMLCError(
            f"the Hugging Face Hub refused the token for '{repo_id}' (HTTP {_status(cause)}): log in again "
            "(`hf auth login`) or set HF_TOKEN to a valid token"
        )
    if isinstance(cause, HfHubHTTPError):
        return KaggleMLCError(
            f"model.name '{repo_id}': the Hugging Face Hub answered HTTP {_status(cause)} during the download; try "
            "again later (files complete so far are kept)"
        )
    return KaggleMLCError(
        f"model.name '{repo_id}'{_at(revision)}: the Hugging Face Hub could not be reached during the download "
        f"({type(cause or exc).__name__}); run the command again (files complete so far are kept)"
    )


def _status(exc: HfHubHTTPError) -> int:
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0) or 0)


def _at(revision: str | None) -> str:
    return "" if revision is None else f" (revision {revision})"


def _cache(cache_dir: str | None) -> str:
    return cache_dir or constants.HF_HUB_CACHE
