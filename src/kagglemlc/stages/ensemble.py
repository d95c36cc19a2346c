"""Blends of folds and of experiments, with weights fitted on the out-of-fold probabilities.

    kagglemlc ensemble runs/minilm/config.yaml runs/deberta/config.yaml --name mix
    # → runs/blend-mix/ {config.yaml, folds.parquet, oof.parquet, test.parquet, thresholds.json}

    average_folds([fold0_test, fold1_test], method="rank")   # how fold{k}/test.parquet become test.parquet

A blend is itself an experiment directory: `submit`, `report` and `tune-thresholds` take its
config.yaml like any other. Members must share their folds (same ids in the same folds), otherwise
each member's OOF rows were predicted by models that saw different data and the fitted weights
would reward leakage rather than skill.

Weights are non-negative and sum to 1. They are found by a pattern search on the simplex (move weight
between two members, halve the step when no move helps) that starts from the best of every single
member and the equal blend, so the blend's OOF score is never below its best member's. Each candidate
(blended in float32) is scored with thresholds re-tuned for it: `scoring.cuts.cut_objective`, the exact value
`fit_cuts` gives, for per-label F1 searched only among the top scores that can hold the best cut. On more than
SEARCH_ROWS OOF rows the candidates are scored on a fixed random SEARCH_ROWS of them (the weights move in
steps of 1/64, far coarser than what that subset can tell apart), and the blend found is then checked on
all rows against the best member, which it replaces if it loses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.table import Table

from kagglemlc.config import Config, load_config, name_problem, save_resolved
from kagglemlc.core.console import info, stdout, warn
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import atomic_path, file_digest, write_json, write_parquet
from kagglemlc.core.parallel import workers
from kagglemlc.core.paths import FOLDS_FILE, OOF_FILE, TEST_FILE, THRESHOLDS_FILE
from kagglemlc.data.competition import arrow_ids, cached_competition, load_competition
from kagglemlc.data.folds import fold_of_rows, read_folds, same_ids
from kagglemlc.data.predictions import probability_table, read_probs, submitted_files, submitted_test, write_table
from kagglemlc.data.spans import answer_texts, decode_all, read_spans, span_frame
from kagglemlc.data.thresholds import cv_before_after, threshold_report, write_thresholds
from kagglemlc.scoring.blend import METHODS, blend32, fit_weights, to_blend_space
from kagglemlc.scoring.cuts import cut_objective
from kagglemlc.scoring.spans import SpanLogits, average_logits, span_cv, span_score
from kagglemlc.scoring.stack import stack

STACK = "stack"
"""`--method stack`: a stacker on the members' OOF probabilities instead of weights (`scoring.stack`)."""
SEARCH_ROWS = 50_000
"""On more OOF rows the weight search scores this fixed random subset (the blend is still scored on all rows)."""


def _search_rows(n: int) -> np.ndarray | slice:
    """The OOF rows the weight search scores: all, or a fixed random SEARCH_ROWS of them on larger data."""
    if n <= SEARCH_ROWS:
        return slice(None)
    return np.sort(np.random.default_rng(0).choice(n, SEARCH_ROWS, replace=False))


def _check_same_folds(cfgs: list[Config], pool: ThreadPoolExecutor) -> pd.DataFrame:
    """The members' shared folds; a one-line error naming two members whose folds differ."""
    # members prepared from the same data and cv settings have byte-identical files: each distinct one is read once
    digests = list(pool.map(lambda c: file_digest(c.run_dir / FOLDS_FILE), cfgs))
    distinct = {}
    for digest, cfg in zip(digests, cfgs, strict=True):
        distinct.setdefault(digest, cfg)
    read = dict(zip(distinct, pool.map(lambda c: read_folds(c.run_dir), distinct.values()), strict=True))
    raw = [read[digest] for digest in digests]
    ids, fold = arrow_ids(raw[0]["id"]), raw[0]["fold"].to_numpy()
    for cfg, other, digest in zip(cfgs[1:], raw[1:], digests[1:], strict=True):
        if digest == digests[0] or same_ids(other["id"], ids) and np.array_equal(other["fold"].to_numpy(), fold):
            continue  # the usual case: the same file, row for row
        first, folds = (r.astype({"id": str}).set_index("id")["fold"].sort_index() for r in (raw[0], other))
        if not folds.index.equals(first.index):
            detail = "different training ids"
        elif (folds != first).any():
            differ = folds.index[folds != first]
            detail = f"{len(differ)} rows in another fold, e.g. id {differ[0]!r}"
        else:
            continue
        raise KaggleMLCError(
            f"experiments '{cfgs[0].name}' ({cfgs[0].run_dir}) and '{cfg.name}' ({cfg.run_dir}) have different "
            f"folds ({detail}); blend only experiments prepared with the same data and cv settings"
        )
    return raw[0]


