"""Atomic writes: every file the toolkit writes is either complete or absent.

    write_json(run_dir / "metrics.json", {"f1": 0.5})

Each writer renders into a temporary file in the destination's folder, fsyncs it and renames it
over the destination (`os.replace` is atomic on POSIX and Windows), so a process killed at any
moment never leaves a half-written output behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kagglemlc.core.errors import KaggleMLCError

_UMASK = os.umask(0)
os.umask(_UMASK)


# A temp file is named `.<destination>.<host>-<pid>.<random>.tmp`: its writer is known, so a later write
# into the same folder removes what a killed writer left (`remove_dead_temps`) and never a live one's.
_TEMP = re.compile(r"^\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0]) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temps(folder: Path) -> list[Path]:
    """Removes the temp files in `folder` whose writer (a process on this machine) is gone; returns them.

    Temp files of live writers, of other machines (a shared disk) and files not named by `atomic_path`
    are left alone.
    """
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP.match(entry.name)
            if match and match["host"] == _HOST and not _alive(int(match["pid"])) and entry.is_file():
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to `path`; on success it is renamed to `path`, on error removed.

    Temp files that killed writers left in the folder are removed first, so they never accumulate.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the user's usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_digest(path: Path | None) -> str:
    """sha256 of a file's content ("absent" when there is none): what decides whether inputs changed."""
    if path is None or not Path(path).is_file():
        return "absent"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_yaml(path: str | Path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_parquet(path: str | Path, frame: pd.DataFrame) -> Path:
    return _write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    return _write_with(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Waits for an exclusive OS lock (flock) on `path`: writers of one shared file take turns.

    The kernel drops the lock when its holder dies, so a killed writer never blocks the next one.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


_HELD: set[Path] = set()


@contextmanager
def experiment_lock(run_dir: Path, command: str, name: str = ".lock") -> Iterator[None]:
    """Refuses a second concurrent `run` on the same experiment directory (or, with `name`, a second
    `train` of the same fold: two machines may train two folds of one experiment on a shared disk).

    An OS lock (flock) on `<run_dir>/<name>`: the kernel drops it when its process dies, so a lock
    left by a killed run is never stale. Re-entrant within one process (`run` calls `train`).

    Raises:
        KaggleMLCError: another live process holds the directory.
    """
    import fcntl

    path = (Path(run_dir) / name).resolve()
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise KaggleMLCError(
            f"{run_dir} is in use by {holder}; wait for it to finish or use another output_dir"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"`kagglemlc {command}` (pid {os.getpid()})")
    fh.flush()
    _HELD.add(path)
    try:
        yield
    finally:
        _HELD.discard(path)
        fh.close()  # closing releases the flock
