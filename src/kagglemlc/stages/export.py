"""`kagglemlc export`: a self-contained Kaggle inference bundle for one experiment or a blend — models, wheels and a
notebook that predicts the competition's test file offline and writes /kaggle/working/submission.csv.

    kagglemlc export runs/minilm/config.yaml --out bundle           # one experiment
    kagglemlc export runs/blend-mix/config.yaml --out bundle        # a blend: its members and weights too
    kagglemlc export a.yaml b.yaml --out bundle                     # several: the notebook submits the first

    bundle/dataset/   what becomes the Kaggle dataset (kaggle datasets create -p bundle/dataset --dir-mode zip)
    bundle/kernel/    the notebook and its kernel-metadata.json (kaggle kernels push -p bundle/kernel)

Per experiment the bundle keeps its resolved config (paths inside the bundle), thresholds.json, a copy of the training
file (label names and the check that the models fit the config read it) and every fold's model: LoRA and IA3 adapters
are merged into their base with the head (peft's `merge_and_unload`), so a fold is one plain checkpoint; a 4-bit base
(qlora), a frozen base with a trained head (`head`) or `merge=False` keep the adapter or head per fold and the base
once. The notebook runs kagglemlc itself (`stages.notebook`): the same predict and submission code as on this
machine, so its submission.csv is byte for byte the one `kagglemlc submit` writes from the same models.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import nbformat
import torch
import yaml

import kagglemlc
from kagglemlc.config import Config, load_config, settings_dict
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_json, write_yaml
from kagglemlc.core.paths import (
    BUNDLE_BASE_DIR,
    BUNDLE_DATASET_DIR,
    BUNDLE_KERNEL_DIR,
    BUNDLE_MANIFEST,
    BUNDLE_WHEELS_DIR,
    CONFIG_FILE,
    DATASET_METADATA,
    FULL_DIR,
    KERNEL_METADATA,
    METRICS_FILE,
    MODEL_DIR,
    NOTEBOOK_FILE,
    SCRIPT_FILE,
    THRESHOLDS_FILE,
    fold_dir,
    seed_dirs,
)
from kagglemlc.data.competition import load_competition
from kagglemlc.data.experiment import stage_settings, trained_commit
from kagglemlc.models.build import head_modules, load_trained, resolve_model_path

# what from_pretrained never reads from a model folder: other frameworks' weights, the original checkpoints
NOT_READ = ("*.h5", "*.msgpack", "*.onnx", "*.ot", "tf_model*", "flax_model*", "original", ".git*", "*.lock")
STACK = "stack"


# ---- what is exported ----------------------------------------------------------------------------


def _recorded(cfg: Config) -> dict[str, Any]:
    """The run folder's config.yaml as written (its `meta` says whether it is a blend)."""
    path = cfg.run_dir / CONFIG_FILE
    if not path.is_file():
        raise KaggleMLCError(f"{path} not found; run `kagglemlc train` (or `kagglemlc ensemble`) before exporting")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _experiments(config_paths: Sequence[str | Path]) -> tuple[dict[str, Config], dict[str, dict[str, Any]]]:
    """The experiments to bundle, by name (a blend's members included), and the blends, by name."""
    experiments: dict[str, Config] = {}
    blends: dict[str, dict[str, Any]] = {}

    def add(cfg: Config) -> None:
        known = experiments.get(cfg.name)
        if known is not None and known.run_dir != cfg.run_dir:
            raise KaggleMLCError(
                f"two experiments are named '{cfg.name}' ({known.run_dir}, {cfg.run_dir}); set `name` in one of them"
            )
        experiments[cfg.name] = cfg

    for path in config_paths:
        cfg = load_config(path)
        recorded = _recorded(cfg)
        ensemble = (recorded.get("meta") or {}).get("ensemble")
        if ensemble is None:
            add(load_config(cfg.run_dir / CONFIG_FILE))  # the settings the models were trained with
            continue
        if ensemble["method"] == STACK:
            raise KaggleMLCError(
                f"{cfg.run_dir}: a stacked blend keeps no fitted stacker to apply to a new test file; export a blend "
                "made with --method mean, rank or geometric"
            )
        members = [load_config(load_config(m).run_dir / CONFIG_FILE) for m in ensemble["members"]]
        for member in members:
            add(member)
        blends[cfg.name] = {
            "config": cfg,
            "members": [m.name for m in members],
            "weights": ensemble["weights"],
            "method": ensemble["method"],
        }
    clash = set(experiments) & set(blends)
    if clash:
        raise KaggleMLCError(f"'{sorted(clash)[0]}' names both an experiment and a blend; rename one (`name`)")
    return experiments, blends


