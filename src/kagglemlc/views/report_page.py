"""A report's pages: report.md (tables and plots) and the sections of report.html, drawn from the experiments'
summaries that `kagglemlc.stages.report` collects (plain dicts: nothing here reads an experiment's files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kagglemlc.core.paths import OOF_FILE
from kagglemlc.scoring.metrics import PROB_METRICS
from kagglemlc.views.compare import Panel, method_bars, method_panels
from kagglemlc.views.experiment import cv_vs_public, label_f1, label_frequency, label_scores, learning_curves
from kagglemlc.views.formats import count, duration, fmt, megabytes, percent
from kagglemlc.views.html import Section


def _experiment_rows(experiments: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for e in experiments:
        memory = e["peak_memory_mb"]
        rows.append(
            {
                "experiment": e["name"],
                "metric": e["metric"],
                "CV @0.5": fmt(e["cv"]["at_0.5"]),
                "CV tuned": fmt(e["cv"]["tuned"]),
                "CV nested": fmt(e["cv"]["nested"]),
                "public": fmt(e["public_score"]),
                "model": e["model"],
                "adapter": e["adapter"],
                "trainable / total params": f"{count(e['trainable_params'])} / {count(e['total_params'])}",
                "train time": duration(e["train_seconds"]),
                "samples/s": fmt(e["samples_per_second"], ",.1f"),
                "peak CPU RSS": megabytes(memory["cpu_rss"]),
                "peak GPU": megabytes(memory["gpu_max_allocated"]),
                "folds": f"{e['folds_trained']}/{e['folds']}",
            }
        )
    return rows


def _cut(e: dict[str, Any]) -> str:
    return "bias" if e["task"] == "multiclass" else "threshold"


def _label_rows(e: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "label": r["label"],
            _cut(e): f"{r['threshold']:.3f}",
            "precision": f"{r['precision']:.3f}",
            "recall": f"{r['recall']:.3f}",
            "F1": f"{r['f1']:.3f}",
            "support": f"{r['support']:,}",
            "predicted": f"{r['predicted']:,}",
        }
        for r in e["labels"]
    ]


def _notes(e: dict[str, Any]) -> list[str]:
    """The paragraphs under an experiment's per-label table."""
    if e.get("task") == "span":
        folds = ", ".join("—" if v is None else f"{v:.4f}" for v in e.get("fold_best_metrics") or [])
        return [f"Task span: the answers are spans of the context, no labels; {e['metric']} per fold: {folds or '—'}."]
    if not e["labels"]:
        return [f"No {OOF_FILE} in {e['output_dir']} yet: run `kagglemlc train`."]
    cut = _cut(e)
    decided = "tuned " + cut + "s" if e["cv"]["tuned"] is not None else "untuned " + cut + "s (no thresholds.json)"
    note = " (a probability metric: the cut only affects label submissions)" if e["metric"] in PROB_METRICS else ""
    notes = [f"Out-of-fold predictions decided with the {decided}{note}."]
    if e.get("cv_answers") is not None:
        chosen = "submitted" if e.get("submission_from") == "answers" else "submission.from: answers submits them"
        notes.append(
            f"Out-of-fold {e['metric']} of the parsed answers: {e['cv_answers']:.4f}, of the probabilities with "
            f"tuned thresholds: {fmt(e['cv']['tuned'])} ({chosen})."
        )
    best = [b for b in e["fold_best_metrics"] if b is not None]
    if best:
        notes.append(f"Best validation {e['metric']} per fold: {', '.join(f'{b:.4f}' for b in best)}.")
    for split, parsed in (e.get("answers") or {}).items():
        if parsed:
            rate = parsed["parse_failures"] / max(parsed["rows"], 1)
            notes.append(
                f"Generated answers ({split}): {parsed['parse_failures']:,} of {parsed['rows']:,} could not be "
                f"parsed ({rate:.1%}); {parsed['unknown_words']:,} unknown words ignored."
            )
    return notes


