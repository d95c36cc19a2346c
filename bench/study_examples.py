"""The example studies of the studies issue, on ../shared/data/goemotions, through `kagglemlc sweep`.

    python bench/study_examples.py                  # both studies
    python bench/study_examples.py --only sweep     # labels {2, 4, 8, 16} × rows {800, 1600, 2400} × MiniLM
    python bench/study_examples.py --only methods   # full vs LoRA vs QLoRA vs IA3 vs head-only on a tiny decoder

1. The seed-study shape: the 2/4/8/16 most frequent labels × a stratified 800/1,600/2,400 training rows, the
   bundled MiniLM (`minilm`), fold 0 of 5 per cell, 3 epochs (`train.epochs` as a one-value axis), everything else
   kagglemlc's defaults. Heatmap: macro-F1 (tuned on fold 0's validation rows) over labels × rows.
2. A method comparison: a randomly initialised 2-layer Qwen2-shaped decoder with a byte-level BPE tokenizer (the
   tests' `tiny_decoders.make_decoder(..., "qwen2")`: nothing can be downloaded here), `model.kind: decoder`,
   max_length 64, 8 labels, 1,600 rows, 2 epochs, with `adapter.method` none (full fine-tune) / lora / qlora / ia3 /
   head. Its scores are those of a random model (near chance): the comparison is of trainable parameters, train
   time and peak memory, and that every method runs through the same loop.

Runs go to --work (default /tmp/kagglemlc-studies); the PNGs and the study pages are copied to docs/studies/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _study(work: Path, name: str, spec: dict) -> tuple[Path, float]:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kagglemlc", "sweep", str(path)], check=True)
    return path, time.perf_counter() - start


def sweep(work: Path) -> tuple[Path, float]:
    return _study(
        work,
        "sweep",
        {
            "base": str(ROOT / "configs" / "goemotions.yaml"),
            "axes": {
                "data.labels": [2, 4, 8, 16],
                "data.train_rows": [800, 1600, 2400],
                "model.name": ["minilm"],
                "train.epochs": [3],
            },
            "folds": 1,
            "output_dir": str(work / "sweep"),
        },
    )


def methods(work: Path) -> tuple[Path, float]:
    from tiny_decoders import make_decoder

    decoder = work / "tiny-qwen2"
    if not (decoder / "config.json").is_file():
        make_decoder(decoder, "qwen2")
    base = work / "decoder-base.yaml"
    goemotions = yaml.safe_load((ROOT / "configs" / "goemotions.yaml").read_text())
    competition = {k: str((ROOT / "configs" / v).resolve()) for k, v in goemotions["competition"].items()}
    base.write_text(
        yaml.safe_dump(
            {
                "competition": competition,
                "model": {"name": str(decoder), "kind": "decoder", "max_length": 64},
                "train": {"epochs": 2, "batch_size": 16},
                "output_dir": str(work / "decoder-base-run"),
            },
            sort_keys=False,
        )
    )
    return _study(
        work,
        "methods",
        {
            "base": str(base),
            "axes": {
                "data.labels": [8],
                "data.train_rows": [1600],
                "adapter.method": ["none", "lora", "qlora", "ia3", "head"],
            },
            "folds": 1,
            "output_dir": str(work / "methods"),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kagglemlc-studies"))
    parser.add_argument("--only", choices=["sweep", "methods"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    docs = ROOT / "docs" / "studies"
    docs.mkdir(parents=True, exist_ok=True)
    for name, run in (("sweep", sweep), ("methods", methods)):
        if args.only not in (None, name):
            continue
        _, seconds = run(args.work)
        folder = args.work / name
        for picture in folder.glob("sweep*.png"):
            shutil.copy(picture, docs / picture.name.replace("sweep", name, 1))
        shutil.copy(folder / "sweep.csv", docs / f"{name}.csv")
        print(f"{name}: {seconds:.0f} s → {folder} (pictures and table copied to {docs})")


if __name__ == "__main__":
    main()
