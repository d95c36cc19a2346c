"""Probabilities from a model: length-sorted batches, inference mode, sharded over processes.

`predict_probs` is what training uses for validation too, so OOF and test predictions come from
one code path. Rows are sorted by length for speed and every probability is put back in its row's
place, so ids never get permuted.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from kagglemlc.engine.batching import Encodings, collate, sorted_batches


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass, sigmoid for multilabel and binary; regression: the scores as they are."""
    if task == "regression":
        return logits.float()
    return torch.softmax(logits.float(), dim=-1) if task == "multiclass" else torch.sigmoid(logits.float())


def process_batches(lengths: np.ndarray, batch_size: int, accelerator: Accelerator) -> list[np.ndarray]:
    """This process's share of the length-sorted inference batches: dealt round-robin, gathered back by position."""
    return sorted_batches(lengths, batch_size)[accelerator.process_index :: accelerator.num_processes]


def gather_results(results: list, accelerator: Accelerator) -> list:
    """Every process's results, on every process (the process's own list when there is one process)."""
    return gather_object(results) if accelerator.num_processes > 1 else results


def predict_probs(
    model: torch.nn.Module, enc: Encodings, rows: np.ndarray, accelerator: Accelerator, batch_size: int, task: str
) -> np.ndarray:
    """Probabilities for `rows` of `enc`, in the order of `rows`.

    Batches are dealt round-robin to the processes and gathered back by position, so with N
    processes every row is predicted exactly once, however uneven the last batch is.
    """
    mine = process_batches(enc.lengths[rows], batch_size, accelerator)
    pad = 8 if accelerator.device.type == "cuda" else None
    model.eval()
    results = []
    with torch.inference_mode(), accelerator.autocast():
        for positions in mine:
            batch = {k: v.to(accelerator.device) for k, v in collate(enc, rows[positions], pad).items()}
            results.append((positions, probabilities(model(**batch).logits, task).cpu().numpy()))
    results = gather_results(results, accelerator)
    n_out = results[0][1].shape[1] if results else 0
    out = np.full((len(rows), n_out), np.nan, dtype=np.float32)
    for positions, probs in results:
        out[positions] = probs
    return out
