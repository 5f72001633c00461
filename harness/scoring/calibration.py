"""Calibration of anomaly scores and its measurement.

Anomaly scores are not probabilities. Calibrators are fitted on the validation split only and
applied to test scores:
- `none`: the naive min-max normalisation many papers use (validation minimum and maximum,
  clipped to [0, 1]): the "before" in before/after;
- `platt`: logistic regression on the standardised score;
- `isotonic`: monotone regression, clipped to [0, 1].
Multi-label logits get temperature scaling (`fit_temperature`).

Calibration is measured on P(abnormal): reliability bins compare the mean predicted
probability with the fraction of abnormal images in each bin (scikit-learn's binning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

CALIBRATORS = ("none", "platt", "isotonic")
N_BINS = 15
SMALL_N = 300  # below this many images a calibration estimate is flagged as unreliable

Calibrator = Callable[[np.ndarray], np.ndarray]


def fit_calibrator(kind: str, val_scores: np.ndarray, val_labels: np.ndarray) -> Calibrator:
    """Fit on validation scores; the returned function maps any scores to probabilities."""
    if kind == "none":
        lo, hi = float(val_scores.min()), float(val_scores.max())
        span = hi - lo if hi > lo else 1.0
        return lambda s: np.clip((s - lo) / span, 0.0, 1.0)
    mean, std = float(val_scores.mean()), float(val_scores.std()) or 1.0
    if kind == "platt":
        model = LogisticRegression(C=1e6).fit(((val_scores - mean) / std)[:, None], val_labels)
        return lambda s: model.predict_proba(((s - mean) / std)[:, None])[:, 1]
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(val_scores, val_labels)
        return lambda s: iso.predict(s)
    raise ValueError(f"unknown calibrator {kind!r}; known: {CALIBRATORS}")


def fit_temperature(val_logits: np.ndarray, val_targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """One temperature for multi-label logits, minimising validation BCE (LBFGS on log T)."""
    import torch

    keep = torch.from_numpy(np.ones(val_targets.shape, bool) if mask is None else np.asarray(mask, bool))
    log_t = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    logits = torch.as_tensor(val_logits, dtype=torch.float64)[keep]
    targets = torch.as_tensor(val_targets, dtype=torch.float64)[keep]
    optimizer = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


@dataclass(frozen=True)
class ReliabilityBin:
    index: int
    lower: float
    upper: float
    mean_confidence: float
    accuracy: float  # fraction of abnormal images in the bin
    count: int


def reliability_bins(
    labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS, adaptive: bool = False
) -> list[ReliabilityBin]:
    """Equal-width bins (or equal-mass bins when `adaptive`); empty bins are omitted."""
    if adaptive:
        edges = np.quantile(probs, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], probs)  # the binning of sklearn.calibration.calibration_curve
    bins = []
    for b in range(n_bins):
        members = ids == b
        if members.any():
            bins.append(
                ReliabilityBin(
                    b,
                    float(edges[b]),
                    float(edges[b + 1]),
                    float(probs[members].mean()),
                    float(labels[members].mean()),
                    int(members.sum()),
                )
            )
    return bins


def expected_calibration_error(bins: list[ReliabilityBin]) -> float:
    total = sum(b.count for b in bins)
    return float(sum(b.count / total * abs(b.accuracy - b.mean_confidence) for b in bins))


def maximum_calibration_error(bins: list[ReliabilityBin]) -> float:
    return float(max(abs(b.accuracy - b.mean_confidence) for b in bins))


def calibration_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    bins = reliability_bins(labels, probs)
    return {
        "ece": expected_calibration_error(bins),
        "adaptive_ece": expected_calibration_error(reliability_bins(labels, probs, adaptive=True)),
        "mce": maximum_calibration_error(bins),
        "brier": float(brier_score_loss(labels, probs)),
        "nll": float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1])),
    }
