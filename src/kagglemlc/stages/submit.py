"""Validated submission files, and their upload with the official kaggle client.

    kagglemlc submit configs/demo.yaml                        # → submissions/demo-20250301T120000Z.csv + log.csv row
    kagglemlc submit configs/demo.yaml -m "sqrt weights" --upload
    kagglemlc submit configs/demo.yaml --refresh-scores       # public scores from Kaggle → log.csv

`test.parquet` is decided with `thresholds.json` (per-label thresholds, or the multiclass bias added
before the argmax) and laid out like the sample submission: one 0/1 column per label, one column of
class names (or label lists), or the probabilities as they are with `submission.kind: probabilities`.
The frame is checked against the sample submission (ids, order, columns, dtypes, no missing values)
before anything is written, so a file in submissions/ is always one Kaggle accepts, and logged in
submissions/log.csv (`data.submissions`).

Credentials stay the kaggle client's business (kaggle.json, KAGGLE_USERNAME + KAGGLE_KEY,
KAGGLE_API_TOKEN): this module never reads, prints or logs them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kagglemlc.config import CompetitionConfig, Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import atomic_path, write_csv
from kagglemlc.core.paths import LOG_FILE, TEST_FILE
from kagglemlc.data.competition import CompetitionData, cached_competition
from kagglemlc.data.predictions import submitted_answers, submitted_test
from kagglemlc.data.spans import read_spans
from kagglemlc.data.submissions import journal, log_lock, new_submission_path, read_log, write_log
from kagglemlc.data.thresholds import read_thresholds, tuned_cv
from kagglemlc.scoring.cuts import apply_cuts
from kagglemlc.scoring.metrics import grades
from kagglemlc.tasks.answers import answers_cv, answers_matrix, vote

SCORES_PAGE_SIZE = 100
"""refresh_scores matches the log against this many of the competition's latest submissions."""
NO_CREDENTIALS = (
    "no usable Kaggle credentials: put kaggle.json (from kaggle.com/settings, 'Create New Token') in ~/.kaggle/, "
    "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
)

Values = Literal["labels", "probabilities", "text", "grades", "scores"]


# ---- the frame -----------------------------------------------------------------------------------


def _label_tokens(comp: CompetitionConfig, names: list[str]) -> list[str]:
    """How labels are spelled in a one-column submission: as in train (integer ids with label_names_file)."""
    numeric_ids = comp.labels == "auto" and comp.label_names_file is not None
    return [str(j) for j in range(len(names))] if numeric_ids else names


def _as_text(hard: np.ndarray, task: str, comp: CompetitionConfig, names: list[str]) -> list[str]:
    """One cell per row: the class (multiclass) or the positive labels joined by `label_separator`."""
    tokens = np.array(_label_tokens(comp, names), dtype=object)
    if task == "multiclass":
        return list(tokens[hard.argmax(axis=1)])
    return [comp.label_separator.join(tokens[row.astype(bool)]) for row in hard]


