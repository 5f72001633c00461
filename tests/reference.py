"""Direct computations from the definitions, shared by the tests that check the harness's
numbers against them. Nothing here calls a harness helper."""

from __future__ import annotations

import numpy as np


def pairwise_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + half the ties, over all pairs."""
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def patient_loop_resamples(groups: np.ndarray, n: int, seed: int):
    """The documented draws, written out: patients (sorted ids) drawn with replacement, as many
    as there are, from numpy's default generator; every image of a drawn patient, in order."""
    patients = sorted(set(groups.tolist()))
    images: dict = {p: [] for p in patients}
    for i, g in enumerate(groups.tolist()):
        images[g].append(i)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        drawn = rng.integers(0, len(patients), len(patients))
        yield np.array([i for k in drawn for i in images[patients[k]]])


def step_auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision: precision at each distinct threshold times the recall it adds."""
    total, previous = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        tp, fp = ((s >= t) & (y == 1)).sum(), ((s >= t) & (y == 0)).sum()
        recall = tp / y.sum()
        total += (recall - previous) * tp / (tp + fp)
        previous = recall
    return float(total)


def binned(labels: np.ndarray, probs: np.ndarray, edges: np.ndarray) -> list[tuple[int, float, float]]:
    """(count, fraction positive, mean probability) of each non-empty bin; a probability on an
    inner edge belongs to the bin below it."""
    index = np.digitize(probs, edges[1:-1], right=True)
    return [
        (int((index == b).sum()), float(labels[index == b].mean()), float(probs[index == b].mean()))
        for b in range(len(edges) - 1)
        if (index == b).any()
    ]


def calibration_errors(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    uniform = binned(labels, probs, np.linspace(0, 1, n_bins + 1))
    mass_edges = np.quantile(probs, np.linspace(0, 1, n_bins + 1))
    mass_edges[0], mass_edges[-1] = 0.0, 1.0
    mass = binned(labels, probs, mass_edges)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    return {
        "ece": sum(c / len(probs) * abs(a - p) for c, a, p in uniform),
        "adaptive_ece": sum(c / len(probs) * abs(a - p) for c, a, p in mass),
        "mce": max(abs(a - p) for _, a, p in uniform),
        "brier": float(np.mean((probs - labels) ** 2)),
        "nll": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))),
    }


def aurc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean risk over coverages 1/N..1, most confident first, ties in image order."""
    confidence = np.maximum(probs, 1 - probs)
    wrong = (probs >= 0.5).astype(int) != labels
    order = sorted(range(len(labels)), key=lambda i: -confidence[i])  # sorted() is stable
    errors, risks = 0, []
    for k, i in enumerate(order, start=1):
        errors += int(wrong[i])
        risks.append(errors / k)
    return float(np.mean(risks))


def region_aupro(scores: list[np.ndarray], truth: list[np.ndarray], limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to FPR `limit`, divided by `limit`.

    At every distinct score t (highest first): FPR = negative pixels >= t over all negative
    pixels; PRO = the mean over connected ground-truth regions (8-connected, scipy) of the
    fraction of the region's pixels >= t. Trapezoids from (0, 0), interpolated at the limit."""
    from scipy import ndimage

    regions = []
    for s, t in zip(scores, truth, strict=True):
        labels, n = ndimage.label(t, structure=np.ones((3, 3)))
        regions += [np.sort(s[labels == k]) for k in range(1, n + 1)]
    negatives = np.sort(np.concatenate([s[~t] for s, t in zip(scores, truth, strict=True)]))
    thresholds = np.unique(np.concatenate([s.ravel() for s in scores]))[::-1]
    fpr = (len(negatives) - np.searchsorted(negatives, thresholds, side="left")) / len(negatives)
    pro = np.mean([(len(r) - np.searchsorted(r, thresholds, side="left")) / len(r) for r in regions], axis=0)
    area, x0, y0 = 0.0, 0.0, 0.0
    for x1, y1 in zip(fpr, pro, strict=True):
        if x1 > limit:
            return float((area + (limit - x0) * (y0 + y0 + (limit - x0) / (x1 - x0) * (y1 - y0)) / 2) / limit)
        area += (x1 - x0) * (y0 + y1) / 2
        x0, y0 = x1, y1
    return float(area / limit)
