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
    token_type_ids: list[list[int]] | None = None  # text pairs, for models that read segment ids


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    segments: list[list[str]],
    max_length: int,
    budgets: list[int] | None = None,
) -> Encodings:
    """Token ids of text pairs: `texts` as the first segment, `segments` (one list of texts per further column)
    joined by the separator token as the second, with the tokenizer's own pair template ([CLS] A [SEP] B [SEP],
    segment ids 0 and 1 where the model reads them).

    Truncation: with `budgets` (one token count per segment), each segment keeps at most its budget of first tokens;
    without, `longest_first` as Hugging Face does it: the longest segments are cut until the whole fits max_length.
    """
    backend = tokenizer.backend_tokenizer
    special = tokenizer.num_special_tokens_to_add(pair=True)
    # the backend keeps the truncation and padding of the tokenizer's last call (post_process applies them too):
    # off while the pairs are built here, then as they were
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        ids, types = _pair_ids(tokenizer, texts, segments, max_length - special, budgets)
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**{k: v for k, v in padding.items() if k != "length" or v is not None})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    wants_types = "token_type_ids" in tokenizer.model_input_names
    return Encodings(ids, lengths, pad_id, tokenizer.padding_side, types if wants_types else None)


def pairs_unmarked(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer's pair template marks no boundary between the segments (a decoder's `<s> A B`): the
    caller puts the EOS between them."""
    return tokenizer.num_special_tokens_to_add(pair=True) <= tokenizer.num_special_tokens_to_add(pair=False)


def _pair_ids(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    segments: list[list[str]],
    room: int,
    budgets: list[int] | None,
) -> tuple[list[list[int]], list[list[int]]]:
    """(ids, segment ids) of every pair (`tokenize_pairs`); `room`: the tokens left beside the special ones."""
    backend = tokenizer.backend_tokenizer
    # a decoder's template (<s> A B) marks no boundary between the segments: its separator (or its EOS) goes between
    # them, the whole read as one text
    joined = pairs_unmarked(tokenizer)
    sep_token = tokenizer.sep_token or (tokenizer.eos_token if joined else None)
    sep = backend.encode(sep_token, add_special_tokens=False) if sep_token else None
    columns = [backend.encode_batch(list(column), add_special_tokens=False) for column in [texts, *segments]]
    seps = len(segments) - (0 if joined else 1)
    room = max(room - seps * (len(sep.ids) if sep is not None else 0), len(columns))
    ids, types = [], []
    for row in zip(*columns, strict=True):
        caps = budgets if budgets is not None else _longest_first([len(e.ids) for e in row], room)
        for encoding, cap in zip(row, caps, strict=True):
            encoding.truncate(cap)
        rest = row if joined else row[1:]
        parts = [rest[0]]
        for encoding in rest[1:]:
            parts += ([sep] if sep is not None else []) + [encoding]
        merged = type(row[0]).merge(parts, growing_offsets=True)
        if joined:
            pair = backend.post_process(merged, add_special_tokens=True)
        else:
            pair = backend.post_process(row[0], merged, add_special_tokens=True)
        ids.append(pair.ids)
        types.append(pair.type_ids)
    return ids, types


def _longest_first(lengths: list[int], room: int) -> list[int]:
    """Each segment's kept length when the longest are cut first until they fit `room` tokens together."""
    if sum(lengths) <= room:
        return lengths
    low, high = 0, max(lengths)  # the largest cap c with sum(min(length, c)) <= room
    while low < high:
        cap = (low + high + 1) // 2
        low, high = (cap, high) if sum(min(n, cap) for n in lengths) <= room else (low, cap - 1)
    kept = [min(n, low) for n in lengths]
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):  # the tokens left over: longest first
        if sum(kept) < room and lengths[j] > kept[j]:
            kept[j] += 1
    return kept


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


def tokenize_windows(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, stride: int, chunk: int = 4096
) -> tuple[Encodings, np.ndarray]:
    """Every text as windows of at most `max_length` tokens (its special tokens at both ends in each), starting
    every `stride` content tokens, the last one ending at the text's end: every token is in a window. Returns the
    windows and the text (index into `texts`) each belongs to; a short text is one window."""
    special = set(tokenizer.all_special_ids)
    ids: list[list[int]] = []
    owner: list[int] = []
    for start in range(0, len(texts), chunk):
        for i, seq in enumerate(tokenizer(texts[start : start + chunk], truncation=False, padding=False)["input_ids"]):
            lead = next((j for j, t in enumerate(seq) if t not in special), len(seq))
            trail = next((j for j, t in enumerate(reversed(seq)) if t not in special), 0)
            content, budget = seq[lead : len(seq) - trail], max(max_length - lead - trail, 1)
            starts = list(range(0, max(len(content) - budget, 0) + 1, stride))
            if starts[-1] + budget < len(content):
                starts.append(len(content) - budget)
            for first in starts:
                ids.append(seq[:lead] + content[first : first + budget] + seq[len(seq) - trail :])
                owner.append(start + i)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return Encodings(ids, lengths, pad_id, tokenizer.padding_side), np.asarray(owner, dtype=np.int64)


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
    types = None if enc.token_type_ids is None else torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        seq = enc.input_ids[row]
        span = slice(width - len(seq), width) if enc.padding_side == "left" else slice(0, len(seq))
        input_ids[i, span] = torch.as_tensor(seq, dtype=torch.long)
        attention[i, span] = 1
        if types is not None:
            types[i, span] = torch.as_tensor(enc.token_type_ids[row], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention}
    return batch if types is None else {**batch, "token_type_ids": types}


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