def submission_frame(cfg: Config, data: CompetitionData) -> tuple[pd.DataFrame, Values]:
    """The submission as it will be written: the sample submission's ids, order and columns.

    Returns:
        (frame, what its target columns hold: labels (0/1 ints), probabilities or text).

    Raises:
        KaggleMLCError: no sample submission, test.parquet or thresholds.json missing or not matching,
            sample submission columns that fit neither the labels nor one target column.
    """
    comp, sample, names = cfg.competition, data.submission, data.label_names
    if sample is None:
        raise KaggleMLCError("competition.sample_submission is not set; submit needs it for the ids, order and columns")
    if comp.id_column not in sample.columns:
        raise KaggleMLCError(f"{comp.sample_submission}: no id column '{comp.id_column}' (competition.id_column)")
    targets = [c for c in sample.columns if c != comp.id_column]
    ids = sample[comp.id_column].to_numpy(dtype=object)
    if data.task == "span":  # the answers decoded from the folds' averaged logits
        spans, _ = read_spans(cfg.run_dir / TEST_FILE, ids)
        body = pd.DataFrame({comp.id_column: sample[comp.id_column].astype(str).to_numpy(), targets[0]: spans["text"]})
        return body[list(sample.columns)], "text"
    probs = submitted_test(cfg, ids, names, "run `kagglemlc train` (or `predict`) first")
    wide = sorted(targets) == sorted(names)
    if not wide and (len(targets) != 1 or data.task == "binary" or cfg.submission.kind == "probabilities"):
        need = (
            "one column per label" if cfg.submission.kind == "probabilities" else "one column per label or one target"
        )
        raise KaggleMLCError(
            f"{comp.sample_submission}: columns {', '.join(targets[:8])} do not fit the labels "
            f"({', '.join(names[:8])}); submission.kind={cfg.submission.kind} needs {need} column"
        )
    values: Values
    if data.task == "regression":  # one column per target: qwk's integer grades (kind labels), else the scores
        if not wide:
            raise KaggleMLCError(f"{comp.sample_submission}: needs one column per target ({', '.join(names[:8])})")
        if cfg.competition.metric == "qwk" and cfg.submission.kind == "labels":
            graded = apply_cuts(probs, data.task, read_thresholds(cfg.run_dir, names))
            body, values = pd.DataFrame(grades(graded, data.y).astype(np.int64), columns=names), "grades"
        else:
            body, values = pd.DataFrame(probs.astype(np.float64), columns=names), "scores"
    elif cfg.submission.kind == "probabilities":
        body, values = pd.DataFrame(probs.astype(np.float64), columns=names), "probabilities"
    else:
        if cfg.submission.from_ == "answers":  # generative: what the models wrote, by majority
            parsed = [answers_matrix(frame, names, data.task) for frame in submitted_answers(cfg, ids)]
            hard = vote(parsed, probs, data.task)
        else:
            hard = apply_cuts(probs, data.task, read_thresholds(cfg.run_dir, names))
        if wide:
            body, values = pd.DataFrame(hard.astype(np.int64), columns=names), "labels"
        else:
            body, values = pd.DataFrame({targets[0]: _as_text(hard, data.task, comp, names)}), "text"
    body.insert(0, comp.id_column, sample[comp.id_column].astype(str).to_numpy())
    return body[list(sample.columns)], values


def validate_submission(frame: pd.DataFrame, sample: pd.DataFrame, id_column: str, values: Values, source: str) -> None:
    """Checks `frame` against the sample submission: the one gate every written file passes.

    Args:
        frame: the submission.
        sample: the sample submission (all cells strings).
        id_column: the id column.
        values: what the target columns must hold: labels (0/1 ints), probabilities (floats in [0, 1]) or text.
        source: the sample submission's path, for the message.

    Raises:
        KaggleMLCError: naming the first column or row that differs.
    """

    def fail(problem: str) -> KaggleMLCError:
        return KaggleMLCError(f"the submission does not match {source}: {problem}; nothing was written")

    if list(frame.columns) != list(sample.columns):
        raise fail(f"columns {list(frame.columns)[:8]} instead of {list(sample.columns)[:8]}")
    if len(frame) != len(sample):
        raise fail(f"{len(frame)} rows instead of {len(sample)}")
    ids, want = frame[id_column], sample[id_column]
    if not _all_text(ids):
        raise fail(f"column '{id_column}' must hold the ids as text (leading zeros kept)")
    differ = ids.to_numpy() != want.to_numpy()
    if differ.any():
        row = int(np.flatnonzero(differ)[0])
        raise fail(f"row {row + 1} has id {ids.iloc[row]!r} where the sample has {want.iloc[row]!r}")
    missing = frame.isna()
    if missing.to_numpy().any():
        column = missing.any().idxmax()
        row = int(np.flatnonzero(missing[column].to_numpy())[0])
        raise fail(f"column '{column}' has a missing value on row {row + 1}")
    for column in (c for c in frame.columns if c != id_column):
        cells = frame[column]
        if values == "labels":
            ok = pd.api.types.is_integer_dtype(cells) and cells.isin([0, 1]).all()
            expected = "0/1 integers"
        elif values == "grades":
            ok = pd.api.types.is_integer_dtype(cells)
            expected = "integer grades"
        elif values == "scores":
            ok = pd.api.types.is_float_dtype(cells) and bool(np.isfinite(cells.to_numpy()).all())
            expected = "finite numbers"
        elif values == "probabilities":
            ok = pd.api.types.is_float_dtype(cells) and cells.between(0, 1).all()
            expected = "probabilities in [0, 1]"
        else:
            ok = _all_text(cells)
            expected = "text"
        if not ok:
            raise fail(f"column '{column}' must hold {expected} (dtype {cells.dtype})")


