"""Bootstrap metrics of every resample at once, from counts instead of copies.

A resample that draws a patient c times holds c copies of each of their images. Copying is
what scikit-learn needs, one resample at a time; here each metric is rebuilt from weighted
counts, which are sums of integers and therefore exact, and the last floating-point steps
repeat scikit-learn's own operations in its order. The values are bit-identical to scoring
the copied images (the tests check every metric against the copying loop), and at nih-cls
size (22,424 images, 14 findings, 1,000 resamples) the AUROC intervals take 0.75 s instead
of 9 s and the per-finding AUPRC intervals a few seconds instead of two minutes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from scipy.sparse import csr_matrix

from harness.scoring.resampling import Resamples

T = TypeVar("T")
# Counts of resampled images stay exact in float32 below 2**23 (sums of two stay below 2**24).
FLOAT32_EXACT_LIMIT = 2**23
# Resamples whose curves are built together: (chunk, distinct scores) arrays stay cache-sized.
CURVE_CHUNK = 64


def exact_dtype(resamples: Resamples) -> type[np.floating]:
    return np.float32 if resamples.largest < FLOAT32_EXACT_LIMIT else np.float64


def on_threads(fn: Callable[[int], T], n_columns: int) -> list[T]:
    """`fn` of each column, on threads: numpy and scipy release the GIL in the large array
    operations."""
    with ThreadPoolExecutor(max(1, min(n_columns, _cpus()))) as pool:
        return list(pool.map(fn, range(n_columns)))


def stacked(columns: list[np.ndarray]) -> np.ndarray:
    """Per-column resample values as (resamples, columns)."""
    return np.stack(columns, axis=1).reshape(-1, len(columns))


def aurocs(targets: np.ndarray, scores: np.ndarray, resamples: Resamples) -> np.ndarray:
    """AUROC of each column of `scores` (n, K) against `targets` (n, K) in each resample, as
    (resamples, K): the Mann-Whitney count of each resample, an exact sum of integers (see
    `_auroc_numerators`), over its exact numbers of positives and negatives."""
    if not len(resamples.counts):
        return np.empty((0, scores.shape[1]))
    positive = targets.astype(bool)
    n_pos, n_neg = resamples.class_totals(targets)
    weights = np.ascontiguousarray(resamples.counts.T, dtype=exact_dtype(resamples))  # (patients, resamples)
    column = lambda k: _auroc_numerators(scores[:, k], positive[:, k], resamples.patient, weights)  # noqa: E731
    return (stacked(on_threads(column, scores.shape[1])) / 2) / (n_pos * n_neg)


def _auroc_numerators(scores: np.ndarray, positive: np.ndarray, patient: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Twice the Mann-Whitney count of one column in every resample: each positive image, times
    its weight, adds the weighted negatives below its score plus those at or below it. Those
    sums are read at the positives' positions among the sorted negatives, from one sparse
    product (negatives summed per segment between positions) and a cumulative sum."""
    neg_scores = scores[~positive]
    order = np.argsort(neg_scores, kind="stable")
    neg_scores, neg_patient = neg_scores[order], patient[~positive][order]
    below = np.searchsorted(neg_scores, scores[positive], "left")
    at_or_below = np.searchsorted(neg_scores, scores[positive], "right")
    bounds = np.unique(np.concatenate([[0], below, at_or_below]))
    segment = np.searchsorted(bounds, np.arange(len(neg_patient)), "right") - 1
    per_segment = csr_matrix(
        (np.ones(len(neg_patient), weights.dtype), (segment, neg_patient)), shape=(len(bounds), len(weights))
    )
    cumulative = np.zeros((len(bounds), weights.shape[1]), weights.dtype)
    np.cumsum((per_segment @ weights)[:-1], axis=0, out=cumulative[1:])
    both = cumulative[np.searchsorted(bounds, below)]
    both += cumulative[np.searchsorted(bounds, at_or_below)]
    return np.einsum("ir,ir->r", both.astype(np.float64), weights[patient[positive]].astype(np.float64))


def average_precisions(targets: np.ndarray, scores: np.ndarray, resamples: Resamples) -> np.ndarray:
    """scikit-learn's `average_precision_score` of each column in each resample, (resamples, K)."""
    return curve_metrics(targets, scores, resamples, ("average_precision",))["average_precision"]


def sensitivities(targets: np.ndarray, scores: np.ndarray, resamples: Resamples, specificity: float) -> np.ndarray:
    """`metrics.sensitivity_at_specificity` (on scikit-learn's `roc_curve`) of each column in
    each resample, (resamples, K)."""
    return curve_metrics(targets, scores, resamples, ("sensitivity",), specificity)["sensitivity"]


def curve_metrics(
    targets: np.ndarray, scores: np.ndarray, resamples: Resamples, names: tuple[str, ...], specificity: float = 0.95
) -> dict[str, np.ndarray]:
    """`average_precision`, `sensitivity` (at `specificity`), `specificity` (at 95% sensitivity)
    and `f1_max`, those named, of each column in each resample, each (resamples, K), from one
    construction of the resampled curves."""
    readers = {
        "average_precision": _average_precisions,
        "sensitivity": lambda c: _sensitivities(c, specificity),
        "specificity": lambda c: _specificities(c, 0.95),
        "f1_max": _f1_maxima,
    }

    def column(k: int) -> dict[str, np.ndarray]:
        chunks = list(_resampled_curves(scores[:, k], targets[:, k].astype(bool), resamples))
        return {name: np.concatenate([readers[name](c) for c in chunks] or [np.empty(0)]) for name in names}

    columns = on_threads(column, scores.shape[1])
    return {name: stacked([c[name] for c in columns]) for name in names}


