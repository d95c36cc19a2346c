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


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    chunk: int = 4096,
    truncation: str = "right",
    head_fraction: float = 0.25,
) -> Encodings:
    """Token ids of every text, at most `max_length` of them, unpadded.

    `truncation` says which tokens a longer text keeps: right — its first ones (the tokenizer's own truncation),
    left — its last ones, head_tail — the first `head_fraction` of the budget and the last ones for the rest (long
    essays and threads: the opening and the conclusion carry most). The tokenizer's special tokens at either end
    ([CLS] ... [SEP], <s> ... </s>, a BOS) are always kept.
    """
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        if truncation == "right":
            out = tokenizer(part, truncation=True, max_length=max_length, padding=False)["input_ids"]
        else:
            special = set(tokenizer.all_special_ids)
            full = tokenizer(part, truncation=False, padding=False)["input_ids"]
            out = [_cut(seq, max_length, special, truncation, head_fraction) for seq in full]
        ids.extend(out)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encodings(ids, np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), pad_id, tokenizer.padding_side)


def _cut(seq: list[int], max_length: int, special: set[int], truncation: str, head_fraction: float) -> list[int]:
    """`seq` cut to `max_length` tokens, its leading and trailing special tokens kept (see `tokenize`)."""
    if len(seq) <= max_length:
        return seq
    lead = next((i for i, t in enumerate(seq) if t not in special), len(seq))
    trail = next((i for i, t in enumerate(reversed(seq)) if t not in special), 0)
    content = seq[lead : len(seq) - trail]
    budget = max(max_length - lead - trail, 0)
    head = round(budget * head_fraction) if truncation == "head_tail" else 0
    tail = budget - head
    kept = content[:head] + (content[len(content) - tail :] if tail else [])
    return seq[:lead] + kept + seq[len(seq) - trail :]


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