def _seed_rows(e: dict[str, Any]) -> list[dict[str, str]]:
    """`train.seeds`: each seed's CV, then the CV of their averaged probabilities (the experiment's)."""
    rows = [(f"seed {r['seed']}", r["at_0.5"], r["tuned"]) for r in e["seeds"]]
    rows.append(("seeds averaged", e["cv"]["at_0.5"], e["cv"]["tuned"]))
    return [{"models": name, "CV @0.5": fmt(half), "CV tuned": fmt(tuned)} for name, half, tuned in rows]


def _full_fit_note(e: dict[str, Any]) -> str:
    full = e["full_fit"]
    chosen = full.get("chosen") or {}
    return (
        f"Full fit: {count(full['train_rows'])} rows, {full['steps']} steps (the folds' median best step "
        f"{fmt(chosen.get('median'), '.0f')} × {fmt(chosen.get('scale'), '.3f')}), {duration(full['wall_seconds'])}; "
        f"submission.use: {full['submission_use']}."
    )


def _markdown_table(rows: list[dict[str, str]], align: str) -> list[str]:
    """A markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(line) + " |" for line in (list(rows[0]), rule, *(list(r.values()) for r in rows))]


def render_markdown(result: dict[str, Any], plots: dict[str, Path], folder: Path) -> str:
    """The report page: a table of experiments, then each experiment's per-label table, then the plots."""
    experiments = result["experiments"]
    lines = [f"# Report: {', '.join(e['name'] for e in experiments)}", "", f"Generated {result['generated_at']}.", ""]
    lines += ["## Experiments", ""]
    lines += _markdown_table(_experiment_rows(experiments), "ll" + "r" * 4 + "ll" + "r" * 6) + [""]
    for e in experiments:
        lines += [f"## {e['name']}: per label", ""]
        notes = _notes(e)
        if e["labels"]:
            lines += [notes[0], ""] + _markdown_table(_label_rows(e), "l" + "r" * 6) + [""]
            notes = notes[1:]
        for note in notes:
            lines += [note, ""]
        if e.get("seeds"):
            lines += [f"### {e['name']}: seeds", ""] + _markdown_table(_seed_rows(e), "lrr") + [""]
        if e.get("full_fit"):
            lines += [_full_fit_note(e), ""]
    for title, path in plots.items():
        lines += [f"## {title}", "", f"![{title}]({path.relative_to(folder).as_posix()})", ""]
    return "\n".join(lines)


def draw_plots(
    experiments: list[dict[str, Any]], submissions: list[dict[str, Any]], folder: Path, stem: str
) -> dict[str, Path]:
    """report.md's plots (report.html shows them too)."""
    plots = {}
    if any(e["labels"] for e in experiments):
        plots["Per-label F1"] = label_f1(experiments, folder / f"{stem}-f1.png")
        first = next(e for e in experiments if e["labels"])
        plots["Label frequency"] = label_frequency(first["labels"], folder / f"{stem}-labels.png")
    if submissions:
        plots["CV vs public score"] = cv_vs_public(submissions, folder / f"{stem}-cv-public.png")
    return plots


def _side_by_side(experiments: list[dict[str, Any]], path: Path) -> Path:
    """The experiments' CV, public score, trainable parameters, train time and peak memory as bars."""
    rows = [
        {
            "experiment": e["name"],
            "@0.5": e["cv"]["at_0.5"],
            "tuned": e["cv"]["tuned"],
            "nested": e["cv"]["nested"],
            "public": e["public_score"],
            "trainable_params": e["trainable_params"],
            "train_seconds": e["train_seconds"],
            "peak_gpu_mb": e["peak_memory_mb"]["gpu_max_allocated"],
            "peak_cpu_mb": e["peak_memory_mb"]["cpu_rss"],
        }
        for e in experiments
    ]
    metrics = {e["metric"] for e in experiments}
    cv = Panel(f"CV {next(iter(metrics))}" if len(metrics) == 1 else "CV", ("@0.5", "tuned", "nested", "public"))
    return method_bars(rows, path, method="experiment", panels=(cv, *method_panels()[1:]))


