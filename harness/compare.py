"""Are two methods really different? Paired tests on AUROC over the same test images.

- DeLong's test for two correlated ROC curves (fast algorithm of Sun & Xu, 2014);
- a paired patient-level bootstrap of the AUROC difference, which respects patient clustering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from harness.errors import XRBenchError
from harness.metrics import auroc, bootstrap_aurocs, cluster_resamples
from harness.multilabel import macro_auroc
from harness.store import ResultStore


@dataclass(frozen=True)
class Comparison:
    auroc_a: float
    auroc_b: float
    difference: float  # a - b
    delong_p: float
    bootstrap_p: float
    ci_low: float  # 95% paired-bootstrap interval of the difference
    ci_high: float


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


def paired_bootstrap(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(p-value, ci_low, ci_high) of AUROC(a) - AUROC(b), resampling patients."""
    deltas = [
        auroc(labels[idx], scores_a[idx]) - auroc(labels[idx], scores_b[idx])
        for idx in cluster_resamples(labels, groups, n_resamples, seed)
    ]
    return bootstrap_difference(np.array(deltas))


def bootstrap_difference(d: np.ndarray) -> tuple[float, float, float]:
    """Two-sided p-value of "no difference" and the 95% interval from resampled differences."""
    # (count + 1) / (n + 1): a resampling p-value is never exactly 0.
    p = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (len(d) + 1), (np.sum(d >= 0) + 1) / (len(d) + 1)))
    lo, hi = np.quantile(d, [0.025, 0.975])
    return float(p), float(lo), float(hi)


def compare_multilabel(
    targets: np.ndarray,
    logits_a: np.ndarray,
    logits_b: np.ndarray,
    groups: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    columns: list[int] | None = None,
) -> Comparison:
    """Macro AUROC of two multi-label runs on the same images, over the findings in `columns`
    (default: every finding with both classes), and a paired patient-bootstrap of the
    difference. DeLong's test is for one ROC curve per method and is not defined for a macro
    mean: `delong_p` is NaN."""
    usable = (targets.min(axis=0) != targets.max(axis=0)).nonzero()[0] if columns is None else np.array(columns)
    y, a, b = targets[:, usable], logits_a[:, usable], logits_b[:, usable]
    # Same seed and truth: both calls keep the same resamples, so the differences are paired.
    draws_a, draws_b = (bootstrap_aurocs(y, x, groups, n_resamples, seed) for x in (a, b))
    p, lo, hi = bootstrap_difference(draws_a.mean(axis=1) - draws_b.mean(axis=1))
    auc_a, auc_b = macro_auroc(y, a), macro_auroc(y, b)
    return Comparison(auc_a, auc_b, auc_a - auc_b, float("nan"), p, lo, hi)


def compare_scores(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    a, b = auroc(labels, scores_a), auroc(labels, scores_b)
    p_boot, lo, hi = paired_bootstrap(labels, scores_a, scores_b, groups, n_resamples, seed)
    return Comparison(a, b, a - b, delong_test(labels, scores_a, scores_b), p_boot, lo, hi)


def tied_with_leader(labels: np.ndarray, scores: dict[str, np.ndarray], alpha: float = 0.05) -> dict[str, float]:
    """DeLong p-value of each entry against the highest-AUROC entry; p >= alpha means tied.

    The leader itself gets p = 1.
    """
    aucs = {k: auroc(labels, s) for k, s in scores.items()}
    leader = max(aucs, key=lambda k: aucs[k])
    return {k: 1.0 if k == leader else delong_test(labels, scores[leader], s) for k, s in scores.items()}


def multilabel_arrays(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot truth, logits), each (N, K), of stored multi-label predictions."""
    return np.stack(predictions["target_labels"].to_numpy()), np.stack(predictions["scores"].to_numpy())


def evaluated_findings(store: ResultStore, run_id: str) -> list[int]:
    """Columns of a multi-label run's logits that its macro AUROC averaged: the findings with a
    clean-test AUROC (the others had too few cases), in the order of the run's `targets`."""
    targets = json.loads(store.run(run_id)["targets"] or "[]")
    rows = store.query(
        "SELECT slice FROM metrics WHERE run_id = ? AND condition = 'clean' AND metric = 'auroc' "
        "AND slice LIKE 'finding=%' AND value IS NOT NULL AND NOT isnan(value)",
        [run_id],
    )
    names = {s.removeprefix("finding=") for s in rows["slice"]}
    return [k for k, name in enumerate(targets) if name in names]


def compare_runs(
    store: ResultStore, run_a: str, run_b: str, condition: str = "clean", severity: int = 0, n_resamples: int = 2000
) -> Comparison:
    """Compare two stored runs on the same board, split and test images."""
    runs = {}
    for run_id in (run_a, run_b):
        try:
            runs[run_id] = store.run(run_id)
        except KeyError:
            raise XRBenchError(f"no run {run_id!r} in {store.path}") from None
        if runs[run_id]["status"] != "ok":
            raise XRBenchError(f"run {run_id} has status {runs[run_id]['status']}; only completed runs compare")
    a, b = runs[run_a], runs[run_b]
    for key in ("board", "split_sha256", "dataset_sha256"):
        if a[key] != b[key]:
            raise XRBenchError(f"runs differ in {key} ({a[key]} vs {b[key]}): their results are not comparable")
    sql = (
        "SELECT image_id, patient_id, label, score, scores, target_labels FROM predictions "
        "WHERE run_id = ? AND split = 'test' AND condition = ? AND severity = ? ORDER BY image_id"
    )
    pa, pb = (store.query(sql, [r, condition, severity]) for r in (run_a, run_b))
    if pa.empty or not pa["image_id"].equals(pb["image_id"]):
        raise XRBenchError(f"the runs do not share test predictions for condition {condition} severity {severity}")
    groups = pa["patient_id"].to_numpy()
    if pa["score"].isna().all():  # multi-label runs store one logit per finding in `scores`
        targets, logits_a = multilabel_arrays(pa)
        logits_b = multilabel_arrays(pb)[1]
        columns = evaluated_findings(store, run_a)
        return compare_multilabel(targets, logits_a, logits_b, groups, n_resamples=n_resamples, columns=columns)
    return compare_scores(
        pa["label"].to_numpy(), pa["score"].to_numpy(), pb["score"].to_numpy(), groups, n_resamples=n_resamples
    )
