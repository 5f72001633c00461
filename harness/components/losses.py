"""Multi-label training losses: plain, class-weighted and focal binary cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "bce-weighted", "focal", "focal-weighted")


def positive_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-finding weight of the positive term, negatives / positives in the training labels
    (N, K): a rare finding's positives count as much as its negatives. A finding without
    positives (or without negatives) gets 1."""
    positives = labels.sum(0)
    negatives = len(labels) - positives
    usable = (positives > 0) & (negatives > 0)
    return torch.where(usable, negatives / positives.clamp_min(1), torch.ones_like(positives))


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-finding weights inversely proportional to the finding's prevalence in the training
    labels (N, K), scaled to average 1 over the findings (a finding without positives counts
    as having one)."""
    inverse = len(labels) / labels.sum(0).clamp_min(1)
    return inverse / inverse.mean()


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float, alpha: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean focal loss (Lin et al., 2017): cross-entropy scaled by (1 - p_t)**gamma, positives
    weighted alpha and negatives 1 - alpha; alpha < 0 weighs both 1. `weights` (K,) scales
    each finding's column (`class_weights`)."""
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = probs * labels + (1 - probs) * (1 - labels)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * labels + (1 - alpha) * (1 - labels)) * loss
    if weights is not None:
        loss = loss * weights.to(loss.device)
    return loss.mean()


def multilabel_loss(
    name: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
) -> torch.Tensor:
    """The loss `name` (one of LOSSES) of (B, K) logits against multi-hot labels; `weights`
    (from `positive_weights` for `bce-weighted`, from `class_weights` for `focal-weighted`) are
    the training split's."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    if name in ("bce-weighted", "focal-weighted") and weights is None:
        raise ValueError(f"{name} needs weights from the training labels")
    if name == "bce-weighted":
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weights.to(logits.device))
    return focal_loss(logits, labels, gamma, alpha, weights if name == "focal-weighted" else None)
