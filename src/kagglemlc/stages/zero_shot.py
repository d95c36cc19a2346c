"""`kagglemlc zero-shot`: an instruct model's answers before any training, with the prompt and parser training uses.

kagglemlc zero-shot configs/x.yaml --sample 500    # model.kind: generative → <output_dir>/zero-shot/
"""

from __future__ import annotations

import time

import numpy as np

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_json, write_parquet
from kagglemlc.core.paths import METRICS_FILE, ZERO_SHOT_ANSWERS, ZERO_SHOT_DIR
from kagglemlc.data.competition import load_competition
from kagglemlc.data.folds import ensure_folds
from kagglemlc.engine.accelerator import make_accelerator
from kagglemlc.models.build import build_tokenizer, load_base
from kagglemlc.models.defaults import apply_defaults
from kagglemlc.scoring.metrics import score
from kagglemlc.scoring.spans import span_score
from kagglemlc.tasks.answers import answer_labels, answer_summary
from kagglemlc.tasks.generate import GenerativeTask
from kagglemlc.tasks.span import zero_shot_spans


# --- zero-shot -------------------------------------------------------------------------------
def zero_shot(cfg: Config, sample: int | None = None) -> dict:
    """The untrained model on the training rows (or a random `sample` of them), with the training prompt and parser.

    Writes `<output_dir>/zero-shot/metrics.json` (the metric of the parsed answers, parse failures,
    unknown words, per-label AUC of the probabilities) and `answers.parquet`.
    """
    if cfg.model.kind != "generative":
        raise KaggleMLCError(f"zero-shot needs model.kind: generative (the config has '{cfg.model.kind}')")
    data = load_competition(cfg.competition)
    apply_defaults(cfg, data.train_texts)
    ensure_folds(cfg)  # the first command in a fresh folder sets the experiment up as `prepare` does
    n = len(data.train_texts)
    rows = np.arange(n)
    if sample is not None and sample < n:
        rows = np.sort(np.random.default_rng(cfg.train.seed).choice(n, size=sample, replace=False))
    accelerator = make_accelerator(cfg)
    tokenizer = build_tokenizer(cfg)
    if data.task == "span":
        return _zero_shot_spans(cfg, data, rows, accelerator, tokenizer)
    task = GenerativeTask(cfg, tokenizer, data)
    model = accelerator.prepare_model(load_base(cfg, data.label_names, data.task), evaluation_mode=True)
    start = time.perf_counter()
    predicted = task.predict(model, "train", rows, accelerator, cfg.train.eval_batch_size)
    seconds = time.perf_counter() - start
    y = data.y[rows]
    result = {
        "model": cfg.model.name,
        "metric_name": cfg.competition.metric,
        "metric": task.selection_metric(y, predicted),
        **answer_summary(predicted.answers),
        "probability_roc_auc": score("roc_auc", y, predicted.probs, data.task),
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(rows) / max(seconds, 1e-9), 2),
    }
    if accelerator.is_main_process:
        out = cfg.run_dir / ZERO_SHOT_DIR
        frame = predicted.answers
        frame.insert(0, "id", data.train_ids[rows].astype(str))
        frame.insert(2, "true_labels", [task.prompter.answer_text(answer_labels(r, data.task)) for r in y])
        write_parquet(out / ZERO_SHOT_ANSWERS, frame)
        write_json(out / METRICS_FILE, result)
        info(
            f"zero-shot on {len(rows)} rows: {cfg.competition.metric} {result['metric']:.4f} (parsed answers), "
            f"parse failures {result['parse_failures']} ({result['parse_failure_rate']:.1%}), "
            f"unknown words {result['unknown_words']} → {out / METRICS_FILE}"
        )
    return result


def _zero_shot_spans(cfg: Config, data, rows: np.ndarray, accelerator, tokenizer) -> dict:
    """task span: the instruct model prompted with question and context; each answer snapped to a substring of its
    context (`tasks.span.snap_to_context`) and scored with the competition metric."""
    model = accelerator.prepare_model(load_base(cfg, data.label_names, data.task), evaluation_mode=True)
    start = time.perf_counter()
    frame = zero_shot_spans(cfg, tokenizer, model, data, rows, accelerator)
    seconds = time.perf_counter() - start
    copied = int((frame["answer"].str.strip() == frame["span"]).sum())
    result = {
        "model": cfg.model.name,
        "metric_name": cfg.competition.metric,
        "metric": span_score(cfg.competition.metric, frame["span"].tolist(), frame["truth"].tolist()),
        "rows": len(rows),
        "copied_from_context": copied,
        "snapped_to_context": len(rows) - copied,
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(rows) / max(seconds, 1e-9), 2),
    }
    if accelerator.is_main_process:
        out = cfg.run_dir / ZERO_SHOT_DIR
        write_parquet(out / ZERO_SHOT_ANSWERS, frame)
        write_json(out / METRICS_FILE, result)
        info(
            f"zero-shot on {len(rows)} rows: {cfg.competition.metric} {result['metric']:.4f} of the spans "
            f"({copied} answers copied from the context, {len(rows) - copied} snapped to it) → {out / METRICS_FILE}"
        )
    return result
