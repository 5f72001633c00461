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
    order = np.argsort(-confidence, kind="stable")
    cumulative = np.cumsum(errors[order])
    k = np.arange(1, len(labels) + 1)
    risk = cumulative / k
    return k / len(labels), risk, float(risk.mean())
