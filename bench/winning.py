"""Issue 17's techniques on the defaults issue's GoEmotions sample: defaults, + 3 seeds, + full fit, + distillation,
+ pseudo-labels, + a stack of two experiments — CV (untuned / tuned / nested), a labelled holdout, and wall time.

    python bench/winning.py                  # → /tmp/kagglemlc-winning-bench/ (~70 min on the 2-core CPU machine)
    python bench/winning.py --src worktree   # the installed (working-tree) code instead of a snapshot of HEAD

The sample is bench/defaults_sample.py's (6,000 stratified rows of GoEmotions' train.csv, 3 folds, `minilm`,
fp32), byte for byte. Its test set is replaced by a **labelled holdout**: `--holdout` rows of train.csv outside the
sample (seeded), given to kagglemlc without labels as competition.test. Every cell's submission (labels, its own
tuned thresholds) is scored on them with the competition metric, so the full fit and the pseudo-labels, which
cannot move the folds' CV, are measured too.

Cells, in order, each through the real command line in a subprocess (one at a time; the code is a snapshot of the
committed HEAD unless --src worktree):
  defaults   the base config, plus train.full_fit: true (the folds are exactly the defaults'; the full fit is the
             row "+ full fit", submitted with submission.use full and both)
  seeds3     train.seeds [42, 43, 44]. Seed 42 of every fold is the defaults fold (same code, seed and rows: a
             test shows a seed's model equals the plain run with that train.seed), copied in rather than trained
             twice; 43 and 44 are trained.
  distill    the defaults + train.distill from seeds3 (the stronger experiment), after
             `kagglemlc predict seeds3 --train-rows`
  pseudo     the defaults + train.pseudo_labels from seeds3 (the holdout's texts, soft labels of seeds3's fold k);
             --pseudo-source defaults takes them from the defaults run instead (self-training, no seeds3 needed:
             python bench/winning.py --skip seeds3,distill,stack --pseudo-source defaults --no-full-fit)
  stack      `kagglemlc ensemble seeds3 pseudo --method stack` (defaults + seeds3 when the pseudo row is skipped)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import defaults_sample  # noqa: E402
from defaults_grid import code_under_test  # noqa: E402

DEFAULT_OUT = Path("/tmp/kagglemlc-winning-bench")
CELLS: dict[str, dict] = {
    "defaults": {"train": {"full_fit": True}},
    "seeds3": {"train": {"seeds": [42, 43, 44]}},
    "distill": {"train": {"distill": {"teacher": "runs/seeds3", "weight": 0.5, "temperature": 1.0}}},
    "pseudo": {"train": {"pseudo_labels": {"source": "runs/seeds3"}}},
}


def make_sample(out: Path, holdout: int, seed: int) -> list[str]:
    """The defaults sample, its test set replaced by `holdout` labelled rows outside it. Returns the labels."""
    defaults_sample.main(["--out", str(out), "--test-rows", "0"])
    full = pd.read_csv(defaults_sample.DATA / "train.csv", dtype={"id": str})
    sample = pd.read_csv(out / "train.csv", dtype={"id": str})
    labels = [c for c in full.columns if c not in ("id", "text")]
    rest = full[~full["id"].isin(sample["id"])]
    held = rest.iloc[np.sort(np.random.default_rng(seed).choice(len(rest), holdout, replace=False))]
    held[["id", "text"]].to_csv(out / "test.csv", index=False)
    held[["id", *labels]].to_csv(out / "holdout_labels.csv", index=False)
    pd.DataFrame({"id": held["id"], **{name: 0 for name in labels}}).to_csv(out / "sample_submission.csv", index=False)
    return labels


def cell_config(out: Path, name: str) -> Path:
    """The base config with the cell's settings merged in, at <out>/<name>.yaml (paths relative to <out>)."""
    base = yaml.safe_load((out / "kagglemlc.yaml").read_text(encoding="utf-8"))
    base["output_dir"] = f"runs/{name}"
    base["submission"] = {"dir": f"runs/{name}/submissions"}
    for section, values in CELLS.get(name, {}).items():
        base.setdefault(section, {}).update(values)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    return path


