"""Losses, a dict lookup on `train.loss`, with class weights from the fold's training rows.

    loss_fn = build_loss(cfg.train, task="multilabel", y_train=y[train_idx])
    loss = loss_fn(logits, targets)          # targets: (n, L) float 0/1 (or soft), one-hot for multiclass
    loss = loss_fn(logits, targets, weights) # weights: (n,) per-row loss weights (pseudo-labelled rows)

Multilabel / binary: bce, focal, asl (asymmetric loss, Ridnik et al. 2021). Multiclass: ce. Regression: mse, huber,
smooth_l1 on the raw outputs.
`class_weights`: none | balanced (pos_weight = negatives / positives per label) | sqrt (its square root).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from kagglemlc.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""(logits, targets, row weights or None) → the loss: the mean of the per-row losses, each times its row's weight."""


def _weighted(per_element: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
    """The mean loss; with row weights, the mean over rows of (row's mean over labels × its weight)."""
    if row_weights is None:
        return per_element.mean()
    return (per_element.mean(dim=1) * row_weights.to(per_element.device)).mean()


def class_weights(y_train: np.ndarray, task: str, mode: str) -> torch.Tensor | None:
    """Per-label positive weights (multilabel/binary) or per-class weights (multiclass); None for `none`."""
    if mode == "none":
        return None
    y = y_train.astype(np.float64)
    if task == "multiclass":
        counts = np.maximum(y.sum(axis=0), 1.0)
        weights = len(y) / (y.shape[1] * counts)
    else:
        pos = np.maximum(y.sum(axis=0), 1.0)
        weights = (len(y) - pos) / pos
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights, dtype=torch.float32)


def _bce(weights: torch.Tensor | None, cfg: TrainConfig, soft: bool = False) -> LossFn:
    def loss(logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
        pos_weight = None if weights is None else weights.to(logits.device)
        if row_weights is None:
            return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight)
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight, reduction="none")
        return _weighted(bce, row_weights)

    return loss


def _focal(weights: torch.Tensor | None, cfg: TrainConfig, soft: bool = False) -> LossFn:
    def loss(logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        pos_weight = None if weights is None else weights.to(logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        return _weighted((1 - p_t) ** cfg.focal_gamma * bce, row_weights)

    return loss


def _asl(weights: torch.Tensor | None, cfg: TrainConfig, soft: bool = False) -> LossFn:
    def loss(logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
        p = torch.sigmoid(logits.float())
        p_neg = (p - cfg.asl_clip).clamp(min=0) if cfg.asl_clip > 0 else p  # shift easy negatives to zero loss
        loss_pos = targets * torch.log(p.clamp(min=1e-8)) * (1 - p) ** cfg.asl_gamma_pos
        loss_neg = (1 - targets) * torch.log((1 - p_neg).clamp(min=1e-8)) * p_neg**cfg.asl_gamma_neg
        if weights is not None:
            loss_pos = loss_pos * weights.to(logits.device)
        return -_weighted(loss_pos + loss_neg, row_weights)

    return loss


def _ce(weights: torch.Tensor | None, cfg: TrainConfig, soft: bool = False) -> LossFn:
    def loss(logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
        weight = None if weights is None else weights.to(logits.device)
        # one-hot targets as class indices; soft targets (rows of probabilities) as they are
        target = targets if soft else targets.argmax(dim=1)
        if row_weights is None:
            return F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=cfg.label_smoothing)
        per_row = F.cross_entropy(
            logits.float(), target, weight=weight, label_smoothing=cfg.label_smoothing, reduction="none"
        )
        return _weighted(per_row[:, None], row_weights)

    return loss


def _regression(fn: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor | None, TrainConfig, bool], LossFn]:
    """A regression loss on the raw outputs (task: regression; no class weights)."""

    def build(weights: torch.Tensor | None, cfg: TrainConfig, soft: bool = False) -> LossFn:
        def loss(logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
            return _weighted(fn(logits.float(), targets.float(), reduction="none"), row_weights)

        return loss

    return build


# (class weights, train settings, soft targets?) → the loss; BCE-style losses read soft targets as they are
LOSSES: dict[str, Callable[[torch.Tensor | None, TrainConfig, bool], LossFn]] = {
    "bce": _bce,
    "focal": _focal,
    "asl": _asl,
    "ce": _ce,
    "mse": _regression(F.mse_loss),
    "huber": _regression(F.huber_loss),
    "smooth_l1": _regression(F.smooth_l1_loss),
}
REGRESSION_LOSSES = ("mse", "huber", "smooth_l1")


def build_loss(cfg: TrainConfig, task: str, y_train: np.ndarray, soft: bool = False) -> LossFn:
    """The configured loss; targets are the (n, L) 0/1 matrix (one-hot for multiclass), or soft targets in [0, 1]
    (`competition.soft_labels`: BCE-style losses take them as they are, cross-entropy as class probabilities)."""
    return LOSSES[cfg.loss](class_weights(y_train, task, cfg.class_weights), cfg, soft)
