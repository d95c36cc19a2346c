"""Resumable training state and the best model, written so that a kill at any moment loses at most the steps
since the last checkpoint and never leaves a half-written folder in place.

    save_checkpoint(accelerator, fold_dir / CHECKPOINT_DIR, progress)     # model, optimiser, scheduler, RNG, ...
    progress = load_checkpoint(accelerator, fold_dir, retrain_command)    # None when there is nothing to resume
    save_best(accelerator, cfg, model, tokenizer, fold_dir / MODEL_DIR)   # what `load_trained` reads back

Everything goes through accelerate (`save_state` / `load_state`, `get_state_dict`), so a sharded (FSDP,
DeepSpeed) launch gathers the weights where it must; only the main process writes files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import file_digest, write_json
from kagglemlc.core.paths import (
    CHECKPOINT_DIR,
    CHECKPOINT_OLD,
    CHECKPOINT_TMP,
    CHECKSUMS_FILE,
    MODEL_TMP,
    PARTIAL_DIRS,
    PROGRESS_FILE,
)
from kagglemlc.models.build import save_trained


def replace_dir(tmp: Path, final: Path) -> None:
    """Swaps a fully written folder into place; the old one survives until the new one is there."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint folder: damage inside tensor data leaves headers intact and loads."""
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS_FILE}


class _Damaged(Exception):
    pass


def _verify_checksums(folder: Path) -> None:
    """Raises _Damaged naming the first file of a checkpoint whose bytes are not what was saved
    (checkpoints of kagglemlc versions before checksums have none to check)."""
    if not (folder / CHECKSUMS_FILE).is_file():
        return
    for name, digest in json.loads((folder / CHECKSUMS_FILE).read_text()).items():
        found = file_digest(folder / name)
        if found != digest:
            problem = "is missing" if found == "absent" else "does not match the checksum saved with it"
            raise _Damaged(f"{name} {problem}")


def trainable_only(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
    """Checkpoints keep the weights that train: a frozen base (4-bit or not) is rebuilt from model.name on resume."""
    for model, state in zip(models, weights):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trainable]:
            del state[key]


def remove_resume_state(folder: Path, everything: bool = False) -> None:
    """Drops a complete fold's resume state and half-written folders (they can be gigabytes); with
    `everything`, the whole fold folder (`train --restart`)."""
    for name in ["."] if everything else [CHECKPOINT_DIR, *PARTIAL_DIRS]:
        shutil.rmtree(folder / name, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, final: Path, progress: dict[str, Any]) -> None:
    """Model, optimiser, scheduler and RNG states (accelerate's `save_state`), checksums and `progress`, swapped
    into `final` when complete. Every process calls it."""
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's RNG file is in tmp before it moves
    if accelerator.is_main_process:
        write_json(tmp / CHECKSUMS_FILE, _checksums(tmp))
        write_json(tmp / PROGRESS_FILE, progress)
        replace_dir(tmp, final)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, folder: Path, retrain: str) -> dict[str, Any] | None:
    """Restores the states saved in `folder/checkpoint` (or what a kill between two renames left in
    checkpoint.old) and returns its progress; None when there is none. Half-written folders are removed first.

    Raises:
        KaggleMLCError: the checkpoint is damaged; the message names `retrain`, the command that trains it again.
    """
    accelerator.wait_for_everyone()  # no rank looks before the main one has removed what --restart drops
    ckpt = folder / CHECKPOINT_DIR
    if not (ckpt / PROGRESS_FILE).is_file():
        ckpt = folder / CHECKPOINT_OLD  # killed between the two renames of replace_dir
    if accelerator.is_main_process:  # what a killed run was writing (the experiment lock says it is gone)
        for name in PARTIAL_DIRS if ckpt.name == CHECKPOINT_DIR else (CHECKPOINT_TMP, MODEL_TMP):
            shutil.rmtree(folder / name, ignore_errors=True)
    if not (ckpt / PROGRESS_FILE).is_file():
        return None
    try:
        _verify_checksums(ckpt)
        accelerator.load_state(str(ckpt), strict=False)  # frozen weights are not in it
        return json.loads((ckpt / PROGRESS_FILE).read_text())
    except Exception as exc:  # a truncated or corrupted checkpoint: safetensors, torch.load, json all land here
        raise KaggleMLCError(
            f"{ckpt}: checkpoint is unreadable ({exc if isinstance(exc, _Damaged) else type(exc).__name__}); "
            f"`{retrain}` trains it again from scratch"
        ) from None


def save_best(
    accelerator: Accelerator, cfg: Config, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, final: Path
) -> None:
    """The model as `load_trained` reads it (adapter + head, the head alone, or all weights) and its tokenizer,
    swapped into `final`. Every process calls it: a sharded model's weights are gathered by all of them."""
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_trained(cfg, accelerator.unwrap_model(model), tmp, state)
        tokenizer.save_pretrained(tmp)
        replace_dir(tmp, final)
