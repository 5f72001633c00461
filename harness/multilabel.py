"""Multi-label boards: per-finding AUROC and AUPRC, their macro means with patient-level
bootstrap intervals, and calibration of the logits by temperature scaling.

A finding with fewer than `min_slice_class` positive or negative images in what is measured
gets a flag and no number, and is left out of the macro mean (whose flag names it). Macro
means resample patients once for all findings, so their intervals keep the findings'
correlation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from sklearn.metrics import average_precision_score

from harness.boards import Board
from harness.calibration import SMALL_N, calibration_metrics, fit_temperature, reliability_bins
from harness.evaluate import Evaluation, metric_row, slice_values
from harness.metrics import MetricValue, auroc, bootstrap_aurocs, patient_resamples

CALIBRATORS = ("none", "temperature")
METRIC_FNS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc,
    "auprc": lambda y, s: float(average_precision_score(y, s)),
}
NAN = float("nan")


def macro_auroc(targets: np.ndarray, logits: np.ndarray) -> float:
    """Mean AUROC over the findings (columns) that have both classes; NaN when none has."""
    usable = [k for k in range(targets.shape[1]) if targets[:, k].min() != targets[:, k].max()]
    return float(np.mean([auroc(targets[:, k], logits[:, k]) for k in usable])) if usable else NAN


def fit_calibrators(val_logits: np.ndarray, val_targets: np.ndarray) -> tuple[dict[str, Callable], float]:
    """Probabilities from logits: `none` is the plain sigmoid, `temperature` divides the logits
    by one temperature fitted on validation BCE. Returns the calibrators and the temperature."""
    temperature = fit_temperature(torch.from_numpy(val_logits), torch.from_numpy(val_targets).double())
    return {"none": expit, "temperature": lambda s: expit(s / temperature)}, temperature


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
) -> list[tuple[MetricValue, str | None]]:
    """Macro means (slice `slice_name`) and, with `per_finding`, one row per finding (slice
    `finding=<name>`), each with a 95% patient-bootstrap interval, as (value, flag) pairs."""
    n_pos = targets_true.sum(axis=0)
    n_neg = len(targets_true) - n_pos
    enough = (n_pos >= min_class) & (n_neg >= min_class)
    usable, unusable = np.flatnonzero(enough), np.flatnonzero(~enough)
    left_out = [names[k] for k in unusable]
    y, s = targets_true[:, usable], logits[:, usable]
    point = {m: np.array([METRIC_FNS[m](y[:, j], s[:, j]) for j in range(len(usable))]) for m in metrics}
    samples: dict[str, list[np.ndarray]] = {m: [] for m in metrics if m != "auroc"}
    for idx in patient_resamples(groups, n_resamples, seed) if len(usable) and samples else ():
        ys, ss = y[idx], s[idx]
        if (ys.min(axis=0) == ys.max(axis=0)).any():
            continue  # a finding lost one of its classes in this resample
        for m in samples:
            samples[m].append(np.array([METRIC_FNS[m](ys[:, j], ss[:, j]) for j in range(len(usable))]))
    if "auroc" in metrics and len(usable):
        samples["auroc"] = list(bootstrap_aurocs(y, s, groups, n_resamples, seed))
    n_any = int(y.any(axis=1).sum()) if len(usable) else 0
    rows: list[tuple[MetricValue, str | None]] = []
    for m in metrics:
        if not len(usable):
            flag = f"too few cases for every finding (minimum {min_class} positive and negative images)"
            rows.append((MetricValue(m, NAN, NAN, NAN, len(y), 0, slice_name), flag))
            continue
        draws = np.array(samples[m]).reshape(-1, len(usable))
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


def evaluate_multilabel_condition(
    board: Board,
    meta: pd.DataFrame,
    targets_true: np.ndarray,
    logits: np.ndarray,
    calibrators: dict[str, Callable],
    condition: str,
    severity: int,
    detailed: bool,
) -> Evaluation:
    """Metrics of one condition. `detailed` (the clean condition) adds AUPRC, per-finding rows
    and slices; every condition gets macro AUROC with its interval and calibration."""
    groups = meta["patient_id"].to_numpy()
    out = Evaluation()
    common = dict(n_resamples=board.bootstrap, seed=board.seed, min_class=board.min_slice_class)
    metrics = ("auroc", "auprc") if detailed else ("auroc",)
    for value, flag in multilabel_metrics(
        targets_true, logits, groups, board.targets, metrics=metrics, per_finding=detailed, **common
    ):
        out.metrics.append(metric_row(condition, severity, value, flag))
    if detailed:
        for column in board.slices:
            values = slice_values(meta, column)
            for value in sorted(values.unique()):
                mask = (values == value).to_numpy()
                for metric, flag in multilabel_metrics(
                    targets_true[mask],
                    logits[mask],
                    groups[mask],
                    board.targets,
                    slice_name=f"{column}={value}",
                    **common,
                ):
                    out.metrics.append(metric_row(condition, severity, metric, flag))
    # Calibration pools every (image, finding) pair.
    flat_true = targets_true.ravel()
    small = f"calibration measured on {len(targets_true)} images (< {SMALL_N})" if len(targets_true) < SMALL_N else None
    for kind, calibrate in calibrators.items():
        probs = calibrate(logits).ravel()
        for name, value in calibration_metrics(flat_true, probs).items():
            metric = MetricValue(f"{name}_{kind}", value, NAN, NAN, len(flat_true), int(flat_true.sum()))
            out.metrics.append(metric_row(condition, severity, metric, small))
        for b in reliability_bins(flat_true, probs):
            out.calibration_bins.append({"condition": condition, "severity": severity, "calibrator": kind, **vars(b)})
    return out
