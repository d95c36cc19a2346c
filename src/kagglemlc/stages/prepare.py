"""`kagglemlc prepare`: validates the competition files and writes the K-fold split.

    kagglemlc prepare configs/demo.yaml     # → <output_dir>/folds.parquet (id, fold) + a table of positives per fold

The split itself is `kagglemlc.data.folds.make_folds` (train makes the folds the same way when they are absent);
here the `auto` settings are also chosen and shown when the model is at hand.
"""

from __future__ import annotations

from pathlib import Path

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.folds import make_folds
from kagglemlc.models.build import build_tokenizer
from kagglemlc.models.defaults import apply_defaults


def prepare(cfg: Config) -> Path:
    """Validates the competition files, splits train into folds and writes `folds.parquet`.

    Returns:
        The path of folds.parquet.
    """
    return make_folds(cfg, lambda texts: _choose_defaults(cfg, texts))


def _choose_defaults(cfg: Config, texts: list[str]) -> None:
    """Shows the `auto` settings' values (max_length from these texts) where the model is at hand: prepare
    itself never needs the model, so without it they are chosen by `train`."""
    try:
        tokenizer = build_tokenizer(cfg)
    except KaggleMLCError:
        info(f"model '{cfg.model.name}' not found here: its `auto` settings (max_length ...) are chosen by train")
        return
    apply_defaults(cfg, texts, tokenizer)
