"""Test-set metrics with patient-level (cluster) bootstrap confidence intervals.

Point estimates come from scikit-learn, except AUROC, computed by rank statistics and tested
against scikit-learn. The bootstrap resamples patients, not images, with
replacement, keeping all of a resampled patient's images: images of one patient are
correlated, and image-level resampling would make intervals too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_curve

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    n_pos: int
    slice: str = "all"


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC as the Mann-Whitney U statistic with midranks for ties.

    Equal to `sklearn.metrics.roc_auc_score` (the tests check this) and about 20 times
    faster on small inputs, which matters inside the bootstrap loop.
    """
    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float = 0.95) -> float:
    """Highest true-positive rate among thresholds whose false-positive rate is <= 1 - specificity."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict abnormal when score >= threshold) that maximises F1."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def binary_metric_fns(threshold: float) -> dict[str, MetricFn]:
    return {
        "auroc": auroc,
        "auprc": lambda y, s: float(average_precision_score(y, s)),
        "sens@95spec": sensitivity_at_specificity,
        "f1": lambda y, s: float(f1_score(y, s >= threshold)),
    }


def patient_draws(groups: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(patient index of each image, the drawn patient indices of each resample): patients
    drawn with replacement, as many as there are. Both bootstrap forms below use these draws,
    so they resample identically."""
    _, inverse = np.unique(groups, return_inverse=True)
    n_patients = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    return inverse, (rng.integers(0, n_patients, n_patients) for _ in range(n_resamples))


def patient_resamples(groups: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of patient-level bootstrap resamples: each drawn patient with all of their
    images."""
    inverse, draws = patient_draws(groups, n_resamples, seed)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    for drawn in draws:
        yield np.concatenate([members[g] for g in drawn])


def bootstrap_aurocs(
    targets: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int
) -> np.ndarray:
    """AUROC of every column of `scores` (n, K) against `targets` (n, K) in each patient-level
    resample, as (resamples kept, K); a resample in which a column loses a class is skipped.

    The resamples of `patient_resamples`, counted instead of copied: a patient drawn c times
    weighs c, and each column's scores are sorted once, so a resample costs O(n) per column
    instead of a sort (seven times faster at nih-cls size; equal to ranking the copies, which
    the tests check)."""
    inverse, draws = patient_draws(groups, n_resamples, seed)
    n_patients = int(inverse.max()) + 1
    columns = []
    for k in range(scores.shape[1]):
        order = np.argsort(scores[:, k], kind="stable")
        ordered = scores[order, k]
        tie_starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        columns.append((order, tie_starts, targets[order, k].astype(float)))
    kept = []
    for drawn in draws:
        weight = np.bincount(drawn, minlength=n_patients)[inverse].astype(float)
        row = []
        for order, tie_starts, positive in columns:
            w = weight[order]
            pos = np.add.reduceat(w * positive, tie_starts)
            neg = np.add.reduceat(w * (1.0 - positive), tie_starts)
            n_pos, n_neg = pos.sum(), neg.sum()
            if n_pos == 0 or n_neg == 0:
                break
            # Each positive beats the negatives below its score and ties half of those level with it.
            row.append(float((pos * (np.cumsum(neg) - 0.5 * neg)).sum() / (n_pos * n_neg)))
        else:
            kept.append(row)
    return np.array(kept).reshape(-1, scores.shape[1])


def cluster_resamples(labels: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Patient-level resamples (`patient_resamples`) holding both classes; the others are skipped."""
    for idx in patient_resamples(groups, n_resamples, seed):
        if labels[idx].min() != labels[idx].max():
            yield idx


def cluster_bootstrap(
    fns: dict[str, MetricFn],
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    n_resamples: int,
    seed: int,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals for each metric; resamples with a single class are skipped."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for idx in cluster_resamples(labels, groups, n_resamples, seed):
        y, s = labels[idx], scores[idx]
        for name, fn in fns.items():
            samples[name].append(fn(y, s))
    out = {}
    for name, values in samples.items():
        if not values:
            out[name] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
            out[name] = (float(lo), float(hi))
    return out


def binary_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    n_resamples: int,
    seed: int,
    slice_name: str = "all",
    metrics: tuple[str, ...] | None = None,
) -> list[MetricValue]:
    fns = binary_metric_fns(threshold)
    if metrics is not None:
        fns = {k: fns[k] for k in metrics}
    intervals = cluster_bootstrap(fns, labels, scores, groups, n_resamples, seed)
    n_pos = int(labels.sum())
    return [
        MetricValue(name, fn(labels, scores), *intervals[name], n=len(labels), n_pos=n_pos, slice=slice_name)
        for name, fn in fns.items()
    ]
