"""`kagglemlc export`: the inference bundle of an encoder experiment, a LoRA decoder experiment and their blend.

The main claim, run as Kaggle would: the bundle is installed into a new virtual environment that holds only what a
Kaggle image has (torch, transformers, peft, accelerate, pandas, scikit-learn, pyarrow ... and no kagglemlc, no
iterative-stratification, no bitsandbytes: those come from the bundle's wheels) with no package index
(`pip install --no-index --find-links`, pip's config files off), and the exported notebook is executed by nbclient
in a real Jupyter kernel of that environment, reading the competition from a folder laid out like /kaggle/input/.
Its submission.csv is byte for byte the CSV `kagglemlc submit` wrote for each of the three.

The environment is made once per test session: what `pip install` of those packages would install, hard-linked from
this environment (seconds). The experiments train on CPU in seconds (tiny random models, tests/tiny_*.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import Distribution, distribution
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import LABELS, make_competition
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.stages.export import export
from kagglemlc.stages.notebook import find_competition_file, predict_bundle
from tiny_decoders import make_decoder
from tiny_models import make_encoder

SLUG = "toy-comp"
TRAIN = {"max_steps": 6, "eval_every": 3, "batch_size": 8, "eval_batch_size": 7, "lr": 1e-2, "precision": "no"}
TRAIN |= {"early_stopping_patience": None}
# what the "Kaggle image" holds: kagglemlc's dependencies at the versions installed here, less what the bundle ships
IMAGE = [
    "torch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "peft", "accelerate", "numpy", "pandas",
    "pyarrow", "scipy", "scikit-learn", "pydantic", "PyYAML", "typer", "rich", "matplotlib", "jinja2", "requests",
    "kaggle", "six", "optuna",
]  # fmt: skip
JUPYTER = ["ipykernel", "nbclient", "nbformat"]


def _kagglemlc(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kagglemlc", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _last_submission(folder: Path, experiment: str) -> Path:
    log = pd.read_csv(folder / "log.csv", dtype=str)
    return folder / log.loc[log["experiment"] == experiment, "file"].iloc[-1]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> dict:
    """An encoder (full fine-tune) and a LoRA decoder trained on one competition with the same folds, their blend,
    and the CSV `kagglemlc submit` wrote for each."""
    root = tmp_path_factory.mktemp("export")
    encoder = make_encoder(root / "bert", "bert")
    decoder = make_decoder(root / "llama", "llama")
    comp = root / "comp"
    enc_cfg = make_competition(
        comp,
        n_train=60,
        n_test=17,
        config={
            "competition": {"slug": SLUG},
            "model": {"name": str(encoder), "max_length": 32},
            "train": TRAIN,
            "name": "encoder",
            "output_dir": "runs/encoder",
        },
    )
    raw = yaml.safe_load(enc_cfg.read_text())
    raw |= {
        "name": "decoder",
        "output_dir": "runs/decoder",
        "model": {"name": str(decoder), "kind": "decoder", "max_length": 16},
        "adapter": {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
    }
    dec_cfg = comp / "decoder.yaml"
    dec_cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    for cfg in (enc_cfg, dec_cfg):
        _kagglemlc("run", cfg)
    _kagglemlc("ensemble", enc_cfg, dec_cfg, "--name", "mix")
    blend = comp / "runs" / "blend-mix" / "config.yaml"
    _kagglemlc("submit", blend)
    submissions = comp / "submissions"
    return {
        "comp": comp,
        "configs": {"encoder": enc_cfg, "decoder": dec_cfg, "blend-mix": blend},
        "csv": {name: _last_submission(submissions, name) for name in ("encoder", "decoder", "blend-mix")},
    }


def _kaggle_input(root: Path, comp: Path, bundle: Path) -> Path:
    """A folder laid out like /kaggle/input: the competition's test file and sample submission under its slug (no
    training file: code competitions' notebooks need none from there), the bundle's dataset beside it."""
    (root / SLUG).mkdir(parents=True)
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copy2(comp / name, root / SLUG / name)
    shutil.copytree(bundle / "dataset", root / "toy-bundle")
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with its size (files) and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


def test_bundle_holds_merged_folds_thresholds_and_a_notebook(experiments, tmp_path):
    out = export([experiments["configs"]["blend-mix"]], tmp_path / "bundle")
    dataset = out / "dataset"
    manifest = json.loads((dataset / "kagglemlc-bundle.json").read_text())
    assert manifest["submit"] == "blend-mix" and manifest["competition"] == SLUG
    assert manifest["blends"]["blend-mix"]["members"] == ["encoder", "decoder"]
    weights = yaml.safe_load(experiments["configs"]["blend-mix"].read_text())["meta"]["ensemble"]["weights"]
    assert manifest["blends"]["blend-mix"]["weights"] == weights
    assert manifest["experiments"]["decoder"] == {"kind": "decoder", "adapter": "lora", "merged": True,
                                                  "model": "fold0/model"}  # fmt: skip
    for k in range(3):
        merged = dataset / "decoder" / f"fold{k}" / "model"
        assert (merged / "model.safetensors").is_file() and not list(merged.glob("adapter_*"))
        assert (merged / "tokenizer.json").is_file()
        assert (dataset / "encoder" / f"fold{k}" / "model" / "model.safetensors").is_file()
    assert not (dataset / "decoder" / "base").exists()  # merged: no base stored
    for name in ("encoder", "decoder", "blend-mix"):
        assert (dataset / name / "thresholds.json").read_bytes() == (
            experiments["configs"]["encoder"].parent / "runs" / name / "thresholds.json"
        ).read_bytes()
        text = (dataset / name / "config.yaml").read_text()
        assert str(experiments["comp"]) not in text.split("meta:")[0]  # every path of the settings is the bundle's
    wheels = sorted(p.name.split("-")[0] for p in (dataset / "wheels").glob("*.whl"))
    assert wheels == ["bitsandbytes", "iterative_stratification", "kagglemlc", "matplotlib", "scikit_learn"]
    notebook = nbformat.read(out / "kernel" / "inference.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert "--no-index" in notebook.cells[2].source and "find-links" in notebook.cells[2].source
    assert (dataset / "inference.py").read_text().count("predict_bundle") == 2  # import + call
    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["enable_gpu"] is True
    assert kernel["competition_sources"] == [SLUG] and kernel["dataset_sources"] == [
        json.loads((dataset / "dataset-metadata.json").read_text())["id"]
    ]


def test_notebook_code_writes_the_submit_csv_for_each_in_process(experiments, tmp_path):
    """The notebook's own call, in this process: the quick check of what the Kaggle-environment test proves."""
    out = export(list(experiments["configs"].values()), tmp_path / "bundle")
    assert json.loads((out / "dataset" / "kagglemlc-bundle.json").read_text())["submit"] == "encoder"
    kaggle_input = _kaggle_input(tmp_path / "input", experiments["comp"], out)
    before = _snapshot(kaggle_input)
    for name, expected in experiments["csv"].items():
        working = tmp_path / "working" / name
        written = predict_bundle(kaggle_input / "toy-bundle", name, input_dir=kaggle_input, working=working)
        assert written == working / "submission.csv"
        assert written.read_bytes() == expected.read_bytes(), name
    assert _snapshot(kaggle_input) == before  # /kaggle/input is read-only on Kaggle: nothing written there