class Curves:
    """The points of several resamples' curves, concatenated: for each resample, at each
    distinct score it holds (highest first), the cumulative true positives `tps` and false
    positives `fps`, as scikit-learn's `_binary_clf_curve` gives them for the copied images.
    `lengths` is each resample's number of points."""

    def __init__(self, tps: np.ndarray, fps: np.ndarray, lengths: np.ndarray) -> None:
        self.tps, self.fps, self.lengths = tps, fps, lengths
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths

    def per_point(self, per_resample: np.ndarray) -> np.ndarray:
        return np.repeat(per_resample, self.lengths)


def _resampled_curves(scores: np.ndarray, positive: np.ndarray, resamples: Resamples) -> Iterator[Curves]:
    """`Curves` of the resamples, CURVE_CHUNK at a time. A distinct score is a point of a
    resample's curve when the resample holds an image with that score."""
    if not len(resamples.counts):
        return
    _, level = np.unique(-scores, return_inverse=True)  # 0: the highest score
    shape = (resamples.counts.shape[1], int(level.max()) + 1)
    dtype = exact_dtype(resamples)
    at_level = {
        kind: csr_matrix((np.ones(int(mask.sum()), dtype), (resamples.patient[mask], level[mask])), shape=shape)
        for kind, mask in (("pos", positive), ("neg", ~positive))
    }
    for start in range(0, len(resamples.counts), CURVE_CHUNK):
        weights = resamples.counts[start : start + CURVE_CHUNK].astype(dtype)
        pos, neg = (np.ascontiguousarray(weights @ at_level[kind]) for kind in ("pos", "neg"))
        present = (pos + neg) > 0
        tps = np.cumsum(pos, axis=1)[present].astype(np.float64)
        fps = np.cumsum(neg, axis=1)[present].astype(np.float64)
        yield Curves(tps, fps, present.sum(axis=1))


def _average_precisions(curves: Curves) -> np.ndarray:
    """scikit-learn's step sum: -sum(diff(recall) * precision[:-1]) over the reversed curve,
    term by term the same operations, each resample's terms summed as one contiguous array."""
    tps, fps = curves.tps, curves.fps
    precision = tps / (tps + fps)
    recall = tps / curves.per_point(tps[curves.ends - 1])
    previous = np.empty_like(recall)  # the recall of the next higher threshold; 0 above the first
    previous[1:] = recall[:-1]
    previous[curves.starts] = 0.0
    terms = ((previous - recall) * precision)[::-1].copy()  # each resample reversed, as sklearn sums
    total = len(terms)
    sums = np.array([np.sum(terms[total - e : total - s]) for s, e in zip(curves.starts, curves.ends, strict=True)])
    average = -sums
    return np.where(average > 0.0, average, 0.0)  # sklearn's max(0.0, .): -0.0 becomes 0.0


def _sensitivities(curves: Curves, specificity: float) -> np.ndarray:
    """The highest true-positive rate with false-positive rate <= 1 - specificity on
    scikit-learn's `roc_curve` (`_roc_points`; its prepended (0, 0) point never wins)."""
    kept, fpr, tpr = _roc_points(curves)
    admissible = kept & (fpr <= 1.0 - specificity + 1e-12)
    return np.maximum.reduceat(np.where(admissible, tpr, 0.0), curves.starts)


def _roc_points(curves: Curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept, fpr, tpr): scikit-learn's `roc_curve` drops a point inside a resample's curve
    where both second differences are zero (its `drop_intermediate`); rates over the
    resample's totals."""
    tps, fps = curves.tps, curves.fps
    kept = np.zeros(len(tps), dtype=bool)
    kept[1:-1] = (fps[2:] - 2 * fps[1:-1] + fps[:-2] != 0) | (tps[2:] - 2 * tps[1:-1] + tps[:-2] != 0)
    kept[curves.starts] = kept[curves.ends - 1] = True  # first and last points are always kept
    fpr = fps / curves.per_point(fps[curves.ends - 1])
    tpr = tps / curves.per_point(tps[curves.ends - 1])
    return kept, fpr, tpr


def _specificities(curves: Curves, sensitivity: float) -> np.ndarray:
    """`metrics.specificity_at_sensitivity`: one minus the lowest false-positive rate among the
    kept points whose true-positive rate reaches `sensitivity` (the last point always does)."""
    kept, fpr, tpr = _roc_points(curves)
    admissible = kept & (tpr >= sensitivity - 1e-12)
    return 1.0 - np.minimum.reduceat(np.where(admissible, fpr, np.inf), curves.starts)


def _f1_maxima(curves: Curves) -> np.ndarray:
    """`metrics.f1_max`: the largest F1 over the points of scikit-learn's precision-recall
    curve, with its operations (its appended point, recall 0, has F1 0 and never wins)."""
    precision = curves.tps / (curves.tps + curves.fps)
    recall = curves.tps / curves.per_point(curves.tps[curves.ends - 1])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return np.maximum.reduceat(f1, curves.starts)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
