"""Anomaly detection: one score per image, higher is more anomalous; truth is normal (0) or
abnormal (1, any finding).

Validation scores fix the F1-optimal threshold and three calibrators (`none`: min-max scaling,
`platt`, `isotonic`). Each test condition gets AUROC with its patient-bootstrap interval,
calibration of each calibrator and the Platt risk-coverage curve; the clean condition also gets
AUPRC, sensitivity at 95% specificity, specificity at 95% sensitivity, F1 at the threshold,
F1-max (optimistic: its threshold is chosen on the test set), and AUROC per finding (that
finding's images against all normal ones) and per slice value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.boards.slices import slice_values
from harness.boards.tasks import AnomalySpec
from harness.core.errors import XRBenchError
from harness.scoring.calibration import CALIBRATORS, fit_calibrator
from harness.scoring.evaluation import TIE_RESAMPLES, Evaluation, Fitted, Task, metric_row
from harness.scoring.metrics import MetricValue, best_f1_threshold, binary_metric_fns, binary_metrics
from harness.scoring.significance import Comparison, delong_test, paired_bootstrap

if TYPE_CHECKING:
    from harness.boards.spec import Board

NAN = float("nan")


class AnomalyTask(AnomalySpec, Task):
    def fit_on_validation(self, board: Board, truth: np.ndarray, scores: np.ndarray) -> Fitted:
        """The board's threshold: F1-optimal on validation (`best-f1`), or the
        `threshold_quantile` of the normal validation scores (`normal-quantile`, numpy's linear
        interpolation), which needs no abnormal validation image. Platt and isotonic
        calibration need both classes; without abnormal validation images only min-max
        scaling is fitted, and the risk-coverage curve (which reads Platt) is left out."""
        both = bool(truth.min() != truth.max())
        if board.threshold == "normal-quantile" and not (truth == 0).any():
            raise XRBenchError(f"board {board.name}: its validation split has no normal images to take a quantile of")
        if board.threshold == "normal-quantile":
            threshold = float(np.quantile(scores[truth == 0], board.threshold_quantile))
        elif not both:
            raise XRBenchError(
                f"board {board.name}: its validation split has no abnormal images, so no F1-optimal threshold; "
                f'set threshold = "normal-quantile" in the board file'
            )
        else:
            threshold = best_f1_threshold(truth, scores)
        kinds = CALIBRATORS if both else ("none",)
        calibrators = {kind: fit_calibrator(kind, scores, truth) for kind in kinds}
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
        if "platt" in fitted.calibrators:
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
            raise ValueError(f"anomaly runs compare on auroc, auprc, sens@95spec, spec@95sens or f1max, not {metric!r}")
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
