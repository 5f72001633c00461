"""Multi-label classification: one logit per board target (finding); truth is multi-hot.

Per finding and as macro means, each with a patient-level bootstrap interval: AUROC, AUPRC,
sensitivity at 95% specificity, F1 at probability 0.5 (`f1@0.5`), and F1, precision and recall
at each finding's threshold chosen on validation (best F1; `f1`, `precision@val`,
`recall@val`; the thresholds stored as `threshold` rows); the
micro AUROC over every (image, finding) pair; the micro risk-coverage curve and its AURC; and
calibration of the logits by temperature scaling. Corrupted test sets get the macro AUROC.

A finding with fewer than `min_slice_class` positive or negative images in what is measured
gets a flag and no number, and is left out of the macro mean (whose flag names it). Macro
means resample patients once for all findings, so their intervals keep the findings'
correlation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import f1_score, precision_score, recall_score

from harness.boards.slices import slice_values
from harness.boards.tasks import MultilabelSpec
from harness.scoring import counted
from harness.scoring.calibration import fit_temperature
from harness.scoring.evaluation import TIE_RESAMPLES, Evaluation, Fitted, Task, metric_row
from harness.scoring.metrics import (
    COUNTED,
    ON_CURVES,
    MetricValue,
    auroc,
    average_precision,
    best_f1_threshold,
    bootstrap_aurocs,
    sensitivity_at_specificity,
)
from harness.scoring.resampling import Resamples
from harness.scoring.significance import Comparison, bootstrap_difference

if TYPE_CHECKING:
    from harness.boards.spec import Board

CALIBRATORS = ("none", "temperature")
METRIC_FNS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc,
    "auprc": average_precision,
    "sens@95spec": sensitivity_at_specificity,
}
THRESHOLD_METRICS = ("f1@0.5", "f1", "precision@val", "recall@val")  # decisions: logit >= threshold
DETAILED_METRICS = (*METRIC_FNS, *THRESHOLD_METRICS)
NAN = float("nan")


def thresholded(metric: str, thresholds: np.ndarray) -> np.ndarray:
    """The logit thresholds of a decision metric: 0 (probability 0.5) for `f1@0.5`, else the
    validation-chosen ones."""
    return np.zeros_like(thresholds) if metric == "f1@0.5" else thresholds


def decision_metric(metric: str, labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's F1, precision or recall (0 where undefined)."""
    fn = {"precision@val": precision_score, "recall@val": recall_score}.get(metric, f1_score)
    return float(fn(labels, predicted, zero_division=0))


def resampled_decisions(metric: str, labels: np.ndarray, predicted: np.ndarray, resamples: Resamples) -> np.ndarray:
    """F1, precision or recall of every column in every resample (R, K), from the counts of
    true, predicted and true-predicted positives: scikit-learn's formulas on the same integers."""
    per_patient = {
        name: np.stack(
            [
                np.bincount(resamples.patient, weights=m[:, k], minlength=resamples.counts.shape[1])
                for k in range(m.shape[1])
            ],
            axis=1,
        )
        for name, m in (("true", labels == 1), ("pred", predicted), ("tp", (labels == 1) & predicted))
    }
    total = {name: np.asarray(resamples.counts @ column) for name, column in per_patient.items()}
    numerator, denominator = {
        "precision@val": (total["tp"], total["pred"]),
        "recall@val": (total["tp"], total["true"]),
    }.get(metric, (2.0 * total["tp"], total["true"] + total["pred"]))
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0)


