"""Tokenise once, then batch rows of similar length so that padding costs almost nothing.

    enc = tokenize(tokenizer, texts, max_length=128)
    for batch_rows in length_grouped_batches(enc.lengths, batch_size=32, seed=42, epoch=0): ...
    for batch_rows in sorted_batches(enc.lengths, batch_size=256): ...      # inference

Training batches: rows are shuffled, cut into mega-batches of 64 batches, sorted by length inside
each mega-batch, then the batches are shuffled — randomness of order stays, padding nearly vanishes.
The plan depends only on (seed, epoch), which is what makes a resumed run replay the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

MEGA_BATCH = 64


@dataclass
class Encodings:
    input_ids: list[list[int]]
    lengths: np.ndarray
    pad_id: int
    padding_side: str = "right"


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, chunk: int = 4096) -> Encodings:
    """Token ids of every text, truncated to `max_length`, unpadded."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        out = tokenizer(texts[start : start + chunk], truncation=True, max_length=max_length, padding=False)
        ids.extend(out["input_ids"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encodings(ids, np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), pad_id, tokenizer.padding_side)


def collate(enc: Encodings, rows: np.ndarray, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pads the given rows to the longest among them (on the tokenizer's padding side)."""
    width = int(enc.lengths[rows].max())
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(rows), width), enc.pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        seq = enc.input_ids[row]
        span = slice(width - len(seq), width) if enc.padding_side == "left" else slice(0, len(seq))
        input_ids[i, span] = torch.as_tensor(seq, dtype=torch.long)
        attention[i, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[np.ndarray]:
    """Indices (into `lengths`) of every training batch of one epoch; deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * MEGA_BATCH
        order = np.concatenate(
            [
                chunk[np.argsort(-lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, range(mega, len(order), mega))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches, longest first (a memory problem shows up at once, not at the end)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
