"""The exact per-label F1 search: each label's best F1 cut, what multilabel f1_macro / f1_weighted (and a binary
task's `f1`) tune, since there each label's F1 depends on its own cut only.

    cuts, f1s, positives = LabelF1(y, probs).fit()          # every label's best cut on all rows
    cuts = LabelF1(y, probs, fold).fit(held=2)[0]          # ... on every fold but 2, from the same sorts
    objective = BestF1(y, "f1_macro")                       # the value only, for many matrices of the same rows
    objective(probs) == LabelF1(y, probs).value("f1_macro")[1]

Lowering the threshold past negatives alone only adds false positives, so the best F1 cut (the highest among
equals) lies at a positive's score: the candidates are the distinct positive scores, and each candidate's counts
(the positives and all the rows scoring at least it) come from binary search in sorted scores
(`candidate_counts`), its F1 from those counts (`metrics.f1_counts`). Both classes run that one search:
`LabelF1` on every fold's sorted scores, with the cuts; `BestF1` only on the top scores that can hold the best
cut, without them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kagglemlc.core.parallel import workers
from kagglemlc.scoring.metrics import f1_counts, label_weights
from kagglemlc.scoring.sweep import above

PARALLEL_SCORES = 1 << 22
"""From this many scores on, `LabelF1` indexes labels in threads (below: the ensemble's weight search, which
scores its candidates in threads itself, and data where starting threads costs more than it saves)."""


def candidate_counts(ordered: list[np.ndarray], positives: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The candidate cuts of one label and their counts in each group of rows.

    Args:
        ordered: each group's scores, sorted ascending.
        positives: each group's positives' scores, sorted ascending.

    Returns:
        (the distinct positive scores ascending, (groups, candidates) positives scoring >= each,
        (groups, candidates) scores >= each).
    """
    every = positives[0] if len(positives) == 1 else np.sort(np.concatenate(positives))
    distinct = np.ones(len(every), dtype=bool)
    distinct[1:] = every[1:] != every[:-1]
    first = np.flatnonzero(distinct)
    candidates = every[first]
    # how many positives score >= each candidate: in one group, without a search
    at_least = (len(every) - first)[None] if len(positives) == 1 else _counts_at_least(positives, candidates)
    return candidates, at_least, _counts_at_least(ordered, candidates)


