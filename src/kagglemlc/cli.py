"""The `kagglemlc` command: thin Typer shims over the stage functions.

    kagglemlc prepare configs/demo.yaml cv.folds=3

User errors (`KaggleMLCError`) print one red line and exit 2; anything else keeps its traceback. Each command
imports its stage (`kagglemlc.stages.<command>`) when it runs, so `kagglemlc --help` starts without torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kagglemlc import __version__
from kagglemlc.config import DEFAULT_CONFIG, Config, load_config
from kagglemlc.core.console import error
from kagglemlc.core.errors import KaggleMLCError

app = typer.Typer(
    name="kagglemlc",
    help="Kaggle text-classification competitions from one YAML: folds, training, thresholds, ensembles, submissions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

CONFIG_ARG = typer.Argument(None, help="Experiment YAML (default: ./kagglemlc.yaml).", show_default=False)
OVERRIDES_ARG = typer.Argument(None, help="Dotted overrides, e.g. train.lr=3e-5 cv.folds=3.", show_default=False)


def _config(config: Path | None, overrides: list[str] | None) -> Config:
    """Loads CONFIG; a first argument with '=' is an override and the config defaults to ./kagglemlc.yaml."""
    overrides = list(overrides or [])
    if config is not None and "=" in str(config) and not str(config).endswith((".yaml", ".yml")):
        overrides.insert(0, str(config))
        config = None
    return load_config(config or DEFAULT_CONFIG, overrides)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kagglemlc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Kaggle text-classification competitions from one YAML."""


@app.command()
def init(
    folder: Path = typer.Argument(Path("."), help="The competition folder (default: here).", show_default=False),
) -> None:
    """Write a commented kagglemlc.yaml from the competition files found in FOLDER (train, test, sample_submission):
    id, text and label columns and the task guessed, each guess marked; never overwrites an existing one."""
    from kagglemlc.stages.init import init as run_init

    run_init(folder)