def _blend_config(first: Config, config_paths: list[Path], name: str, weights: np.ndarray, method: str) -> Config:
    cfg = first.model_copy(deep=True)
    cfg.output_dir = first.run_dir.parent / f"blend-{name}"
    cfg.name = f"blend-{name}"
    cfg.meta = {
        "config_file": first.meta.get("config_file"),
        "ensemble": {
            "members": [str(Path(p).resolve()) for p in config_paths],
            "weights": [] if method == STACK else [round(float(w), 6) for w in weights],
            "method": method,
        },
    }
    return cfg


def ensemble(config_paths: Sequence[str | Path], name: str | None = None, method: str = "mean") -> Path:
    """Blends experiments into a new experiment directory, weights fitted on OOF for the competition metric.

    Args:
        config_paths: each member's config (its YAML or its resolved `<output_dir>/config.yaml`).
        name: the blend's name; it is written to `<first member's output_dir>/../blend-<name>/`.
            Default: the members' names joined by "+".
        method: mean | rank | geometric (see `blend`), or stack: a per-label logistic regression on the members'
            OOF probabilities, fitted fold by fold (`scoring.stack`).

    Returns:
        The blend's directory.

    Raises:
        KaggleMLCError: members with different folds, tasks or label columns; missing oof/test files; a `name`
            that is not a plain file name.
    """
    if method not in (*METHODS, STACK):
        raise KaggleMLCError(f"--method '{method}': choose one of {', '.join((*METHODS, STACK))}")
    if name is not None and (problem := name_problem(name)):
        raise KaggleMLCError(f"--name: {problem}")
    config_paths = [Path(p) for p in config_paths]
    cfgs = [load_config(p) for p in config_paths]
    first = cfgs[0]
    metric, task = first.competition.metric, first.competition.task
    if task == "regression" and method != "mean":
        raise KaggleMLCError(f"--method {method}: regression blends scores as they are; use --method mean")
    if method == "rank" and metric == "log_loss":
        raise KaggleMLCError("--method rank gives ranks, not probabilities, and log_loss needs probabilities; use mean")
    for cfg in cfgs[1:]:
        if cfg.competition.task != task:
            raise KaggleMLCError(
                f"experiments '{first.name}' and '{cfg.name}' differ in competition.task "
                f"({task} vs {cfg.competition.task}); blend experiments of one competition"
            )
        if cfg.competition.metric != metric:
            warn(f"'{cfg.name}' uses competition.metric {cfg.competition.metric}; the blend is fitted for {metric}")
    if task == "span":
        if method != "mean":
            raise KaggleMLCError(f"--method {method}: span experiments average their logits; use --method mean")
        return _span_ensemble(cfgs, config_paths, name)
    pool = ThreadPoolExecutor(max_workers=workers())  # independent reads, hashes, sorts and writes overlap
    hint = "run `kagglemlc train` for this experiment first"
    with pool, cached_competition(first.competition, first.run_dir, with_test=True, texts=False) as data:
        folds = _check_same_folds(cfgs, pool)
        names = data.label_names
        train_ids, test_ids = data.ids("train"), data.ids("test")
        files = {"oof": [c.run_dir / OOF_FILE for c in cfgs]}
        files |= {} if test_ids is None else {"test": [f for c in cfgs for f in submitted_files(c)]}
        missing = [f for f in (*files["oof"], *files.get("test", [])) if not f.is_file()]
        if missing:
            raise KaggleMLCError(f"{missing[0]} not found; {hint}")
        oofs = list(pool.map(lambda f: read_probs(f, train_ids, names, hint, unique=True), files["oof"]))
        # what the weight search does not need is read and computed while it runs (its threads leave the cores
        # partly idle: many small numpy calls)
        # each member's test probabilities as it would submit them (`submission.use`: folds, full fit or both)
        reading = [pool.submit(submitted_test, c, test_ids, names, hint) for c in cfgs] if test_ids is not None else []
        scoring = [pool.submit(cv_before_after, first, data, o, c.run_dir) for c, o in zip(cfgs, oofs, strict=True)]

        th = first.thresholds
        name = name or "+".join(c.name or c.run_dir.name for c in cfgs)
        fold = fold_of_rows(first.run_dir, train_ids, folds)
        if method == STACK:
            tests = [r.result() for r in reading] or None
            members = [s.result() for s in scoring]
            weights = np.full(len(oofs), np.nan)  # no weights: a fitted model per label
            stacked, stacked_test = stack(oofs, data.y, fold, task, tests)
            with _Staged(pool, _blend_config(first, config_paths, name, weights, method).run_dir) as staged:
                staged.write(FOLDS_FILE, lambda: pa.Table.from_pandas(folds, preserve_index=False))
                staged.write(OOF_FILE, lambda: probability_table(train_ids, stacked, names))
                if stacked_test is not None:
                    staged.write(TEST_FILE, lambda: probability_table(test_ids, stacked_test, names))
                tuned = threshold_report(first, data, stacked, fold)
        else:
            rows = _search_rows(len(data.y))
            search = [_take_rows(o, rows) for o in oofs]
            objective = cut_objective(data.y[rows], task, metric, th.strategy, th.value, th.multiclass_bias)
            weights, _ = fit_weights(search, objective, method)
            oof_spaces = [to_blend_space(o, method) for o in oofs]
            tests = [r.result() for r in reading] or None
            members = [s.result() for s in scoring]

            def stage_blend(weights: np.ndarray) -> np.ndarray:
                """The OOF blend; its file and the test blend's are written while its thresholds are tuned."""

                def test_table() -> pa.Table:
                    blended = blend32(weights, [to_blend_space(t, method) for t in tests], method)
                    return probability_table(test_ids, blended, names)

                oof_blend = blend32(weights, oof_spaces, method)
                staged.write(OOF_FILE, lambda: probability_table(train_ids, oof_blend, names))
                if tests is not None:
                    staged.write(TEST_FILE, test_table)
                return oof_blend

            with _Staged(pool, _blend_config(first, config_paths, name, weights, method).run_dir) as staged:
                staged.write(FOLDS_FILE, lambda: pa.Table.from_pandas(folds, preserve_index=False))
                # the blend's settings are the first member's
                tuned = threshold_report(first, data, stage_blend(weights), fold)
                best = int(np.argmax([cv for _, cv in members]))
                if isinstance(rows, np.ndarray) and tuned["cv_tuned"] < members[best][1]:
                    # fitted on a subset: still never below the best member on all rows
                    weights = np.eye(len(oofs))[best]
                    tuned = threshold_report(first, data, stage_blend(weights), fold)
        cfg = _blend_config(first, config_paths, name, weights, method)
    save_resolved(cfg)
    write_thresholds(cfg, tuned)
    _print_summary(cfg, metric, [(c.name, w, *cv) for c, w, cv in zip(cfgs, weights, members, strict=True)], tuned)
    return cfg.run_dir