def test_unmerged_adapters_keep_the_base_once_and_predict_the_same(experiments, tmp_path):
    merged = export([experiments["configs"]["decoder"]], tmp_path / "merged")
    kept = export([experiments["configs"]["decoder"]], tmp_path / "kept", merge=False)
    dataset = kept / "dataset" / "decoder"
    assert (dataset / "base" / "model.safetensors").is_file()
    for k in range(3):
        assert (dataset / f"fold{k}" / "model" / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((dataset / "config.yaml").read_text())["model"]["name"] == "base"
    probs = {}
    for name, out in (("merged", merged), ("kept", kept)):
        kaggle_input = _kaggle_input(tmp_path / name / "input", experiments["comp"], out)
        predict_bundle(kaggle_input / "toy-bundle", input_dir=kaggle_input, working=tmp_path / name / "working")
        probs[name] = pd.read_parquet(tmp_path / name / "working" / "kagglemlc" / "decoder" / "test.parquet")
        csv = (tmp_path / name / "working" / "submission.csv").read_bytes()
        assert csv == experiments["csv"]["decoder"].read_bytes()
    np.testing.assert_allclose(probs["merged"][LABELS], probs["kept"][LABELS], atol=1e-5)



def test_several_gpus_predict_under_torchrun_one_process_each(experiments, tmp_path, monkeypatch, capfd):
    """With 2 GPUs the notebook launches `torchrun --nproc_per_node 2 -m kagglemlc predict ... --out`: here with
    two CPU processes (gloo), as the machine has no GPU. The CSV is still the one `submit` wrote."""
    out = export([experiments["configs"]["encoder"]], tmp_path / "bundle")
    kaggle_input = _kaggle_input(tmp_path / "input", experiments["comp"], out)
    monkeypatch.setattr("kagglemlc.stages.notebook.torch.cuda.device_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    written = predict_bundle(kaggle_input / "toy-bundle", input_dir=kaggle_input, working=tmp_path / "working")
    assert written.read_bytes() == experiments["csv"]["encoder"].read_bytes()
    err = capfd.readouterr().err
    assert "encoder: 2 GPUs, one process each" in err and err.count("rows/s") == 3  # the main process's lines


def test_seeds_and_full_fit_are_bundled_and_submitted_as_submit_does(tmp_path):
    """fold{k}/seed{s}/ models averaged per fold, full/seed{s}/ too, submission.use both: the mean of the two."""
    encoder = make_encoder(tmp_path / "bert", "bert")
    config = make_competition(
        tmp_path / "comp",
        n_train=45,
        n_test=9,
        config={
            "competition": {"slug": SLUG},
            "model": {"name": str(encoder), "max_length": 32},
            "train": {**TRAIN, "max_steps": 2, "seeds": [1, 2], "full_fit": True},
            "submission": {"use": "both"},
        },
    )
    _kagglemlc("run", config)
    expected = _last_submission(tmp_path / "comp" / "submissions", "run")
    out = export([config], tmp_path / "bundle")
    dataset = out / "dataset" / "run"
    assert sorted(str(p.relative_to(dataset)) for p in dataset.glob("**/model")) == [
        f"{folder}/seed{s}/model" for folder in ("fold0", "fold1", "fold2", "full") for s in (1, 2)
    ]
    kaggle_input = _kaggle_input(tmp_path / "input", tmp_path / "comp", out)
    written = predict_bundle(kaggle_input / "toy-bundle", input_dir=kaggle_input, working=tmp_path / "working")
    assert written.read_bytes() == expected.read_bytes()
    assert (tmp_path / "working" / "kagglemlc" / "run" / "full" / "test.parquet").is_file()

def test_competition_files_are_found_under_the_slug_else_by_name(tmp_path):
    (tmp_path / SLUG).mkdir()
    (tmp_path / SLUG / "test.csv").write_text("id\n")
    assert find_competition_file("test.csv", SLUG, tmp_path) == tmp_path / SLUG / "test.csv"
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deep" / "test_v2.csv").write_text("id\n")
    bundle = tmp_path / "bundle" / "run"
    bundle.mkdir(parents=True)
    (tmp_path / "bundle" / "kagglemlc-bundle.json").write_text("{}")
    (bundle / "test_v2.csv").write_text("id\n")  # a bundle's copy is never the competition's file
    assert find_competition_file("test_v2.csv", SLUG, tmp_path) == tmp_path / "elsewhere" / "deep" / "test_v2.csv"
    with pytest.raises(KaggleMLCError, match="test_v3.csv not found"):
        find_competition_file("test_v3.csv", SLUG, tmp_path)


def test_export_refuses_a_non_empty_folder_and_untrained_experiments(experiments, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(KaggleMLCError, match="not empty"):
        export([experiments["configs"]["encoder"]], tmp_path / "full")
    fresh = make_competition(tmp_path / "fresh")
    with pytest.raises(KaggleMLCError, match="run `kagglemlc train`"):
        export([fresh], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the main claim: a Kaggle-like environment, the notebook in a real Jupyter kernel ---------------------------


def _installed_closure(names: list[str]) -> list[Distribution]:
    """The installed distributions that `pip install NAMES` would put in a new environment: each with its
    requirements (markers evaluated, extras followed), transitively, at the versions installed here."""
    found: dict[str, Distribution] = {}
    todo, done = [(name, "") for name in names], set()
    while todo:
        name, extra = todo.pop()
        key = canonicalize_name(name)
        if (key, extra) in done:
            continue
        done.add((key, extra))
        dist = found.setdefault(key, distribution(name))
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
    return list(found.values())


@pytest.fixture(scope="session")
def kaggle_python(tmp_path_factory) -> Path:
    """A new virtual environment with what a Kaggle image has (and Jupyter), no kagglemlc; its python.

    The IMAGE packages are what `pip install` of them pinned to the versions installed here would put there (their
    dependency closure), hard-linked from this environment's site-packages instead of unpacked again (torch alone is
    750 MB); scripts outside site-packages are left out. Jupyter comes from the wheel cache."""
    venv = tmp_path_factory.mktemp("kaggle-image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    here = Path(sysconfig.get_paths()["purelib"])
    there = Path(subprocess.check_output([str(python), "-c", PURELIB], text=True).strip())
    for dist in _installed_closure(IMAGE):
        assert dist.files, f"{dist.metadata['Name']}: no RECORD of its files"
        for file in dist.files:
            source = Path(dist.locate_file(file))
            relative = os.path.relpath(source, here)
            if relative.startswith("..") or not source.is_file():
                continue  # console scripts and data files outside site-packages, bytecode not written here
            target = there / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another file system
                shutil.copy2(source, target)
    done = subprocess.run(  # Jupyter is not installed here: from the wheel cache (pip keeps what is linked)
        [str(python), "-m", "pip", "install", "--quiet", *JUPYTER], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for absent in ("kagglemlc", "iterstrat", "bitsandbytes"):
        probe = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True)
        assert probe.returncode != 0, f"{absent} must not be in the Kaggle-like environment"
    return python


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
RUN_NOTEBOOK = """
import sys, nbformat, nbclient
notebook = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3").execute()
nbformat.write(notebook, sys.argv[2])
"""


def _parameters(notebook: nbformat.NotebookNode, **values: str) -> None:
    """Sets the parameters cell's values (as papermill would): where this test's /kaggle/input and working are."""
    cell = notebook.cells[1]
    lines = cell.source.splitlines()
    for key, value in values.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
        lines[at] = f"{key} = {value!r}"
    cell.source = "\n".join(lines)


def test_exported_notebook_in_a_kaggle_like_environment_writes_the_submit_csv(experiments, kaggle_python, tmp_path):
    out = export(list(experiments["configs"].values()), tmp_path / "bundle")
    kaggle_input = _kaggle_input(tmp_path / "input", experiments["comp"], out)
    # nothing of this checkout, no package index, no pip config (its find-links), no network for the hub
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{kaggle_python.parent}:{env.get('PATH', '')}"
    for name, expected in experiments["csv"].items():
        notebook = nbformat.read(out / "kernel" / "inference.ipynb", as_version=4)
        working = tmp_path / "working" / name
        working.mkdir(parents=True)
        _parameters(notebook, SUBMIT=name, INPUT=str(kaggle_input), WORKING=str(working))
        source, executed = tmp_path / f"{name}.ipynb", tmp_path / f"{name}.executed.ipynb"
        nbformat.write(notebook, source)
        done = subprocess.run(
            [str(kaggle_python), "-c", RUN_NOTEBOOK, str(source), str(executed)],
            capture_output=True,
            text=True,
            env=env,
            cwd=working,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert (working / "submission.csv").read_bytes() == expected.read_bytes(), name
        shown = nbformat.read(executed, as_version=4).cells[-1].outputs[0]["data"]["text/plain"]
        assert "id" in shown  # the last cell shows the submission's head
    installed = subprocess.run(
        [str(kaggle_python), "-c", "import kagglemlc, iterstrat; print(kagglemlc.__file__)"],
        capture_output=True,
        text=True,
    )
    assert "site-packages" in installed.stdout, installed.stderr  # from the bundle's wheel, not this checkout
