"""Selective prediction: how the error rate falls when the least confident cases are deferred."""

from __future__ import annotations

import numpy as np

RISK_COVERAGE_POINTS = 50  # points of a curve stored per condition


def risk_coverage(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coverage, risk and the area under the risk-coverage curve (AURC, lower is better).

    Predictions are `probs >= 0.5`, confidence is max(p, 1 - p); images are accepted from
    most to least confident, and risk at coverage k/N is the error rate among the first k.
    Ties in confidence are broken by image order, so the curve is deterministic.
    """
    confidence = np.maximum(probs, 1 - probs)
    errors = ((probs >= 0.5).astype(int) != labels).astype(float)
    coverage, risk = deferral_curve(errors, np.argsort(-confidence, kind="stable"))
    return coverage, risk, float(risk.mean())


def deferral_curve(errors: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage k/N and risk (the error rate of the first k) when decisions are accepted in
    `order` and the rest deferred."""
    k = np.arange(1, len(errors) + 1)
    return k / len(errors), np.cumsum(errors[order]) / k