def simplex_grid(n: int, steps: int = 10) -> list[np.ndarray]:
    """Every weight vector of `n` members in steps of 1/`steps` (n ≤ 3), else each member alone and the equal blend."""
    if n > 3:
        return [*np.eye(n), np.full(n, 1 / n)]
    points = [p for p in itertools.product(range(steps + 1), repeat=n) if sum(p) == steps]
    return [np.asarray(p, dtype=np.float64) / steps for p in points]


def _span_ensemble(cfgs: list[Config], config_paths: list[Path], name: str | None) -> Path:
    """Span experiments: per-character logits averaged with the weights (a grid on the simplex) whose decoded
    out-of-fold spans score best; the test logits blended with them and decoded again."""
    first = cfgs[0]
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        folds = _check_same_folds(cfgs, pool)
    data = load_competition(first.competition)
    train_ids, contexts, metric = data.train_ids, data.train_texts, first.competition.metric
    truth = answer_texts(data)
    oofs = [read_spans(c.run_dir / OOF_FILE, train_ids)[1] for c in cfgs]
    m, allow_empty = first.model, first.competition.allow_no_answer

    def decoded(weights: np.ndarray, members: list, texts: list[str]) -> tuple[pd.DataFrame, list[SpanLogits]]:
        used = [i for i, w in enumerate(weights) if w > 0]
        logits = [average_logits([row[i] for i in used], list(weights[used])) for row in zip(*members)]
        return decode_all(texts, logits, m.max_answer_tokens, allow_empty), logits

    scored = []
    for weights in simplex_grid(len(cfgs)):
        frame, _ = decoded(weights, oofs, contexts)
        scored.append((span_score(metric, frame["text"].tolist(), truth), weights))
    singles = [cv for cv, w in scored if w.max() == 1.0]
    # ties (common: spans are discrete) go to the weights nearest the equal blend
    cv, weights = max(scored, key=lambda pair: (pair[0], -np.abs(pair[1] - 1 / len(cfgs)).sum()))
    cfg = _blend_config(first, config_paths, name or "+".join(c.name or c.run_dir.name for c in cfgs), weights, "mean")
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    frame, logits = decoded(weights, oofs, contexts)
    write_parquet(cfg.run_dir / FOLDS_FILE, folds)
    write_parquet(cfg.run_dir / OOF_FILE, span_frame(train_ids, frame, logits))
    if data.test_ids is not None:
        tests = [read_spans(c.run_dir / TEST_FILE, data.test_ids)[1] for c in cfgs]
        frame, logits = decoded(weights, tests, data.test_texts or [])
        write_parquet(cfg.run_dir / TEST_FILE, span_frame(data.test_ids, frame, logits))
    fold = fold_of_rows(first.run_dir, data.ids("train"), folds)
    predicted = read_spans(cfg.run_dir / OOF_FILE, train_ids)[0]["text"].tolist()
    save_resolved(cfg)
    write_json(cfg.run_dir / THRESHOLDS_FILE, span_cv(metric, predicted, truth, fold, first.cv.folds))
    shown = ", ".join(f"{c.name} {w:.2f} ({single:.4f})" for c, w, single in zip(cfgs, weights, singles, strict=True))
    info(f"{cfg.name} ({shown}): {metric} of the out-of-fold spans {cv:.4f} → {cfg.run_dir}")
    return cfg.run_dir


