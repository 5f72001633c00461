"""Anomaly detection: one score per image, higher is more anomalous; truth is normal (0) or
abnormal (1, any finding).

Validation scores fix the F1-optimal threshold and three calibrators (`none`: min-max scaling,
`platt`, `isotonic`). Each test condition gets AUROC with its patient-bootstrap interval,
calibration of each calibrator and the Platt risk-coverage curve; the clean condition also
gets AUPRC, sensitivity at 95% specificity, F1 at the threshold, and AUROC per finding (that
finding's images against all normal ones) and per slice value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from harness.calibration import CALIBRATORS, fit_calibrator
from harness.errors import XRBenchError
from harness.metrics import MetricValue, best_f1_threshold, binary_metric_fns, binary_metrics
from harness.significance import Comparison, delong_test, paired_bootstrap
from harness.tasks.base import TIE_RESAMPLES, Column, Evaluation, Fitted, Task, metric_row, slice_values

if TYPE_CHECKING:
    from harness.boards import Board

NAN = float("nan")


class AnomalyTask(Task):
    name: ClassVar[str] = "anomaly"
    primary_metrics: ClassVar[tuple[str, ...]] = ("auroc", "auprc", "sens@95spec")
    label_dtype: ClassVar[str] = "int64"
    leaderboard_columns: ClassVar[list[Column]] = [
        ("auroc", "AUROC", False),
        ("auprc", "AUPRC", False),
        ("sens@95spec", "Sens@95%Spec", False),
        ("ece_none", "ECE before", True),
        ("ece_platt", "ECE after (Platt)", True),
    ]

    def check_board(self, board: Board) -> None:
        if board.targets:
            raise XRBenchError(f"board {board.name}: an anomaly board lists no `targets` (those are for multilabel)")

    def truth(self, meta: pd.DataFrame, board: Board) -> np.ndarray:
        return meta["label"].to_numpy(dtype=np.int64, copy=True)

    def score_shape(self, n: int, board: Board) -> tuple[int, ...]:
        return (n,)

    def map_shape(self, n: int, board: Board) -> tuple[int | None, ...]:
        return (n, None, None)

    def map_channels(self, board: Board) -> tuple[str, ...] | None:
        return None

    def prediction_columns(self, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        return {"score": scores}

    def stored_scores(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return rows["label"].to_numpy(dtype=np.int64), rows["score"].to_numpy(dtype=np.float64)

    def fit_on_validation(self, truth: np.ndarray, scores: np.ndarray) -> Fitted:
        threshold = best_f1_threshold(truth, scores)
        calibrators = {kind: fit_calibrator(kind, scores, truth) for kind in CALIBRATORS}
        return Fitted(calibrators, threshold, {"threshold": threshold})

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
        groups = meta["patient_id"].to_numpy()
        out = Evaluation()
        names = None if detailed else ("auroc",)
        for m in binary_metrics(truth, scores, groups, fitted.threshold, board.bootstrap, board.seed, metrics=names):
            out.metrics.append(metric_row(condition, severity, m))
        if detailed:
            for name, mask in slice_masks(board, meta, truth).items():
                out.metrics += _slice_rows(board, truth[mask], scores[mask], groups[mask], name, condition, severity)
        for kind, calibrate in fitted.calibrators.items():
            out.add_calibration(kind, truth, calibrate(scores), len(truth), condition, severity)
        out.add_selective(truth, fitted.calibrators["platt"](scores), len(truth), condition, severity)
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
        """DeLong's test (AUROC only) and the paired patient bootstrap of the metric's difference.
        F1 needs a threshold and is not compared."""
        fns = binary_metric_fns(threshold=NAN)
        if metric not in fns or metric == "f1":
            raise ValueError(f"anomaly runs compare on auroc, auprc or sens@95spec, not {metric!r}")
        fn = fns[metric]
        a, b = fn(truth, scores_a), fn(truth, scores_b)
        p, lo, hi = paired_bootstrap(truth, scores_a, scores_b, groups, n_resamples, seed, metric=fn)
        delong = delong_test(truth, scores_a, scores_b) if metric == "auroc" else NAN
        return Comparison(a, b, a - b, delong, p, lo, hi, metric)

    def tie_p(
        self,
        truth: np.ndarray,
        leader: np.ndarray,
        other: np.ndarray,
        groups: np.ndarray,
        metric: str,
        columns: list[int] | None = None,
    ) -> float:
        """DeLong's test on AUROC; the paired patient bootstrap on the other metrics."""
        if metric == "auroc":
            return delong_test(truth, leader, other)
        return self.compare(truth, leader, other, groups, metric, TIE_RESAMPLES, 0).bootstrap_p


def slice_masks(board: Board, meta: pd.DataFrame, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of each clean-test slice: `finding=<name>` (that finding's images and all normal
    ones) and `<column>=<value>` for the board's slice columns."""
    findings = meta["findings"].str.split("|")
    names = sorted({f for fs in findings for f in fs} - {board.normal_label})
    masks = {f"finding={f}": (truth == 0) | findings.apply(lambda fs, f=f: f in fs).to_numpy() for f in names}
    for column in board.slices:
        values = slice_values(meta, column)
        for value in sorted(values.unique()):
            masks[f"{column}={value}"] = (values == value).to_numpy()
    return masks


def _slice_rows(
    board: Board,
    truth: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    name: str,
    condition: str,
    severity: int,
) -> list[dict]:
    """AUROC of one slice with its interval, or a flag when a class has too few images."""
    n_pos, n_neg = int(truth.sum()), int((truth == 0).sum())
    if min(n_pos, n_neg) < board.min_slice_class:
        flag = f"too few cases: {n_pos} abnormal, {n_neg} normal (minimum {board.min_slice_class} each)"
        return [metric_row(condition, severity, MetricValue("auroc", NAN, NAN, NAN, len(truth), n_pos, name), flag)]
    return [
        metric_row(condition, severity, m)
        for m in binary_metrics(
            truth, scores, groups, NAN, board.bootstrap, board.seed, slice_name=name, metrics=("auroc",)
        )
    ]
