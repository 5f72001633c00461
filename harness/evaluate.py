"""Everything measured on one run's test scores: metrics per condition and slice, calibration,
selective prediction and robustness. Pure functions from scores to table rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.boards import Board
from harness.calibration import CALIBRATORS, SMALL_N, Calibrator, calibration_metrics, reliability_bins
from harness.metrics import MetricValue, binary_metrics
from harness.selective import risk_coverage

RISK_COVERAGE_POINTS = 50


@dataclass
class Evaluation:
    metrics: list[dict] = field(default_factory=list)
    calibration_bins: list[dict] = field(default_factory=list)
    risk_coverage: list[dict] = field(default_factory=list)

    def extend(self, other: Evaluation) -> None:
        self.metrics += other.metrics
        self.calibration_bins += other.calibration_bins
        self.risk_coverage += other.risk_coverage

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return pd.DataFrame(self.metrics), pd.DataFrame(self.calibration_bins), pd.DataFrame(self.risk_coverage)


def slice_values(meta: pd.DataFrame, column: str) -> pd.Series:
    """A metadata column as slice values; `age_bin` is derived from `age`."""
    if column == "age_bin":
        return pd.cut(meta["age"].astype(float), [0, 40, 60, 200], right=False, labels=["<40", "40-59", "60+"]).astype(
            str
        )
    return meta[column].astype(str)


def metric_row(condition: str, severity: int, m: MetricValue, flag: str | None = None) -> dict:
    return {"condition": condition, "severity": severity, **vars(m), "flag": flag}


def _slice_metrics(
    board: Board,
    meta: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    condition: str,
    severity: int,
) -> list[dict]:
    rows = []
    findings = meta["findings"].str.split("|")
    finding_names = sorted({f for fs in findings for f in fs} - {board.normal_label})
    masks = {f"finding={f}": (labels == 0) | findings.apply(lambda fs, f=f: f in fs).to_numpy() for f in finding_names}
    for column in board.slices:
        values = slice_values(meta, column)
        for value in sorted(values.unique()):
            masks[f"{column}={value}"] = (values == value).to_numpy()
    for name, mask in masks.items():
        n_pos, n_neg = int(labels[mask].sum()), int((labels[mask] == 0).sum())
        if min(n_pos, n_neg) < board.min_slice_class:
            flag = f"too few cases: {n_pos} abnormal, {n_neg} normal (minimum {board.min_slice_class} each)"
            nan = float("nan")
            rows.append(
                metric_row(condition, severity, MetricValue("auroc", nan, nan, nan, int(mask.sum()), n_pos, name), flag)
            )
            continue
        for m in binary_metrics(
            labels[mask],
            scores[mask],
            groups[mask],
            threshold,
            board.bootstrap,
            board.seed,
            slice_name=name,
            metrics=("auroc",),
        ):
            rows.append(metric_row(condition, severity, m))
    return rows


def evaluate_condition(
    board: Board,
    meta: pd.DataFrame,
    scores: np.ndarray,
    threshold: float,
    calibrators: dict[str, Calibrator],
    condition: str,
    severity: int,
    detailed: bool,
) -> Evaluation:
    """Metrics of one condition. `detailed` (the clean condition) adds all binary metrics and slices;
    corrupted conditions get AUROC with its interval, calibration and risk-coverage."""
    labels = meta["label"].to_numpy(dtype=np.int64)
    groups = meta["patient_id"].to_numpy()
    out = Evaluation()
    names = None if detailed else ("auroc",)
    for m in binary_metrics(labels, scores, groups, threshold, board.bootstrap, board.seed, metrics=names):
        out.metrics.append(metric_row(condition, severity, m))
    if detailed:
        out.metrics += _slice_metrics(board, meta, labels, scores, groups, threshold, condition, severity)
    small = f"calibration measured on {len(labels)} images (< {SMALL_N})" if len(labels) < SMALL_N else None
    nan = float("nan")
    for kind in CALIBRATORS:
        probs = calibrators[kind](scores)
        for name, value in calibration_metrics(labels, probs).items():
            metric = MetricValue(f"{name}_{kind}", value, nan, nan, len(labels), int(labels.sum()))
            out.metrics.append(metric_row(condition, severity, metric, small))
        for b in reliability_bins(labels, probs):
            out.calibration_bins.append({"condition": condition, "severity": severity, "calibrator": kind, **vars(b)})
    coverage, risk, aurc = risk_coverage(labels, calibrators["platt"](scores))
    out.metrics.append(
        metric_row(condition, severity, MetricValue("aurc", aurc, nan, nan, len(labels), int(labels.sum())))
    )
    keep = np.unique(np.linspace(0, len(coverage) - 1, RISK_COVERAGE_POINTS).round().astype(int))
    out.risk_coverage += [
        {"condition": condition, "severity": severity, "coverage": float(coverage[i]), "risk": float(risk[i])}
        for i in keep
    ]
    return out


def robustness_summary(aurocs: dict[tuple[str, int], float], reference: dict[tuple[str, int], float] | None) -> dict:
    """Clean vs corrupted AUROC, worst case, and ImageNet-C style corruption errors.

    Error is 1 - AUROC. CE of a corruption: summed error over severities divided by the
    reference method's; mCE: mean CE over corruptions. Relative CE uses the errors' increase
    over clean instead (undefined when the reference does not degrade).
    """
    clean = aurocs[("clean", 0)]
    corrupted = {k: v for k, v in aurocs.items() if k[0] != "clean"}
    if not corrupted:
        return {"clean_auroc": clean}
    worst = min(corrupted, key=lambda k: corrupted[k])
    mean = float(np.mean(list(corrupted.values())))
    summary = {
        "clean_auroc": clean,
        "mean_corrupted_auroc": mean,
        "worst_condition": worst[0],
        "worst_severity": worst[1],
        "worst_auroc": corrupted[worst],
        "auroc_drop": clean - mean,
        "mce": None,
        "relative_mce": None,
    }
    if reference and all(k in reference for k in aurocs):
        names = sorted({k[0] for k in corrupted})
        ce, rel = [], []
        for name in names:
            keys = [k for k in corrupted if k[0] == name]
            err = sum(1 - aurocs[k] for k in keys)
            ref_err = sum(1 - reference[k] for k in keys)
            ce.append(err / ref_err if ref_err > 0 else np.nan)
            ref_increase = sum(reference[("clean", 0)] - reference[k] for k in keys)
            increase = sum(clean - aurocs[k] for k in keys)
            rel.append(increase / ref_increase if ref_increase > 0 else np.nan)
        summary["mce"] = float(np.mean(ce)) if not np.isnan(ce).any() else None
        summary["relative_mce"] = float(np.mean(rel)) if not np.isnan(rel).any() else None
    return summary