def kagglemlc(env: dict[str, str], log: Path, *args: str) -> float:
    """Runs one kagglemlc command; returns its wall seconds."""
    cmd = [sys.executable, "-m", "kagglemlc", *args]
    print(f"$ kagglemlc {' '.join(args)}", flush=True)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"kagglemlc {' '.join(args)} failed (exit {rc}); see {log}")
    return time.perf_counter() - start


def holdout_score(submission: Path, truth: pd.DataFrame, labels: list[str]) -> float:
    from kagglemlc.scoring.metrics import score

    sub = pd.read_csv(submission, dtype={"id": str}).set_index("id").loc[truth.index]
    return float(score("f1_macro", truth[labels].to_numpy(), sub[labels].to_numpy(dtype=np.float64), "multilabel"))


def submit(env: dict[str, str], log: Path, config: Path, *overrides: str) -> Path:
    """`kagglemlc submit`; returns the CSV it wrote (the newest in the experiment's submissions folder)."""
    kagglemlc(env, log, "submit", str(config), *overrides)
    folder = config.parent / yaml.safe_load(config.read_text())["submission"]["dir"]
    return max((p for p in folder.glob("*.csv") if p.name != "log.csv"), key=lambda p: p.stat().st_mtime_ns)


def fold_seconds(run: Path, pattern: str = "fold[0-9]*/metrics.json") -> float:
    return round(sum(json.loads(p.read_text())["wall_seconds"] for p in run.glob(pattern)), 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--holdout", type=int, default=1500, help="labelled holdout rows (default: %(default)s)")
    ap.add_argument("--src", default="head", help="head (snapshot of HEAD), worktree, or a commit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="rows not to run, comma-separated: seeds3, distill, pseudo, stack")
    ap.add_argument(
        "--pseudo-source",
        default="seeds3",
        choices=["defaults", "seeds3"],
        help="the experiment whose test predictions are the pseudo-labels (default: %(default)s)",
    )
    ap.add_argument(
        "--no-full-fit", action="store_true", help="the defaults row without its full fit (the full-fit rows not run)"
    )
    args = ap.parse_args(argv)
    if args.no_full_fit:
        CELLS["defaults"] = {}
    out = args.out
    labels = make_sample(out, args.holdout, seed=7) if not (out / "holdout_labels.csv").is_file() else None
    labels = labels or [c for c in pd.read_csv(out / "holdout_labels.csv", nrows=1).columns if c != "id"]
    truth = pd.read_csv(out / "holdout_labels.csv", dtype={"id": str}).set_index("id")
    code_env, code = code_under_test(args.src, out)
    t = str(args.threads)
    env = dict(os.environ, **code_env, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, TOKENIZERS_PARALLELISM="false")
    log = out / "bench_log.txt"
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"code": code, "rows": {}}
    rows = results["rows"]

    def cv(run: Path) -> dict:
        th = json.loads((run / "thresholds.json").read_text())
        return {k: th.get(k) for k in ("cv_at_0.5", "cv_tuned", "cv_nested")}

    def save():
        results_file.write_text(json.dumps(results, indent=2) + "\n")

    skip = set(filter(None, args.skip.split(",")))
    CELLS["pseudo"]["train"]["pseudo_labels"]["source"] = f"runs/{args.pseudo_source}"
    configs = {name: cell_config(out, name) for name in CELLS}
    runs = {name: out / "runs" / name for name in CELLS}
    if "defaults" not in rows:
        train_s = kagglemlc(env, log, "train", str(configs["defaults"]))
        kagglemlc(env, log, "tune-thresholds", str(configs["defaults"]))
        uses = ("folds",) if args.no_full_fit else ("folds", "full", "both")
        hold = {use: holdout_score(submit(env, log, configs["defaults"], f"submission.use={use}"), truth, labels)
                for use in uses}  # fmt: skip
        rows["defaults"] = {**cv(runs["defaults"]), "holdout": hold["folds"], "wall_s": fold_seconds(runs["defaults"])}
        if not args.no_full_fit:
            full_s = json.loads((runs["defaults"] / "full" / "metrics.json").read_text())["wall_seconds"]
            rows["+ full fit (use: full)"] = {"holdout": hold["full"], "wall_s": full_s, "command_s": round(train_s, 1)}
            rows["+ full fit (use: both)"] = {"holdout": hold["both"]}
        save()
    if "+ 3 seeds" not in rows and "seeds3" not in skip:
        run = runs["seeds3"]
        if not run.exists():  # seed 42 = the defaults folds, copied in (see the docstring)
            run.mkdir(parents=True)
            shutil.copy2(runs["defaults"] / "folds.parquet", run / "folds.parquet")
            for k in range(3):
                shutil.copytree(runs["defaults"] / f"fold{k}", run / f"fold{k}" / "seed42")
        kagglemlc(env, log, "train", str(configs["seeds3"]))
        kagglemlc(env, log, "tune-thresholds", str(configs["seeds3"]))
        hold = holdout_score(submit(env, log, configs["seeds3"]), truth, labels)
        per_seed = {s: round(fold_seconds(run, f"fold[0-9]*/seed{s}/metrics.json"), 1) for s in (42, 43, 44)}
        wall = round(sum(per_seed.values()), 1)
        rows["+ 3 seeds"] = {**cv(run), "holdout": hold, "wall_s": wall, "per_seed_s": per_seed}
        save()
    if "+ distillation" not in rows and "distill" not in skip:
        predict_s = kagglemlc(env, log, "predict", str(configs["seeds3"]), "--train-rows")
        kagglemlc(env, log, "train", str(configs["distill"]))
        kagglemlc(env, log, "tune-thresholds", str(configs["distill"]))
        hold = holdout_score(submit(env, log, configs["distill"]), truth, labels)
        wall = fold_seconds(runs["distill"])
        rows["+ distillation"] = {**cv(runs["distill"]), "holdout": hold, "wall_s": wall}
        rows["+ distillation"]["teacher_predict_s"] = round(predict_s, 1)
        save()
    rows_name = "+ pseudo-labels" + ("" if args.pseudo_source == "seeds3" else f" (from {args.pseudo_source})")
    if rows_name not in rows and "pseudo" not in skip:
        kagglemlc(env, log, "train", str(configs["pseudo"]))
        kagglemlc(env, log, "tune-thresholds", str(configs["pseudo"]))
        hold = holdout_score(submit(env, log, configs["pseudo"]), truth, labels)
        rows[rows_name] = {**cv(runs["pseudo"]), "holdout": hold, "wall_s": fold_seconds(runs["pseudo"])}
        save()
    pair = ("seeds3", "pseudo") if "+ pseudo-labels" in rows else ("defaults", "seeds3")
    stack_row = f"stack ({' + '.join(pair)})"
    if stack_row not in rows and "stack" not in skip:
        members = [str(configs[name]) for name in pair]
        wall = kagglemlc(env, log, "ensemble", *members, "--method", "stack", "--name", "stack")
        blend = out / "runs" / "blend-stack"
        csv = submit(env, log, blend / "config.yaml", f"submission.dir={blend / 'submissions'}")
        hold = holdout_score(csv, truth, labels)
        rows[stack_row] = {**cv(blend), "holdout": hold, "wall_s": round(wall, 1)}
        save()
    print(table(results))


def table(results: dict) -> str:
    f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
    lines = [
        f"code: {results['code']}",
        "",
        "| experiment | CV untuned (0.5) | CV tuned | CV nested | holdout macro-F1 | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["rows"].items():
        wall = r.get("wall_s")
        lines.append(
            f"| {name} | {f(r.get('cv_at_0.5'))} | {f(r.get('cv_tuned'))} | {f(r.get('cv_nested'))} | "
            f"{f(r.get('holdout'))} | {'—' if wall is None else round(wall)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
