"""Blend math: weighted means of probability matrices (of probabilities, ranks or logs), and the weights that
maximise an objective on the out-of-fold rows.

    blend([p1, p2], [0.7, 0.3], method="rank")
    weights, value = fit_weights([oof1, oof2], objective)   # non-negative, summing to 1

Weights are found by a pattern search on the simplex (move weight between two members, halve the step when
no move helps) that starts from the best of every single member and the equal blend, so the blend's objective
is never below its best member's. Candidates are blended in float32 and scored concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations

import numpy as np
from scipy.stats import rankdata

from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.parallel import workers

METHODS = ("mean", "rank", "geometric")


SMALLEST_STEP = 1 / 64


def to_blend_space(probs: np.ndarray, method: str) -> np.ndarray:
    """Where blending is a weighted sum: probabilities (as they are: `_weighted_sum` computes in float64),
    ranks scaled to [0, 1], or log-probabilities."""
    if method == "rank":
        n = len(probs)
        return (rankdata(probs, axis=0) - 1) / max(n - 1, 1)
    if method == "geometric":
        return np.log(np.clip(probs, 1e-7, 1.0))
    return probs


def from_blend_space(values: np.ndarray, method: str) -> np.ndarray:
    return np.exp(values) if method == "geometric" else values


def blend(arrays: Sequence[np.ndarray], weights: Sequence[float] | None = None, method: str = "mean") -> np.ndarray:
    """Weighted mean of probability matrices (equal weights by default).

    Args:
        arrays: (n, L) matrices with the same rows and columns.
        weights: one non-negative weight per array, summing to 1.
        method: mean (of probabilities) | rank (of per-column ranks scaled to [0, 1]) | geometric.
    """
    if method not in METHODS:
        raise KaggleMLCError(f"blend method '{method}': choose one of {', '.join(METHODS)}")
    weights = np.full(len(arrays), 1 / len(arrays)) if weights is None else np.asarray(weights, dtype=np.float64)
    return from_blend_space(_weighted_sum(weights, [to_blend_space(a, method) for a in arrays]), method)


def _weighted_sum(weights: np.ndarray, spaces: Sequence[np.ndarray]) -> np.ndarray:
    """Σ w·z over the positive weights in float64, in order: what `sum` gives, without its temporaries."""
    total = part = None
    for w, z in zip(weights, spaces, strict=True):
        if w > 0 and total is None:
            total = np.multiply(z, w, dtype=np.float64)
        elif w > 0:
            part = np.multiply(z, w, out=part if part is not None else np.empty_like(total))
            total += part
    return total


def blend32(weights: np.ndarray, spaces: Sequence[np.ndarray], method: str) -> np.ndarray:
    """`blend(...).astype(np.float32)` bit for bit, from the members' blend spaces, a few labels at a time: the
    float64 temporaries stay in cache (the whole-matrix version mostly waits on memory at a million rows)."""
    out = np.empty(spaces[0].shape[::-1], dtype=np.float32).T  # label-major, like `read_probs`' arrays
    step = max(1, (1 << 18) // max(len(out), 1))  # labels per block: ~2 MB of float64
    for j in range(0, out.shape[1], step):
        out[:, j : j + step] = from_blend_space(_weighted_sum(weights, [z[:, j : j + step] for z in spaces]), method)
    return out


def fit_weights(
    oofs: Sequence[np.ndarray], objective: Callable[[np.ndarray], float], method: str = "mean"
) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 that maximise `objective(blend)` on the OOF probabilities.

    Returns:
        (weights, objective of the blend with those weights).
    """
    # candidates are blended in float32, label-major (half the memory traffic of `blend32`; the search only
    # compares them), the value returned is that of `blend32`'s exact blend
    spaces = [np.ascontiguousarray(to_blend_space(a, method).T, dtype=np.float32) for a in oofs]
    cache: dict[tuple[float, ...], float] = {}

    def blended(weights: np.ndarray) -> np.ndarray:
        total = None
        for w, z in zip(weights.astype(np.float32), spaces, strict=True):
            if w > 0 and total is None:
                total = z * w
            elif w > 0:
                total += z * w
        return from_blend_space(total, method).T

    def key(weights: np.ndarray) -> tuple[float, ...]:
        return tuple(np.round(weights, 9))

    def best_of(candidates: list[np.ndarray], pool: ThreadPoolExecutor) -> tuple[np.ndarray, float]:
        """The first best candidate and its value; the candidates not seen yet are scored concurrently."""
        todo = {key(w): w for w in candidates if key(w) not in cache}
        scores = pool.map(lambda w: objective(blended(w)), todo.values())
        cache.update(zip(todo, scores, strict=True))
        values = [cache[key(w)] for w in candidates]
        i = int(np.argmax(values))
        return candidates[i], values[i]

    m = len(oofs)
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        weights, value = best_of([*np.eye(m), np.full(m, 1 / m)], pool)
        step = 0.25
        while step >= SMALLEST_STEP:
            moves = []
            for i, j in permutations(range(m), 2):
                if weights[i] > 0:
                    move = weights.copy()
                    shift = min(step, weights[i])
                    move[i] -= shift
                    move[j] += shift
                    moves.append(move)
            best, best_value = best_of(moves, pool) if moves else (weights, value)
            if best_value > value + 1e-12:
                weights, value = best, best_value
            else:
                step /= 2
    return weights, objective(blend32(weights, [to_blend_space(a, method) for a in oofs], method))