# ---- models --------------------------------------------------------------------------------------


def _units(cfg: Config) -> list[Path]:
    """Every trained model's folder (fold{k}/[seed{s}/], full/[seed{s}/]), each checked to hold its model."""
    folders = [fold_dir(cfg.run_dir, k) for k in range(cfg.cv.folds)]
    if (cfg.run_dir / FULL_DIR / METRICS_FILE).is_file():
        folders.append(cfg.run_dir / FULL_DIR)
    units = [unit for folder in folders for unit in seed_dirs(folder, cfg.train.seeds)]
    missing = [u / MODEL_DIR for u in units if not (u / MODEL_DIR).is_dir()]
    if missing:
        raise KaggleMLCError(f"{missing[0]} not found; train every fold (`kagglemlc train`) before exporting")
    return units


def _merges(cfg: Config, merge: bool) -> bool:
    """Whether the folds' adapters are merged into their base: LoRA and IA3 on a base that is not 4-bit."""
    return merge and cfg.adapter.method in ("lora", "ia3")


def _keeps_base(cfg: Config, merge: bool) -> bool:
    """Whether the folds keep only an adapter or a head, so the base model is stored once beside them."""
    return cfg.adapter.method != "none" and not _merges(cfg, merge)


def _copy_model_folder(source: Path, target: Path) -> None:
    """A model folder as from_pretrained reads it: safetensors rather than .bin when both are there."""
    ignore = list(NOT_READ)
    if any(source.glob("*.safetensors")):
        ignore.append("pytorch_model*.bin")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*ignore), symlinks=False)


def _merge_into(cfg: Config, data: Any, model_dir: Path, target: Path) -> None:
    """One fold's adapter merged into its base with the head → a plain checkpoint + the fold's tokenizer.

    The base is loaded in fp32 for the merge (whatever train.precision chose), so the sum is not rounded twice;
    the result is stored in the base checkpoint's own dtype when that is 16-bit (the head stays fp32).
    """
    fp32 = cfg.model_copy(deep=True)
    fp32.train.precision = "no"
    model = load_trained(fp32, model_dir, data).merge_and_unload()
    stored = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if stored in (torch.float16, torch.bfloat16, "float16", "bfloat16"):
        dtype = getattr(torch, stored) if isinstance(stored, str) else stored
        heads = set(head_modules(model))
        for name, child in model.named_children():
            if name not in heads:
                child.to(dtype)
    model.save_pretrained(target)
    for file in model_dir.iterdir():  # the tokenizer, as training saved it
        if file.is_file() and not file.name.startswith("adapter_") and not (target / file.name).exists():
            shutil.copy2(file, target / file.name)