def _counts_at_least(groups: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """(groups, candidates) int32: how many of each group's sorted scores are >= each sorted candidate."""
    counts = np.empty((len(groups), len(candidates)), dtype=np.int32)
    for row, scores in zip(counts, groups, strict=True):
        np.subtract(len(scores), np.searchsorted(scores, candidates), out=row, casting="unsafe")
    return counts


class LabelF1:
    """Every label's scores and its positives' scores, each sorted ascending within every group of rows (fold).

    A cut's counts in any set of groups then come from binary search, so the F1 search on all folds and the
    one per held-out fold (the nested estimate) share one sort of each score; the candidates' counts per group
    are precomputed (`candidate_counts`).
    """

    def __init__(self, y: np.ndarray, probs: np.ndarray, group: np.ndarray | None = None):
        scores, truth = np.ascontiguousarray(probs.T), np.ascontiguousarray(y.T) == 1
        order = None if group is None else np.argsort(group, kind="stable")
        self.groups, starts = (
            (np.zeros(1, dtype=int), [0]) if order is None else np.unique(group[order], return_index=True)
        )
        parts = [slice(a, b) for a, b in zip(starts, [*starts[1:], len(probs)], strict=True)]
        self.dtype = scores.dtype

        def index(x: np.ndarray, t: np.ndarray) -> tuple:
            x, t = (x, t) if order is None else (x[order], t[order])
            ordered = [np.sort(x[part]) for part in parts]
            positives = [np.sort(x[part][t[part]]) for part in parts]
            candidates, positives_at_least, at_least = candidate_counts(ordered, positives)
            return ordered, positives, candidates, at_least, positives_at_least

        # labels are independent and numpy's sorts release the GIL: on large data, one label per core at a time
        if scores.size >= PARALLEL_SCORES and len(scores) > 1 and workers() > 1:
            with ThreadPoolExecutor(max_workers=workers()) as pool:
                indexed = list(pool.map(index, scores, truth))
        else:
            indexed = list(map(index, scores, truth))
        columns = list(zip(*indexed, strict=True)) or [()] * 5
        self.scores, self.positives, self.candidates, self.at_least, self.positives_at_least = map(list, columns)

    def fit(self, held: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each label's best F1 cut on every group but `held`.

        The cut is the midpoint to the next lower kept score (robust on test data, same result on these rows),
        as `sweep.best_cut` places it.

        Returns:
            (cuts, best F1s, positives) per label.
        """
        rows = slice(None) if held is None else self.groups != held
        n_labels = len(self.scores)
        cuts, best, positives = np.empty(n_labels), np.zeros(n_labels), np.zeros(n_labels, dtype=np.int64)
        for j in range(n_labels):
            ordered = [a for a, g in zip(self.scores[j], self.groups, strict=True) if g != held]
            tp, predicted = self.positives_at_least[j][rows].sum(axis=0), self.at_least[j][rows].sum(axis=0)
            positives[j] = tp[0] if len(tp) else 0
            if positives[j] == 0:  # predicting nothing is best: above every score, as `sweep.best_cut`
                cuts[j] = above(max(np.float64(a[-1]) for a in ordered if len(a)))
                continue
            candidates = self.candidates[j]
            f1 = f1_counts(tp, predicted, positives[j])
            if held is not None:  # a candidate that no kept positive scores exactly is no cut here
                f1[tp - np.append(tp[1:], 0) == 0] = -np.inf
            k = len(f1) - 1 - int(f1[::-1].argmax())  # the highest cut among equal F1s
            upper = np.float64(candidates[k])
            below = [a[i - 1] for a in ordered if (i := np.searchsorted(a, candidates[k])) > 0]
            lower = np.float64(max(below)) if below else upper  # the next lower kept score
            mid = (upper + lower) / 2
            cuts[j], best[j] = (mid if mid > lower else upper), f1[k]
        return cuts, best, positives

    def value(self, metric: str, held: Any = None) -> tuple[np.ndarray, float]:
        """(cuts, f1_macro or f1_weighted at them) of `fit(held)`."""
        cuts, best, positives = self.fit(held)
        return cuts, float(label_weights(metric, positives) @ best)

    def counts(self, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true positives, predicted, positives) of every label (rows) in every group (columns) with `cuts`."""
        shape = (len(self.scores), len(self.groups))
        tp, predicted, positives = (np.zeros(shape, dtype=np.int64) for _ in range(3))
        for j, cut in enumerate(cuts):
            cut = _at_least(cut, self.dtype)
            for g, (ordered, pos) in enumerate(zip(self.scores[j], self.positives[j], strict=True)):
                predicted[j, g] = len(ordered) - np.searchsorted(ordered, cut)
                tp[j, g], positives[j, g] = len(pos) - np.searchsorted(pos, cut), len(pos)
        return tp, predicted, positives


def _at_least(cut: float, dtype: np.dtype) -> Any:
    """The smallest `dtype` value >= cut: `scores >= cut` counts the same, and binary search needs no cast."""
    if not np.issubdtype(dtype, np.floating):
        return cut
    value = dtype.type(cut)
    return np.nextafter(value, dtype.type(np.inf)) if float(value) < float(cut) else value


class BestF1:
    """`LabelF1(y, probs).value(metric)[1]` for many probability matrices of the same rows: the value only, with
    the truth indexed once. What the ensemble's weight search scores each candidate blend with.

    Only the top scores can hold the best cut (`_best_f1`), so only those are sorted.
    """

    def __init__(self, y: np.ndarray, metric: str):
        self.rows = len(y)
        self.positives = [np.flatnonzero(t == 1) for t in np.ascontiguousarray(y.T)]
        self.weights = label_weights(metric, np.array([len(p) for p in self.positives]))

    def __call__(self, probs: np.ndarray) -> float:
        best = np.zeros(len(self.positives))
        for j, (x, positive) in enumerate(zip(probs.T, self.positives, strict=True)):
            if len(positive):  # no positive: F1 is 0 at any cut
                best[j] = self._best_f1(x, x[positive])
        return float(self.weights @ best)

    def _best_f1(self, x: np.ndarray, positive_scores: np.ndarray) -> float:
        """The best F1 over the cuts at the positives' scores, searched among those that can beat F1₀, the F1 of
        predicting the top P: F1 = 2TP / (P + predicted) ≤ 2P / (P + predicted), so those predict at most
        2P / F1₀ − P rows, the top of the scores. (Few, large numpy calls: the search runs this in threads.)"""
        n, p = self.rows, len(positive_scores)
        top = x  # the scores that can hold the best cut
        split = np.partition(x, n - p)  # [lower scores, the p-th highest, the p - 1 above it]
        at_top_p = split[n - p]
        tp_0 = np.count_nonzero(positive_scores >= at_top_p)
        most = n if tp_0 == 0 else min(n, int(np.ceil((p + np.count_nonzero(x >= at_top_p)) * p / tp_0)) - p + 1)
        if most < n // 2:  # (+1 above: rounding to spare)
            lower = np.partition(split[: n - p], n - most - 1)
            floor = lower[n - most - 1]  # the (most + 1)-th highest: a cut above it predicts <= most rows
            top = np.concatenate([lower[n - most :], split[n - p :]])
            positive_scores = positive_scores[positive_scores > floor]
        _, tp, predicted = candidate_counts([np.sort(top)], [np.sort(positive_scores)])
        return float(f1_counts(tp[0], predicted[0], p).max())