def _zero_shot_section(e: dict[str, Any], path: Path) -> Section:
    both = e["zero_shot"]
    rows = [{"model": "zero-shot", **both["zero_shot"]}, {"model": "fine-tuned", **both["fine_tuned"]}]
    panels = (
        Panel(e["metric"], ("metric",)),
        Panel("parse failures", ("parse_failure_rate",), text=percent),
        Panel("probability ROC AUC", ("probability_roc_auc",)),
    )
    table = [
        {
            "": f"{r['model']} ({'parsed answers' if r['model'] == 'zero-shot' else 'CV'})",
            e["metric"]: fmt(r["metric"]),
            "parse failures": percent(r["parse_failure_rate"]),
            "probability ROC AUC": fmt(r["probability_roc_auc"]),
        }
        for r in rows
    ]
    rows_seen = both["zero_shot"]["rows"]
    text = (
        f"Zero-shot: the untrained model's parsed answers on {rows_seen:,} training rows (`kagglemlc zero-shot`). "
        if isinstance(rows_seen, int)
        else "Zero-shot: the untrained model's parsed answers (`kagglemlc zero-shot`). "
    ) + "Fine-tuned: this experiment's CV, its out-of-fold answers and probabilities."
    images = [method_bars(rows, path, method="model", panels=panels)]
    return Section(f"{e['name']}: zero-shot vs fine-tuned", paragraphs=[text], images=images, tables=[table])


def report_sections(
    result: dict[str, Any], histories: list[dict[str, list]], plots: dict[str, Path], folder: Path, stem: str
) -> list[Section]:
    """report.html: report.md's tables and plots, each experiment's learning curves and P/R/F1 bars, zero-shot vs
    fine-tuned where a zero-shot result exists, and the experiments' bars side by side when there are several."""
    experiments = result["experiments"]
    side = [_side_by_side(experiments, folder / f"{stem}-experiments.png")] if len(experiments) > 1 else []
    generated = f"Generated {result['generated_at']}."
    sections = [Section("Experiments", paragraphs=[generated], images=side, tables=[_experiment_rows(experiments)])]
    if "CV vs public score" in plots:
        about = "One point per scored submission: the CV logged when it was submitted against its public score."
        sections.append(Section("CV vs public score", paragraphs=[about], images=[plots["CV vs public score"]]))
    if sum(bool(e["labels"]) for e in experiments) > 1:
        sections.append(Section("Per-label F1", images=[plots["Per-label F1"]]))
    if "Label frequency" in plots:
        sections.append(Section("Label frequency", images=[plots["Label frequency"]]))
    for i, (folds, e) in enumerate(zip(histories, experiments, strict=True), 1):
        images = []
        if e["labels"]:
            images.append(label_scores(e["labels"], folder / f"{stem}-{i}-prf.png", title=f"{e['name']}: per label"))
        if any(folds.values()):
            curves = folder / f"{stem}-{i}-curves.png"
            images.append(learning_curves(folds, curves, metric_name=e["metric"], title=f"{e['name']}: folds"))
        tables = [_label_rows(e)] if e["labels"] else []
        sections.append(Section(e["name"], paragraphs=_notes(e), images=images, tables=tables))
        if e.get("seeds") or e.get("full_fit"):
            about = ["Each seed's models alone (pooled out-of-fold), then their average: the experiment's CV."]
            paragraphs = (about if e.get("seeds") else []) + ([_full_fit_note(e)] if e.get("full_fit") else [])
            seeds = [_seed_rows(e)] if e.get("seeds") else []
            sections.append(Section(f"{e['name']}: seeds and full fit", paragraphs=paragraphs, tables=seeds))
        if e["zero_shot"]:
            sections.append(_zero_shot_section(e, folder / f"{stem}-{i}-zero-shot.png"))
    return sections