@app.command()
def prepare(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
    """Validate the competition files and write K-fold multilabel-stratified splits (folds.parquet)."""
    from kagglemlc.stages.prepare import prepare as run_prepare

    run_prepare(_config(config, overrides))


@app.command()
def download(
    configs: list[Path] = typer.Argument(
        None, help="Experiment YAMLs (default: ./kagglemlc.yaml).", show_default=False
    ),
    competition: str = typer.Option(
        None,
        "--competition",
        help="Instead: fetch this competition's files (the <slug> of kaggle.com/competitions/<slug>) with the "
        "official kaggle client and unzip them into --out.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("."), "--out", help="Where --competition's files go (default: here)."),
    force: bool = typer.Option(False, "--force", help="With --competition: replace files already in --out."),
) -> None:
    """Fetch every config's model from the Hugging Face Hub (model.revision, into model.cache_dir) ahead of an
    offline run; local folders and minilm need nothing. With --competition SLUG: the competition's data files
    instead (accept its rules on kaggle.com first), then `kagglemlc init` writes the config."""
    if competition is not None:
        from kagglemlc.stages.publish import download_competition

        download_competition(competition, out, force=force)
        if not configs:
            return
    from kagglemlc.stages.download import download as run_download

    run_download([load_config(config) for config in configs or [DEFAULT_CONFIG]])


FOLD_OPT = typer.Option(None, "--fold", "-f", help="Only this fold (default: every fold in turn).", show_default=False)


RESTART_OPT = typer.Option(
    False,
    "--restart",
    help="Discard the fold's (every fold's) checkpoint, model and predictions and train from scratch; also the "
    "way on when trained folds used other settings (they are discarded).",
)


@app.command()
def train(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    fold: int | None = FOLD_OPT,
    restart: bool = RESTART_OPT,
    full: bool = typer.Option(
        False, "--full", help="Only the full fit (train.full_fit), once every fold is complete.", show_default=False
    ),
) -> None:
    """Train one fold (or every fold): best model, OOF and test probabilities per fold; resumes after a crash.

    Makes the folds first when folds.parquet is absent. Settings left at `auto` (lr, head_lr, epochs, max_length
    ...) are chosen by rule and printed once. Stops, deleting nothing, when folds on disk were trained with other
    settings (--restart discards them, or use a new output_dir). With train.seeds, each fold trains once per seed;
    with train.full_fit, `train` (every fold) ends with one model on all rows, into full/."""
    from kagglemlc.stages.train import train as run_train
    from kagglemlc.stages.train import train_full

    cfg = _config(config, overrides)
    if full:
        if fold is not None:
            raise KaggleMLCError("--full trains the full fit, not a fold: drop --fold")
        if not cfg.train.full_fit:
            raise KaggleMLCError("--full: train.full_fit is off; set train.full_fit: true (or add train.full_fit=true)")
        train_full(cfg, restart=restart)
    else:
        run_train(cfg, fold, restart=restart)


@app.command()
def predict(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    fold: int | None = FOLD_OPT,
    train_rows: bool = typer.Option(
        False,
        "--train-rows",
        help="Each fold's models predict that fold's own training rows → fold{k}/train_rows.parquet "
        "(what a student's train.distill reads), instead of the test rows.",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the predictions here (fold{k}/, test.parquet, full/) and only read the run folder: for a "
        "read-only copy such as a Kaggle dataset; folds.parquet is not needed.",
        show_default=False,
    ),
) -> None:
    """Test-set probabilities from the saved fold models (fold{k}/test.parquet, then test.parquet; also full/), with
    rows/s and an ETA; `torchrun --nproc_per_node N -m kagglemlc predict ...` spreads the rows over N GPUs."""
    from kagglemlc.stages.predict import predict as run_predict

    run_predict(_config(config, overrides), fold, train_rows=train_rows, out=out)


@app.command()
def run(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    upload: bool = typer.Option(False, "--upload", help="Also send the submission to Kaggle (never without this)."),
    message: str | None = typer.Option(None, "--message", "-m", help="Submission description."),
    restart: bool = typer.Option(
        False, "--restart", help="Discard folds trained with other settings and retrain (never without this)."
    ),
) -> None:
    """The whole chain: prepare, train every fold, the full fit (train.full_fit), predict, tune thresholds, submit;
    current stages are skipped.

    An edit redoes exactly the stages it changes (a new test file: test predictions from the saved models).
    Stops, deleting nothing, when an edit would invalidate trained folds (--restart, or a new output_dir)."""
    from kagglemlc.stages.run import run as run_chain

    run_chain(_config(config, overrides), upload=upload, message=message, restart=restart)


@app.command("zero-shot")
def zero_shot(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    sample: int | None = typer.Option(
        None,
        "--sample",
        "-n",
        min=1,
        help="Score a random sample of N training rows (default: all).",
        show_default=False,
    ),
) -> None:
    """Generative models: the untrained model's parsed answers on the training rows → zero-shot/metrics.json."""
    from kagglemlc.stages.zero_shot import zero_shot as run_zero_shot

    run_zero_shot(_config(config, overrides), sample)


@app.command("tune-thresholds")
def tune_thresholds(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
    """Tune decision thresholds on the OOF probabilities → thresholds.json (CV untuned, tuned and nested)."""
    from kagglemlc.stages.tune_thresholds import tune_thresholds as run_tune

    run_tune(_config(config, overrides))


CONFIGS_ARG = typer.Argument(..., help="The members' configs (YAML or <output_dir>/config.yaml).", show_default=False)
BLEND_NAME_OPT = typer.Option(
    None,
    "--name",
    "-n",
    help="Writes blend-NAME/ beside the first member (default: the names joined by '+').",
    show_default=False,
)


@app.command()
def ensemble(
    configs: list[Path] = CONFIGS_ARG,
    name: str | None = BLEND_NAME_OPT,
    method: str = typer.Option(
        "mean",
        "--method",
        "-m",
        help="mean | rank | geometric (weights fitted on OOF) | stack (a per-label logistic regression on the "
        "members' OOF probabilities, fitted fold by fold).",
    ),
) -> None:
    """Blend experiments: weights fitted on OOF for the metric (or a stacker: --method stack), thresholds re-tuned
    → blend-NAME/."""
    from kagglemlc.stages.ensemble import ensemble as run_ensemble

    run_ensemble(configs, name, method)


@app.command()
def export(
    configs: list[Path] = typer.Argument(
        None,
        help="Experiments or blends (YAML or <output_dir>/config.yaml; default ./kagglemlc.yaml); the notebook submits "
        "the first.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="A new folder: out/dataset/ and out/kernel/."),
    push: bool = typer.Option(
        False, "--push", help="Then upload the dataset (a new version if it exists) and push the notebook to Kaggle."
    ),
    merge: bool = typer.Option(
        True, "--merge/--no-merge", help="Merge LoRA/IA3 adapters into the base per fold, or keep the base once."
    ),
) -> None:
    """A Kaggle inference bundle: every fold's model (LoRA merged), thresholds, blend weights, the kagglemlc wheel and
    export.wheels, and a notebook that installs offline and writes /kaggle/working/submission.csv."""
    from kagglemlc.stages.export import export as run_export
    from kagglemlc.stages.publish import push_bundle

    paths = configs or [DEFAULT_CONFIG]
    bundle = run_export(paths, out, merge=merge)
    if push:
        push_bundle(load_config(paths[0]), bundle)


@app.command()
def submit(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    message: str | None = typer.Option(None, "--message", "-m", help="Description (default: '<name> CV <cv>')."),
    upload: bool = typer.Option(False, "--upload", help="Also send it to Kaggle with the official kaggle client."),
    refresh_scores: bool = typer.Option(
        False, "--refresh-scores", help="Instead: fetch public scores from Kaggle into submissions/log.csv."
    ),
    kernel: str | None = typer.Option(
        None,
        "--kernel",
        help="Instead: a code submission of this notebook (OWNER/SLUG, e.g. pushed by `export --push`), logged.",
        show_default=False,
    ),
    kernel_version: int | None = typer.Option(
        None, "--version", help="With --kernel: the notebook's version (default: its latest).", show_default=False
    ),
) -> None:
    """Write the submission CSV, validated against the sample submission, and log it; --upload sends it to Kaggle;
    --kernel makes a code competition's submission from a notebook instead."""
    from kagglemlc.stages.submit import refresh_scores as run_refresh_scores
    from kagglemlc.stages.submit import submit as run_submit

    cfg = _config(config, overrides)
    if kernel_version is not None and kernel is None:
        raise KaggleMLCError("--version is the notebook's version: use it with --kernel OWNER/SLUG")
    if refresh_scores:
        run_refresh_scores(cfg)
    elif kernel is not None:
        from kagglemlc.stages.publish import submit_kernel

        submit_kernel(cfg, kernel, kernel_version, message)
    else:
        run_submit(cfg, message, upload)


@app.command()
def report(
    configs: list[Path] = typer.Argument(
        None, help="Experiment YAMLs or <output_dir>/config.yaml files (default: ./kagglemlc.yaml).", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON on stdout; write no files."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Default: <first output_dir>/report.md."),
) -> None:
    """CV untuned/tuned/nested, per-label P/R/F1, learning curves, params, time, memory, public scores → report.md,
    report.html (one file, pictures inlined) and PNG plots."""
    import json

    from kagglemlc.stages.report import report as run_report

    result = run_report(configs or [None], as_json=as_json, output=output)
    if as_json:
        typer.echo(json.dumps(result, indent=2))


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="A sweep YAML: base, axes, folds, output_dir.", show_default=False),
) -> None:
    """Every combination of a few settings (and data.labels / data.train_rows), one experiment each → sweep.csv,
    heatmaps and bars, sweep.html; resumes after a kill, a failed cell is recorded and the rest go on."""
    from kagglemlc.studies.sweep import sweep as run_sweep

    run_sweep(sweep_file)


@app.command()
def search(
    search_file: Path = typer.Argument(
        ..., help="A search YAML: base, space, trials, folds, output_dir.", show_default=False
    ),
) -> None:
    """Settings drawn by Optuna (TPE) within ranges, pruned on fold 0's history → search.csv, best.yaml (ready for
    `kagglemlc run`), search.html; the study is kept on disk, so a killed search resumes."""
    from kagglemlc.studies.search import search as run_search

    run_search(search_file)


def _close_process_group(finished: bool) -> None:
    """Under torchrun: the processes wait for each other (when the command finished), then close the process group.
    A process that exits with a Gloo group still open can abort in the interpreter's teardown ("terminate called
    without an active exception", SIGABRT; pytorch/pytorch#179291), failing a run whose work was all done. Looked up
    in sys.modules, not imported: a command that never touched torch has no group to close."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    """Console-script entry point: user errors → one line on stderr, exit code 2."""
    finished = False
    try:
        app()
        finished = True
    except KaggleMLCError as exc:
        error(str(exc))
        raise SystemExit(exc.exit_code) from None
    except SystemExit as exc:  # typer ends every command with SystemExit
        finished = exc.code in (None, 0)
        raise
    finally:
        _close_process_group(finished)


if __name__ == "__main__":
    main()