def validation_thresholds(truth: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per finding, the logit threshold of the best validation F1; 0 (probability 0.5) for a
    finding without both classes in validation."""
    return np.array(
        [
            best_f1_threshold(truth[:, k], logits[:, k]) if truth[:, k].min() != truth[:, k].max() else 0.0
            for k in range(truth.shape[1])
        ]
    )


def macro_auroc(targets: np.ndarray, logits: np.ndarray) -> float:
    """Mean AUROC over the findings (columns) that have both classes; NaN when none has."""
    usable = [k for k in range(targets.shape[1]) if targets[:, k].min() != targets[:, k].max()]
    return float(np.mean([auroc(targets[:, k], logits[:, k]) for k in usable])) if usable else NAN


def fit_calibrators(val_logits: np.ndarray, val_targets: np.ndarray) -> tuple[dict[str, Callable], float]:
    """Probabilities from logits: `none` is the plain sigmoid, `temperature` divides the logits
    by one temperature fitted on validation BCE. Returns the calibrators and the temperature."""
    temperature = fit_temperature(val_logits, val_targets)
    return {"none": expit, "temperature": lambda s: expit(s / temperature)}, temperature


def point_values(metric: str, y: np.ndarray, s: np.ndarray, cuts: np.ndarray | None) -> np.ndarray:
    """One value per column: a decision metric at its thresholds `cuts`, or a ranking metric."""
    if cuts is not None:
        return np.array([decision_metric(metric, y[:, j], s[:, j] >= cuts[j]) for j in range(y.shape[1])])
    return np.array([METRIC_FNS[metric](y[:, j], s[:, j]) for j in range(y.shape[1])])


def resampled_values(
    metrics: tuple[str, ...], y: np.ndarray, s: np.ndarray, cuts: dict[str, np.ndarray], resamples: Resamples
) -> dict[str, np.ndarray]:
    """Each metric of every column in every kept resample (R, K), counted, not copied; the
    curve metrics share one construction of the resampled curves."""
    on_curves = tuple(ON_CURVES[METRIC_FNS[m]] for m in metrics if m in METRIC_FNS and METRIC_FNS[m] in ON_CURVES)
    curves = counted.curve_metrics(y, s, resamples, on_curves) if on_curves else {}
    samples = {}
    for m in metrics:
        if m in cuts:
            samples[m] = resampled_decisions(m, y, s >= cuts[m][None, :], resamples)
        elif METRIC_FNS[m] in ON_CURVES:
            samples[m] = curves[ON_CURVES[METRIC_FNS[m]]]
        else:
            samples[m] = COUNTED[METRIC_FNS[m]](y, s, resamples)
    return samples


def multilabel_metrics(
    targets_true: np.ndarray,
    logits: np.ndarray,
    groups: np.ndarray,
    names: tuple[str, ...],
    n_resamples: int,
    seed: int,
    min_class: int,
    slice_name: str = "all",
    metrics: tuple[str, ...] = ("auroc",),
    per_finding: bool = False,
    thresholds: np.ndarray | None = None,
) -> list[tuple[MetricValue, str | None]]:
    """Macro means (slice `slice_name`) and, with `per_finding`, one row per finding (slice
    `finding=<name>`), each with a 95% patient-bootstrap interval, as (value, flag) pairs.
    `thresholds` (logits, one per finding) are needed by f1, precision and recall."""
    n_pos = targets_true.sum(axis=0)
    n_neg = len(targets_true) - n_pos
    enough = (n_pos >= min_class) & (n_neg >= min_class)
    usable, unusable = np.flatnonzero(enough), np.flatnonzero(~enough)
    left_out = [names[k] for k in unusable]
    y, s = targets_true[:, usable], logits[:, usable]
    cuts = {m: thresholded(m, np.asarray(thresholds)[usable]) for m in metrics if m in THRESHOLD_METRICS}
    point = {m: point_values(m, y, s, cuts.get(m)) for m in metrics}
    # Resamples in which a finding lost one of its classes are skipped for every finding.
    resamples = Resamples.keeping_both_classes(y, groups, n_resamples, seed) if len(usable) else None
    samples = resampled_values(metrics, y, s, cuts, resamples) if resamples is not None else {}
    n_any = int(y.any(axis=1).sum()) if len(usable) else 0
    rows: list[tuple[MetricValue, str | None]] = []
    for m in metrics:
        if not len(usable):
            flag = f"too few cases for every finding (minimum {min_class} positive and negative images)"
            rows.append((MetricValue(m, NAN, NAN, NAN, len(y), 0, slice_name), flag))
            continue
        draws = samples[m]
        lo, hi = np.quantile(draws.mean(axis=1), [0.025, 0.975]) if len(draws) else (NAN, NAN)
        flag = f"macro mean without {', '.join(left_out)} (too few cases)" if left_out else None
        rows.append((MetricValue(m, float(point[m].mean()), float(lo), float(hi), len(y), n_any, slice_name), flag))
        if per_finding:
            for j, k in enumerate(usable):
                lo, hi = np.quantile(draws[:, j], [0.025, 0.975]) if len(draws) else (NAN, NAN)
                finding = f"finding={names[k]}"
                value = MetricValue(m, float(point[m][j]), float(lo), float(hi), len(y), int(n_pos[k]), finding)
                rows.append((value, None))
            for k in unusable:
                flag = f"too few cases: {int(n_pos[k])} positive, {int(n_neg[k])} negative (minimum {min_class} each)"
                rows.append((MetricValue(m, NAN, NAN, NAN, len(y), int(n_pos[k]), f"finding={names[k]}"), flag))
    return rows


class MultilabelTask(MultilabelSpec, Task):
    def fit_on_validation(self, board: Board, truth: np.ndarray, scores: np.ndarray) -> Fitted:
        calibrators, temperature = fit_calibrators(scores, truth)
        return Fitted(
            calibrators, None, thresholds=validation_thresholds(truth, scores), run_values={"temperature": temperature}
        )

    def evaluate(
        self,
        board: Board,
        meta: pd.DataFrame,
        truth: np.ndarray,
        scores: np.ndarray,
        fitted: Fitted,
        condition: str,
        severity: int,
        detailed: bool,
    ) -> Evaluation:
        """Macro AUROC with its interval and calibration on every condition; the clean one adds
        the whole metric set (module docstring), per-finding rows and slices."""
        groups = meta["patient_id"].to_numpy()
        out = Evaluation()
        common = dict(n_resamples=board.bootstrap, seed=board.seed, min_class=board.min_slice_class)
        metrics = DETAILED_METRICS if detailed else ("auroc",)
        for value, flag in multilabel_metrics(
            truth,
            scores,
            groups,
            board.targets,
            metrics=metrics,
            per_finding=detailed,
            thresholds=fitted.thresholds,
            **common,
        ):
            out.metrics.append(metric_row(condition, severity, value, flag))
        if detailed:
            out.extend(micro_rows(truth, scores, groups, fitted, board, condition, severity))
            for column in board.slices:
                values = slice_values(meta, column)
                for value in sorted(values.unique()):
                    mask = (values == value).to_numpy()
                    for metric, flag in multilabel_metrics(
                        truth[mask], scores[mask], groups[mask], board.targets, slice_name=f"{column}={value}", **common
                    ):
                        out.metrics.append(metric_row(condition, severity, metric, flag))
        for kind, calibrate in fitted.calibrators.items():  # pooling every (image, finding) pair
            out.add_calibration(kind, truth.ravel(), calibrate(scores).ravel(), len(truth), condition, severity)
        return out

    def compare(
        self,
        truth: np.ndarray,
        scores_a: np.ndarray,
        scores_b: np.ndarray,
        groups: np.ndarray,
        metric: str,
        n_resamples: int,
        seed: int,
        columns: list[int] | None = None,
    ) -> Comparison:
        if metric != "auroc":
            raise ValueError(f"multi-label runs compare on their macro auroc, not {metric!r}")
        return compare_multilabel(truth, scores_a, scores_b, groups, n_resamples, seed, columns)

    def tie_p(
        self,
        truth: np.ndarray,
        leader: np.ndarray,
        other: np.ndarray,
        groups: np.ndarray,
        metric: str,
        columns: list[int] | None = None,
    ) -> float:
        """The paired patient bootstrap of the macro AUROC over the leader's evaluated findings."""
        return self.compare(truth, leader, other, groups, metric, TIE_RESAMPLES, 0, columns).bootstrap_p


def micro_rows(
    truth: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    fitted: Fitted,
    board: Board,
    condition: str,
    severity: int,
) -> Evaluation:
    """Over every (image, finding) pair: the micro AUROC with its patient-bootstrap interval,
    the risk-coverage curve (decisions at probability 0.5, the least confident pairs deferred
    first) and its AURC; and the validation thresholds, one row per finding."""
    out = Evaluation()
    pairs, pair_scores = truth.reshape(-1, 1), scores.reshape(-1, 1)
    pair_groups = np.repeat(groups, truth.shape[1])
    nan = float("nan")
    if pairs.min() != pairs.max():
        resamples = Resamples.keeping_both_classes(pairs, pair_groups, board.bootstrap, board.seed)
        draws = counted.aurocs(pairs, pair_scores, resamples)[:, 0]
        lo, hi = np.quantile(draws, [0.025, 0.975]) if len(draws) else (nan, nan)
        value = MetricValue(
            "micro_auroc", auroc(pairs[:, 0], pair_scores[:, 0]), float(lo), float(hi), len(truth), int(pairs.sum())
        )
        out.metrics.append(metric_row(condition, severity, value))
    out.add_selective(pairs[:, 0], fitted.calibrators["none"](pair_scores[:, 0]), len(truth), condition, severity)
    for k, (name, threshold) in enumerate(zip(board.targets, fitted.thresholds, strict=True)):
        row = MetricValue(
            "threshold", float(threshold), nan, nan, len(truth), int(truth[:, k].sum()), f"finding={name}"
        )
        out.metrics.append(metric_row(condition, severity, row))
    return out


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
    return Comparison(auc_a, auc_b, auc_a - auc_b, NAN, p, lo, hi)