def _take_rows(probs: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """`probs[rows]`, stored label-major as `read_probs` returns it (so the searches' transposes are free)."""
    return probs.T[:, rows].T if isinstance(rows, slice) else np.take(probs.T, rows, axis=1).T


class _Staged:
    """Parquet files made and written in `pool` while the caller goes on, each to a temporary file next to its
    destination (`files.atomic_path`): renamed over the destinations when the block ends, removed when it (or a
    write) raises. Writing a file again replaces what was staged for it."""

    def __init__(self, pool: ThreadPoolExecutor, folder: Path):
        self.pool, self.folder, self.renames = pool, folder, ExitStack()  # `atomic_path`s, left when the block ends
        self.temp_of: dict[str, Path] = {}
        self.pending: dict[str, Future] = {}

    def write(self, file: str, table: Callable[[], pa.Table]) -> None:
        if file in self.pending:
            wait([self.pending[file]])  # its temporary file is written again
        else:
            self.temp_of[file] = self.renames.enter_context(atomic_path(self.folder / file))
        temp = self.temp_of[file]
        self.pending[file] = self.pool.submit(lambda: write_table(temp, table()))

    def __enter__(self) -> _Staged:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        wait(self.pending.values())  # no write may still run when its temporary file is renamed or removed
        with self.renames:
            if error is not None:
                raise error
            for done in self.pending.values():
                done.result()  # a failed write raises here


def _print_summary(cfg: Config, metric: str, members: list[tuple], tuned: dict) -> None:
    """Weight and CV of every member next to the blend's."""
    table = Table(title=f"{cfg.name}: {metric} on OOF", show_edge=False)
    for column in ("experiment", "weight", "untuned", "tuned", "nested"):
        table.add_column(column, justify="left" if column == "experiment" else "right")
    for member, weight, untuned, tuned_cv in members:
        shown = "stacked" if np.isnan(weight) else f"{weight:.3f}"
        table.add_row(member, shown, f"{untuned:.4f}", f"{tuned_cv:.4f}", "")
    cvs = (f"{tuned[key]:.4f}" for key in ("cv_at_0.5", "cv_tuned", "cv_nested"))
    table.add_row(cfg.name, "1.000", *cvs, style="bold")
    stdout.print(table)
    best = max(members, key=lambda m: m[3])
    weights = ", ".join(m[0] if np.isnan(m[1]) else f"{m[0]} {m[1]:.2f}" for m in members)
    info(f"{cfg.name} ({weights}): CV {tuned['cv_tuned']:.4f} vs best member {best[0]} {best[3]:.4f} → {cfg.run_dir}")