def _bundle_models(cfg: Config, data: Any, target: Path, merge: bool) -> str:
    """Every fold's model into `target` (the experiment's folder in the bundle); returns model.name for the
    bundle's config: the base's folder, or the first fold's model (whose tokenizer and config every fold shares)."""
    units = _units(cfg)
    for unit in units:
        dest = target / unit.relative_to(cfg.run_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for mark in (unit / METRICS_FILE, unit.parent / METRICS_FILE):  # the full fit's mark, and the units' own
            if mark.is_file() and not (target / mark.relative_to(cfg.run_dir)).exists():
                shutil.copy2(mark, target / mark.relative_to(cfg.run_dir))
        model_dir = unit / MODEL_DIR
        if _merges(cfg, merge) and (model_dir / "adapter_config.json").is_file():
            _merge_into(cfg, data, model_dir, dest / MODEL_DIR)
        else:
            shutil.copytree(model_dir, dest / MODEL_DIR)
        info(f"{cfg.name}: {unit.relative_to(cfg.run_dir)} → {dest / MODEL_DIR}")
    if not _keeps_base(cfg, merge):
        return str(units[0].relative_to(cfg.run_dir) / MODEL_DIR)
    _copy_model_folder(Path(resolve_model_path(cfg, trained_commit(cfg))), target / BUNDLE_BASE_DIR)
    return BUNDLE_BASE_DIR


# ---- configs -------------------------------------------------------------------------------------


def _relative(value: Any, folder: Path, root: Path) -> Any:
    """Paths inside the bundle (`root`) relative to `folder`, where the config is (the bundle is mounted elsewhere
    on Kaggle), recursively."""
    if isinstance(value, dict):
        return {k: _relative(v, folder, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, folder, root) for v in value]
    if isinstance(value, str) and value.startswith("/") and Path(value).is_relative_to(root):
        return os.path.relpath(value, folder)
    return value


def _write_bundle_config(cfg: Config, stages: dict[str, Any], extra_meta: dict[str, Any] | None = None) -> None:
    """`output_dir`/config.yaml with the bundle's paths relative to it and `stages` (`stage_settings` with the
    competition's files still set, so the record matches the competition's files on Kaggle): `predict` then finds
    the models consistent with the config, as `record_settings` would have written it there."""
    folder = cfg.run_dir
    meta = {
        "exported_from": str(cfg.meta.get("config_file", "")),
        "versions": {"kagglemlc": kagglemlc.__version__, "torch": str(torch.__version__)},
        **(extra_meta or {}),
        "stages": stages,
    }
    root = folder.parent
    write_yaml(folder / CONFIG_FILE, _relative({**settings_dict(cfg), "meta": meta}, folder, root))


def _bundle_experiment(cfg: Config, folder: Path, merge: bool) -> dict[str, Any]:
    """One experiment into `folder`: models, thresholds, the training file and its config."""
    thresholds = cfg.run_dir / THRESHOLDS_FILE
    if not thresholds.is_file():
        raise KaggleMLCError(f"{thresholds} not found; run `kagglemlc tune-thresholds` before exporting")
    comp = cfg.competition
    data = load_competition(comp, with_test=False)
    resolve_model_path(cfg, trained_commit(cfg))  # a hub id: the commit the folds were trained on, for every load
    folder.mkdir(parents=True)
    shutil.copy2(thresholds, folder / THRESHOLDS_FILE)
    model_name = _bundle_models(cfg, data, folder, merge)
    bundled = cfg.model_copy(deep=True)
    bundled.output_dir = folder
    bundled.model.name = model_name
    bundled.model.revision = None  # a folder of the bundle
    for key in ("train", "label_names_file"):
        source = getattr(comp, key)
        if source is not None:
            shutil.copy2(source, folder / source.name)
            setattr(bundled.competition, key, folder / source.name)
    _finish_config(bundled)
    return {"kind": cfg.model.kind, "adapter": cfg.adapter.method, "merged": _merges(cfg, merge), "model": model_name}


def _finish_config(bundled: Config, extra_meta: dict[str, Any] | None = None) -> None:
    """The bundle's config.yaml of `bundled`: the test file and sample submission are Kaggle's (found or set when
    the notebook runs), submissions go where the notebook says."""
    stages = stage_settings(bundled)
    bundled.competition.test = bundled.competition.sample_submission = bundled.submission.dir = None
    _write_bundle_config(bundled, stages, extra_meta)


def _bundle_blend(blend: dict[str, Any], folder: Path, member: Path) -> None:
    """A blend's config and thresholds; its competition files are the bundle's copies in its first member's folder
    (`member`)."""
    cfg: Config = blend["config"]
    folder.mkdir(parents=True)
    shutil.copy2(cfg.run_dir / THRESHOLDS_FILE, folder / THRESHOLDS_FILE)
    bundled = cfg.model_copy(deep=True)
    bundled.output_dir = folder
    for key in ("train", "label_names_file"):
        source = getattr(cfg.competition, key)
        if source is not None:
            setattr(bundled.competition, key, member / source.name)
    bundled.submission.use = "folds"  # the blend's test.parquet: what ensemble writes and the notebook too
    _finish_config(bundled, {"ensemble": {k: blend[k] for k in ("members", "weights", "method")}})


# ---- wheels, notebook, metadata ------------------------------------------------------------------


def _source_tree() -> Path | None:
    root = Path(kagglemlc.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "kagglemlc"' in pyproject.read_text(encoding="utf-8") else None


def _pip_wheel(args: list[str], target: Path, what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(target), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
        raise KaggleMLCError(f"pip wheel {what} failed: {(lines or ['no output'])[-1].strip()[:300]}")


def build_wheels(target: Path, packages: Sequence[str]) -> list[Path]:
    """kagglemlc's wheel (built from this checkout) and one wheel per package in `packages`, at the version installed
    here, into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    source = _source_tree()
    if source is None:  # installed from a wheel: the same version from the package index
        _pip_wheel([f"kagglemlc=={kagglemlc.__version__}"], target, "kagglemlc")
    else:
        with tempfile.TemporaryDirectory() as tmp:  # a copy: an in-tree build would leave build/ in the checkout
            copy = Path(tmp) / "kagglemlc"
            shutil.copytree(
                source,
                copy,
                ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist", "runs", "tests"),
            )
            _pip_wheel(["--no-build-isolation", str(copy)], target, "kagglemlc")
    for package in packages:
        try:
            pinned = f"{package}=={version(package)}"
        except PackageNotFoundError:
            pinned = package
        _pip_wheel([pinned], target, pinned)
    return sorted(target.glob("*.whl"))


def _slug(text: str, limit: int = 50) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def kaggle_refs(cfg: Config, name: str, owner: str | None = None) -> tuple[str, str]:
    """(dataset OWNER/SLUG, notebook OWNER/SLUG): export.dataset / export.kernel, else named after `name` for `owner`
    (the Kaggle user; a placeholder until `--push` knows it)."""
    owner = owner or "YOUR_KAGGLE_USERNAME"
    dataset = cfg.export.dataset or f"{owner}/{_slug(name + '-kagglemlc')}"
    kernel = cfg.export.kernel or f"{owner}/{_slug(name + '-inference')}"
    for ref, key in ((dataset, "export.dataset"), (kernel, "export.kernel")):
        if ref.count("/") != 1 or not all(ref.split("/")):
            raise KaggleMLCError(f"{key}: '{ref}' is not OWNER/SLUG")
    return dataset, kernel


def write_metadata(bundle: Path, slug: str | None, dataset: str, kernel: str) -> None:
    """dataset-metadata.json and kernel-metadata.json for these Kaggle refs (the dataset attached to the notebook,
    the competition too; internet off, as code competitions require; a GPU on)."""
    title = dataset.split("/")[1].replace("-", " ")
    write_json(
        bundle / BUNDLE_DATASET_DIR / DATASET_METADATA,
        {"title": title[:50].ljust(6, "_"), "id": dataset, "licenses": [{"name": "CC0-1.0"}]},
    )
    write_json(
        bundle / BUNDLE_KERNEL_DIR / KERNEL_METADATA,
        {
            "id": kernel,
            "title": kernel.split("/")[1].replace("-", " "),
            "code_file": NOTEBOOK_FILE,
            "language": "python",
            "kernel_type": "notebook",
            "is_private": True,
            "enable_gpu": True,
            "enable_tpu": False,
            "enable_internet": False,
            "dataset_sources": [dataset],
            "competition_sources": [slug] if slug else [],
            "kernel_sources": [],
            "model_sources": [],
        },
    )


PARAMETERS = """# Where things are; None = found: the bundle by its {manifest} under INPUT, the competition's files in
# INPUT/{slug}/ or else by their names anywhere under INPUT.
SUBMIT = {submit!r}  # what is submitted: {choices}
INPUT = "/kaggle/input"
WORKING = "/kaggle/working"  # submission.csv is written here
BUNDLE = None
TEST = None  # e.g. "/kaggle/input/{slug}/{test}"
SAMPLE_SUBMISSION = None"""

INSTALL = """import subprocess, sys
from pathlib import Path

if BUNDLE is None:  # the dataset this notebook came with (as a script: its own folder)
    found = [Path(globals()["__file__"]).parent] if "__file__" in globals() else []
    for depth in ("*", "*/*", "*/*/*"):
        found += [p.parent for p in sorted(Path(INPUT).glob(f"{{depth}}/{manifest}"))]
    bundles = [p for p in found if (p / "{manifest}").is_file()]
    if not bundles:
        raise FileNotFoundError(f"no {manifest} under {{INPUT}}: attach the bundle's dataset, or set BUNDLE")
    BUNDLE = str(bundles[0])
# offline: kagglemlc and what the image lacks come from the bundle's wheels, the rest is the image's own
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                f"{{BUNDLE}}/{wheels}", "kagglemlc"], check=True)"""

PREDICT = """from kagglemlc.stages.notebook import predict_bundle

# every model of SUBMIT (one copy per GPU), the thresholds and blend weights, then a submission checked against
# the sample submission
submission = predict_bundle(BUNDLE, SUBMIT, input_dir=INPUT, working=WORKING, test=TEST,
                            sample_submission=SAMPLE_SUBMISSION)"""

SHOW = """import pandas as pd

pd.read_csv(submission, dtype=str).head()"""


def write_notebook(bundle: Path, manifest: dict[str, Any]) -> None:
    """inference.ipynb (nbformat) into the dataset and the kernel folder, and the same cells as inference.py."""
    choices = ", ".join([*manifest["experiments"], *manifest["blends"]])
    summary = "\n".join(
        f"- `{name}`: {b['method']} blend of {', '.join(f'{m} ({w:.3f})' for m, w in zip(b['members'], b['weights']))}"
        for name, b in manifest["blends"].items()
    ) + "".join(
        f"\n- `{name}`: {e['kind']} ({e['adapter']}{', merged' if e['merged'] else ''})"
        for name, e in manifest["experiments"].items()
    )
    values = {
        "manifest": BUNDLE_MANIFEST,
        "slug": manifest["competition"] or "<competition>",
        "submit": manifest["submit"],
        "choices": choices,
        "test": manifest["test_file"],
        "wheels": BUNDLE_WHEELS_DIR,
    }
    code = [PARAMETERS.format(**values), INSTALL.format(**values), PREDICT, SHOW]
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    intro = (
        f"# kagglemlc inference: {manifest['submit']}\n\nExported by kagglemlc {manifest['kagglemlc']}. Installs "
        "kagglemlc from the bundle (no internet), predicts the competition's test file with every fold's model, "
        f"applies the tuned thresholds (and blend weights) and writes `submission.csv`.\n\n{summary.strip()}"
    )
    notebook.cells = [nbformat.v4.new_markdown_cell(intro)] + [nbformat.v4.new_code_cell(c) for c in code]
    for folder in (bundle / BUNDLE_DATASET_DIR, bundle / BUNDLE_KERNEL_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, str(folder / NOTEBOOK_FILE))
    script = f'"""{intro}\n"""\n\n' + "\n\n".join(code) + "\n"
    (bundle / BUNDLE_DATASET_DIR / SCRIPT_FILE).write_text(script, encoding="utf-8")


# ---- the stage -----------------------------------------------------------------------------------


def export(config_paths: Sequence[str | Path], out: Path, merge: bool = True) -> Path:
    """Writes the inference bundle of the experiments (or blends) `config_paths` into `out`.

    Args:
        config_paths: experiment YAMLs or resolved config.yaml files; a blend's brings its members. The notebook
            submits the first (its SUBMIT cell names the others).
        out: a new or empty folder: out/dataset/ (the Kaggle dataset) and out/kernel/ (the notebook to push).
        merge: merge LoRA / IA3 adapters into their base per fold (faster prediction, one full model per fold);
            False keeps the adapters and the base once (a smaller bundle for many folds of a large model).

    Returns:
        `out`.

    Raises:
        KaggleMLCError: an untrained fold, no thresholds.json, a stacked blend, clashing names, a non-empty `out`.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise KaggleMLCError(f"--out {out}: the folder is not empty; export into a new folder")
    for path in config_paths:
        if load_config(path).competition.task == "span":
            raise KaggleMLCError(f"{path}: export bundles do not carry task span yet; predict with `kagglemlc predict`")
    try:
        return _export(config_paths, out, merge)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left behind
        raise


def _export(config_paths: Sequence[str | Path], out: Path, merge: bool) -> Path:
    experiments, blends = _experiments(config_paths)
    first = load_config(config_paths[0])
    comp = first.competition
    if comp.test is None or comp.sample_submission is None:
        raise KaggleMLCError(
            "competition.test and competition.sample_submission: the notebook looks for files of these names on "
            "Kaggle; set both"
        )
    dataset = out / BUNDLE_DATASET_DIR
    dataset.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": 1,
        "kagglemlc": kagglemlc.__version__,
        "competition": comp.slug,
        "test_file": comp.test.name,
        "sample_submission_file": comp.sample_submission.name,
        "submit": first.name,
        "experiments": {},
        "blends": {n: {k: b[k] for k in ("members", "weights", "method")} for n, b in blends.items()},
    }
    for name, cfg in experiments.items():
        manifest["experiments"][name] = _bundle_experiment(cfg, dataset / name, merge)
    for name, blend in blends.items():
        _bundle_blend(blend, dataset / name, dataset / blend["members"][0])
    wheels = build_wheels(dataset / BUNDLE_WHEELS_DIR, first.export.wheels)
    manifest["wheels"] = [w.name for w in wheels]
    write_json(dataset / BUNDLE_MANIFEST, manifest)
    write_notebook(out, manifest)
    write_metadata(out, first.competition.slug, *kaggle_refs(first, first.name))
    size = sum(f.stat().st_size for f in dataset.rglob("*") if f.is_file()) / 2**20
    info(f"bundle of {', '.join(manifest['experiments'])}: {size:,.0f} MiB, {len(wheels)} wheels → {dataset}")
    info(f"notebook → {out / BUNDLE_KERNEL_DIR / NOTEBOOK_FILE}; `kagglemlc export ... --push` uploads both")
    return out
