"""Are two methods really different? Paired tests over the same test images.

- DeLong's test for two correlated ROC curves (fast algorithm of Sun & Xu, 2014);
- a paired patient-level bootstrap of a metric's difference, which respects patient
  clustering (the same resampled patients score both methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from harness.scoring.metrics import MetricFn, auroc
from harness.scoring.resampling import cluster_resamples


@dataclass(frozen=True)
class Comparison:
    value_a: float
    value_b: float
    difference: float  # a - b
    delong_p: float  # NaN where DeLong's test does not apply (a macro mean, a metric other than AUROC)
    bootstrap_p: float
    ci_low: float  # 95% paired-bootstrap interval of the difference
    ci_high: float
    metric: str = "auroc"


def delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (k,) and their DeLong covariance matrix (k, k) for score vectors `scores` (k, n)."""
    scores = np.atleast_2d(scores)
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    m, n = pos.shape[1], neg.shape[1]
    aucs, v10, v01 = [], [], []
    for p, q in zip(pos, neg, strict=True):
        ranks_all = rankdata(np.concatenate([p, q]))
        ranks_pos, ranks_neg = rankdata(p), rankdata(q)
        aucs.append((ranks_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((ranks_all[:m] - ranks_pos) / n)  # per positive: fraction of negatives scored below
        v01.append(1.0 - (ranks_all[m:] - ranks_neg) / m)  # per negative: fraction of positives above
    cov = np.atleast_2d(np.cov(np.array(v10))) / m + np.atleast_2d(np.cov(np.array(v01))) / n
    return np.array(aucs), cov


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Two-sided p-value for equal AUROC of two score vectors on the same images."""
    aucs, cov = delong_covariance(labels, np.vstack([scores_a, scores_b]))
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if variance <= 1e-15:
        return 1.0 if abs(aucs[0] - aucs[1]) < 1e-12 else 0.0
    z = (aucs[0] - aucs[1]) / np.sqrt(variance)
    return float(2 * norm.sf(abs(z)))


def bootstrap_difference(d: np.ndarray) -> tuple[float, float, float]:
    """Two-sided p-value of "no difference" and the 95% interval from resampled differences."""
    # (count + 1) / (n + 1): a resampling p-value is never exactly 0.
    p = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (len(d) + 1), (np.sum(d >= 0) + 1) / (len(d) + 1)))
    lo, hi = np.quantile(d, [0.025, 0.975])
    return float(p), float(lo), float(hi)


def paired_bootstrap(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    metric: MetricFn = auroc,
) -> tuple[float, float, float]:
    """(p-value, ci_low, ci_high) of metric(a) - metric(b), resampling patients."""
    deltas = [
        metric(labels[idx], scores_a[idx]) - metric(labels[idx], scores_b[idx])
        for idx in cluster_resamples(labels, groups, n_resamples, seed)
    ]
    return bootstrap_difference(np.array(deltas))


def tied_with_leader(labels: np.ndarray, scores: dict[str, np.ndarray], alpha: float = 0.05) -> dict[str, float]:
    """DeLong p-value of each entry against the highest-AUROC entry; p >= alpha means tied.

    The leader itself gets p = 1.
    """
    aucs = {k: auroc(labels, s) for k, s in scores.items()}
    leader = max(aucs, key=lambda k: aucs[k])
    return {k: 1.0 if k == leader else delong_test(labels, scores[leader], s) for k, s in scores.items()}