def _all_text(cells: pd.Series) -> bool:
    """Every cell is a str (a string dtype holds nothing else but missing values)."""
    if isinstance(cells.dtype, pd.StringDtype):
        return not cells.isna().any()
    return all(isinstance(c, str) for c in cells)


def _write_submission(path: Path, frame: pd.DataFrame, values: Values, id_column: str) -> Path:
    """`write_csv(path, frame)`, byte for byte; the usual file (the id column first, then 0/1 labels, nothing
    to quote) is rendered with numpy, several times faster than pandas' writer at a million rows."""
    ids = frame[id_column].astype(str)
    quote = '[,"\r\n]'  # where the csv module would quote
    plain = (
        values == "labels" and frame.columns[0] == id_column and not pd.Series(frame.columns).str.contains(quote).any()
    )
    if not plain or ids.str.contains(quote).any():
        return write_csv(path, frame)
    n, width = len(frame), 2 * (frame.shape[1] - 1) + 1  # ",0,1,...,0\n" after each id
    chars = np.full((n, width), ord(","), dtype=np.uint8)
    chars[:, 1:-1:2] = frame.iloc[:, 1:].to_numpy(dtype=np.uint8) + ord("0")
    chars[:, -1] = ord("\n")
    rest = chars.tobytes().decode("ascii")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(frame.columns) + "\n")
        fh.write("".join([i + rest[k * width : (k + 1) * width] for k, i in enumerate(ids.tolist())]))
    return path


def _write_log(folder: Path) -> Path:
    """The journaled row into log.csv, now that its CSV exists: a submission's last step (`data.submissions`)."""
    return write_log(folder, read_log(folder))


# ---- the kaggle client ---------------------------------------------------------------------------


@contextlib.contextmanager
def _kaggle_client_errors(slug: str | None, action: str) -> Iterator[None]:
    """Turns what the kaggle client raises into one-line user errors; its own prints stay off stdout.

    The client prints help texts and, with VERBOSE set, whole HTTP requests (auth headers included):
    none of that reaches the user's terminal or logs.
    """
    import requests

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except ImportError as exc:
        raise KaggleMLCError(f"the kaggle client cannot be imported ({exc}); pip install kaggle six") from None
    except requests.HTTPError as exc:
        raise KaggleMLCError(_http_error_message(exc, slug, action)) from None
    except requests.RequestException as exc:
        problem = type(exc).__name__
        raise KaggleMLCError(f"cannot reach the Kaggle API to {action} ({problem}); check the network") from None


def _http_error_message(exc: Exception, slug: str | None, action: str) -> str:
    response = getattr(exc, "response", None)
    status = None if response is None else response.status_code
    detail = (str(exc).strip().splitlines() or ["no details"])[0][:200]
    if status == 404:
        return (
            f"could not {action}: Kaggle has no competition '{slug}' open to you (HTTP 404); check competition.slug "
            f"(the <slug> of kaggle.com/competitions/<slug>) and that the competition still accepts submissions"
        )
    if status == 429 or (status == 400 and any(w in detail.lower() for w in ("limit", "allowance", "quota"))):
        return f"could not {action}: the daily submission limit is reached ({detail}); try again after 00:00 UTC"
    if status in (401, 403):
        return (
            f"could not {action}: Kaggle refused the request (HTTP {status}: {detail}); check your credentials "
            f"and that you accepted the competition's rules on its page"
        )
    return f"could not {action}: Kaggle API error (HTTP {status}: {detail})"


def kaggle_api(slug: str | None, action: str) -> Any:
    """The official client, authenticated from its own places (kaggle.json, KAGGLE_* variables)."""
    with _kaggle_client_errors(slug, action):
        from kaggle.api.kaggle_api_extended import KaggleApi  # importing it already tries to authenticate

        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:  # what authenticate() does when it finds no credentials
            raise KaggleMLCError(NO_CREDENTIALS) from None
    return api


def _require_slug(cfg: Config) -> str:
    if not cfg.competition.slug:
        raise KaggleMLCError(
            "competition.slug is not set: add the competition's name from its URL (kaggle.com/competitions/<slug>) "
            "to the config, or pass competition.slug=<slug>"
        )
    return cfg.competition.slug


