"""Kaggle through the official client, beyond `submit --upload`: a competition's files fetched and unzipped; for a
code competition, the exported bundle up as a dataset, its notebook pushed with the dataset and the competition
attached, then a code submission of that notebook, logged with the others.

    kagglemlc download --competition jigsaw-toxic --out comp          # train/test/sample_submission, unzipped
    kagglemlc export runs/blend-mix/config.yaml --out bundle --push     # dataset created (or versioned) + notebook
    kagglemlc submit runs/blend-mix/config.yaml --kernel me/blend-mix-inference --version 3
    kagglemlc submit runs/blend-mix/config.yaml --refresh-scores         # its score, once Kaggle has run it

Credentials stay the kaggle client's (as in `submit`): never read, printed or logged here.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import BUNDLE_DATASET_DIR, BUNDLE_KERNEL_DIR, KAGGLE_SUBMISSION
from kagglemlc.data.submissions import log_lock, read_log, write_log
from kagglemlc.data.thresholds import tuned_cv
from kagglemlc.stages.export import kaggle_refs, write_metadata
from kagglemlc.stages.submit import _kaggle_client_errors, _require_slug, kaggle_api


def _user(api: Any) -> str:
    user = api.config_values.get(api.CONFIG_NAME_USER)
    if not user:
        raise KaggleMLCError(
            "the kaggle client knows no user name (KAGGLE_API_TOKEN alone): set export.dataset and export.kernel to "
            "OWNER/SLUG, or KAGGLE_USERNAME"
        )
    return user


def _dataset_exists(api: Any, ref: str) -> bool:
    try:
        with _kaggle_client_errors(None, f"look up dataset {ref}"):
            api.dataset_status(ref)
    except KaggleMLCError:
        return False
    return True


def _failed(response: Any) -> str | None:
    """The error a create/push response reports, if any (the client returns them rather than raising)."""
    error = getattr(response, "error", None)
    return str(error) if error else None


def push_bundle(cfg: Config, bundle: Path, notes: str | None = None) -> tuple[str, int | None]:
    """Uploads `bundle`/dataset as a Kaggle dataset (a new version when it exists) and pushes `bundle`/kernel's
    notebook with the dataset and `competition.slug` attached (internet off, GPU on).

    Returns:
        (the notebook's OWNER/SLUG, its new version number).

    Raises:
        KaggleMLCError: no credentials, no slug, a refused upload or push.
    """
    slug = _require_slug(cfg)
    api = kaggle_api(slug, "authenticate")
    dataset, kernel = kaggle_refs(cfg, cfg.name, None if cfg.export.dataset and cfg.export.kernel else _user(api))
    write_metadata(bundle, slug, dataset, kernel)
    folder = str(bundle / BUNDLE_DATASET_DIR)
    notes = notes or f"kagglemlc export {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    exists = _dataset_exists(api, dataset)
    with _kaggle_client_errors(slug, f"upload dataset {dataset}"):
        if exists:
            response = api.dataset_create_version(folder, notes, quiet=True, dir_mode="zip")
        else:
            response = api.dataset_create_new(folder, public=False, quiet=True, dir_mode="zip")
    if _failed(response):
        raise KaggleMLCError(f"Kaggle refused dataset {dataset}: {_failed(response)}")
    info(f"dataset {dataset}: {'new version' if exists else 'created'} from {folder}")
    with _kaggle_client_errors(slug, f"push notebook {kernel}"):
        pushed = api.kernels_push(str(bundle / BUNDLE_KERNEL_DIR))
    if _failed(pushed):
        raise KaggleMLCError(f"Kaggle refused notebook {kernel}: {_failed(pushed)}")
    version = getattr(pushed, "version_number", None) or None
    info(
        f"notebook {kernel} version {version} pushed (it runs on Kaggle now); once it has finished: "
        f"`kagglemlc submit --kernel {kernel} --version {version}`"
    )
    return kernel, version


def submit_kernel(cfg: Config, kernel: str, version: int | None = None, message: str | None = None) -> str:
    """A code submission: Kaggle runs the notebook `kernel` (OWNER/SLUG) at `version` on the hidden test set and
    scores its /kaggle/working/submission.csv. Logged in submissions/log.csv like `submit --upload` (the file column
    names the notebook), so `submit --refresh-scores` fills its score.

    Returns:
        Kaggle's answer.
    """
    slug = _require_slug(cfg)
    if kernel.count("/") != 1 or not all(kernel.split("/")):
        raise KaggleMLCError(f"--kernel '{kernel}': expected OWNER/SLUG, as in kaggle.com/code/OWNER/SLUG")
    cv = tuned_cv(cfg.run_dir)
    shown = f"{kernel} v{version}" if version else kernel
    message = message or f"{cfg.name}{'' if cv is None else f' CV {cv:.4f}'} ({shown})"
    api = kaggle_api(slug, "authenticate")
    with _kaggle_client_errors(slug, f"submit notebook {shown}"):
        try:
            response = api.competition_submit_code(KAGGLE_SUBMISSION, message, slug, kernel, version, quiet=True)
        except ValueError as exc:  # the client's own checks
            raise KaggleMLCError(f"could not submit notebook {shown}: {exc}") from None
    answer = str(getattr(response, "message", None) or "submitted")
    folder = cfg.submission.dir
    assert folder is not None and cfg.name is not None  # filled by load_config
    now = dt.datetime.now(dt.timezone.utc)
    row = {
        "file": f"kernel:{shown}",
        "experiment": cfg.name,
        "cv": "" if cv is None else f"{cv:.6f}",
        "message": message,
        "time": now.isoformat(timespec="seconds"),
        "public_score": "",
    }
    with log_lock(folder):
        write_log(folder, pd.concat([read_log(folder), pd.DataFrame([row], dtype=str)], ignore_index=True))
    info(f"code submission of {shown} to '{slug}': {answer}; `kagglemlc submit --refresh-scores` fetches the score")
    return answer


def download_competition(slug: str, out: Path, force: bool = False) -> list[Path]:
    """Fetches competition `slug`'s data files with the official client (its progress bar on stderr) and unzips them
    into `out`. The archive lands in a temporary folder beside `out` and every member is checked first, so a broken
    download, an unsafe member name or a file of `out` that would be replaced (without `force`) leaves `out` as it
    was; each file then moves in whole (os.replace).

    Returns:
        The files written, in the archive's order.

    Raises:
        KaggleMLCError: no credentials, rules not accepted (403), no such competition (404), an unusable archive,
            files already in `out` (use force).
    """
    if not slug or "/" in slug or slug != slug.strip():
        raise KaggleMLCError(f"--competition '{slug}': expected the <slug> of kaggle.com/competitions/<slug>")
    api = kaggle_api(slug, "authenticate")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kagglemlc-download-", dir=out) as tmp:
        with _kaggle_client_errors(slug, f"download the files of competition '{slug}'"):
            api.competition_download_files(slug, path=tmp, force=True, quiet=False)
        archives = sorted(Path(tmp).iterdir())
        if len(archives) != 1:
            raise KaggleMLCError(f"Kaggle sent {len(archives)} files for '{slug}', expected one archive")
        archive = archives[0]
        staged = Path(tmp) / "unpacked"
        names = _unzip(archive, staged) if zipfile.is_zipfile(archive) else _single(archive, staged)
        clashes = [name for name in names if (out / name).exists()]
        if clashes and not force:
            shown = ", ".join(clashes[:5]) + (" ..." if len(clashes) > 5 else "")
            raise KaggleMLCError(
                f"{out} already has {shown}: nothing was replaced; download into an empty folder (--out) or pass "
                f"--force to overwrite"
            )
        written = []
        for name in names:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, target)
            written.append(target)
    for path in written:
        info(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    info(f"competition '{slug}': {len(written)} files in {out}; next: kagglemlc init {out}")
    return written


def _unzip(archive: Path, into: Path) -> list[str]:
    """Extracts `archive` into `into` after checking every member name; returns the files' relative names."""
    with zipfile.ZipFile(archive) as zf:
        names = [member.filename for member in zf.infolist() if not member.is_dir()]
        unsafe = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts or "\\" in n]
        if unsafe:
            raise KaggleMLCError(f"the archive from Kaggle has unsafe member names ({unsafe[0]}): nothing extracted")
        try:
            zf.extractall(into)
        except (zipfile.BadZipFile, OSError) as exc:
            raise KaggleMLCError(
                f"the archive from Kaggle cannot be extracted ({exc}); run the download again"
            ) from None
    return names


def _single(path: Path, into: Path) -> list[str]:
    """A competition served as one plain file rather than a zip: kept as it came."""
    into.mkdir(parents=True)
    os.replace(path, into / path.name)
    return [path.name]