def upload_submission(api: Any, path: Path, message: str, slug: str) -> str:
    """Sends a written submission with the official client; returns Kaggle's answer.

    Raises:
        KaggleMLCError: unknown competition, daily limit reached, refused credentials, failed transfer.
    """
    with _kaggle_client_errors(slug, f"submit {path.name}"):
        response = api.competition_submit(str(path), message, slug, quiet=True)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise KaggleMLCError(f"the transfer of {path} to Kaggle did not complete; the file is kept, submit again later")
    return str(response.message or "submitted")


# ---- the stage -----------------------------------------------------------------------------------


def submit(cfg: Config, message: str | None = None, upload: bool = False) -> Path:
    """Writes the validated submission (and logs it); with `upload`, sends it to Kaggle.

    Args:
        cfg: the experiment config.
        message: the submission's description; default "<name> CV <cv_tuned>".
        upload: send it with the kaggle client (needs competition.slug and Kaggle credentials).

    Returns:
        The written CSV, `submission.dir/<name>-<UTC timestamp>.csv`.

    Raises:
        KaggleMLCError: missing stage outputs, a frame that fails validation (then nothing is written),
            missing slug or credentials (checked before writing), upload refused by Kaggle.
    """
    slug = _require_slug(cfg) if upload else cfg.competition.slug
    comp = cfg.competition
    with cached_competition(comp, cfg.run_dir, with_test=False, texts=False) as data:
        frame, values = submission_frame(cfg, data)
        validate_submission(frame, data.submission, comp.id_column, values, str(comp.sample_submission))
        api = kaggle_api(slug, "authenticate") if upload else None
        answers = cfg.submission.from_ == "answers"  # its CV is the parsed answers', not the tuned probabilities'
        cv = answers_cv(cfg.run_dir, cfg.cv.folds, data, comp.metric) if answers else tuned_cv(cfg.run_dir)

    now = dt.datetime.now(dt.timezone.utc)
    folder = cfg.submission.dir
    assert folder is not None and cfg.name is not None  # filled by load_config
    message = message or (cfg.name if cv is None else f"{cfg.name} CV {cv:.4f}")
    with log_lock(folder):
        path = new_submission_path(folder, f"{cfg.name}-{now:%Y%m%dT%H%M%SZ}")
        row = {
            "file": path.name,
            "experiment": cfg.name,
            "cv": "" if cv is None else f"{cv:.6f}",
            "message": message,
            "time": now.isoformat(timespec="seconds"),
            "public_score": "",
        }
        journal(folder, row)
        _write_submission(path, frame, values, comp.id_column)
        _write_log(folder)
    shape = f"{len(frame):,} rows × {len(frame.columns) - 1} columns of {values}"
    info(f"{shape}, checked against the sample submission → {path}")
    if api is not None:
        answer = upload_submission(api, path, message, slug)
        info(f"uploaded {path.name} to '{slug}': {answer}; `kagglemlc submit --refresh-scores` fetches the score")
    return path


def refresh_scores(cfg: Config) -> Path:
    """Fills `public_score` in submissions/log.csv from the competition's submissions on Kaggle.

    Kaggle rows are matched by file name, else (for this experiment's rows) by a unique description.

    Returns:
        The log's path.
    """
    slug = _require_slug(cfg)
    folder = cfg.submission.dir
    assert folder is not None
    if read_log(folder).empty:
        raise KaggleMLCError(f"{folder / LOG_FILE}: no submissions logged yet; run `kagglemlc submit --upload` first")
    api = kaggle_api(slug, "authenticate")
    with _kaggle_client_errors(slug, "list submissions"):
        listed = [s for s in api.competition_submissions(slug, page_size=SCORES_PAGE_SIZE) or [] if s is not None]
    scored = [s for s in listed if s.public_score not in (None, "")]
    by_file = {s.file_name: s for s in reversed(scored)}  # listed newest first: the newest wins
    described = [s.description for s in scored]
    filled = 0
    with log_lock(folder):  # re-read: a submit may have logged a row meanwhile
        log = read_log(folder)
        for i, row in log.iterrows():
            if row["public_score"]:
                continue
            match = by_file.get(row["file"])
            if match is None and row["experiment"] == cfg.name and described.count(row["message"]) == 1:
                match = scored[described.index(row["message"])]
            if match is not None:
                log.at[i, "public_score"] = str(match.public_score)
                filled += 1
        path = write_log(folder, log)
    info(f"{filled} public scores filled from {len(listed)} submissions on '{slug}' → {path}")
    return path
