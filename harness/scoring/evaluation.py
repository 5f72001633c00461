"""How a task is scored: what it fits on validation scores (threshold, calibrators,
temperature), its per-condition evaluation and its paired comparison
test (its leaderboard columns are in `harness.core.metrics`); and the rows scoring produces (`Evaluation`).

What the task asks of a method (labels, shapes, stored columns) is its spec, in
`harness.boards.tasks`, which every `Task` here extends.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.boards.tasks import TaskSpec
from harness.scoring.calibration import SMALL_N, calibration_metrics, reliability_bins
from harness.scoring.metrics import MetricValue
from harness.scoring.selective import RISK_COVERAGE_POINTS, risk_coverage
from harness.scoring.significance import Comparison

if TYPE_CHECKING:
    from harness.boards.spec import Board

Calibrator = Callable[[np.ndarray], np.ndarray]


@dataclass
class Evaluation:
    """Table rows produced by scoring: metrics, reliability bins, risk-coverage points."""

    metrics: list[dict] = field(default_factory=list)
    calibration_bins: list[dict] = field(default_factory=list)
    risk_coverage: list[dict] = field(default_factory=list)

    def extend(self, other: Evaluation) -> None:
        self.metrics += other.metrics
        self.calibration_bins += other.calibration_bins
        self.risk_coverage += other.risk_coverage

    def add_calibration(
        self, kind: str, truth: np.ndarray, probs: np.ndarray, n_images: int, condition: str, severity: int
    ) -> None:
        """Calibration metrics (named `<metric>_<calibrator>`) and reliability bins of one
        calibrator's probabilities; flagged when measured on fewer than `SMALL_N` images."""
        small = f"calibration measured on {n_images} images (< {SMALL_N})" if n_images < SMALL_N else None
        nan = float("nan")
        for name, value in calibration_metrics(truth, probs).items():
            metric = MetricValue(f"{name}_{kind}", value, nan, nan, len(truth), int(truth.sum()))
            self.metrics.append(metric_row(condition, severity, metric, small))
        for b in reliability_bins(truth, probs):
            self.calibration_bins.append({"condition": condition, "severity": severity, "calibrator": kind, **vars(b)})

    def add_selective(
        self, labels: np.ndarray, probs: np.ndarray, n_images: int, condition: str, severity: int
    ) -> None:
        """The risk-coverage curve of decisions at probability 0.5, the least confident deferred
        first, and its AURC (`harness.scoring.selective`)."""
        coverage, risk, aurc = risk_coverage(labels, probs)
        nan = float("nan")
        self.metrics.append(
            metric_row(condition, severity, MetricValue("aurc", aurc, nan, nan, n_images, int(labels.sum())))
        )
        self.add_curve(coverage, risk, condition, severity)

    def add_curve(
        self, coverage: np.ndarray, risk: np.ndarray, condition: str, severity: int, abstain_by: str | None = None
    ) -> None:
        """`RISK_COVERAGE_POINTS` evenly spaced points of a risk-coverage curve."""
        keep = np.unique(np.linspace(0, len(coverage) - 1, RISK_COVERAGE_POINTS).round().astype(int))
        extra = {"abstain_by": abstain_by} if abstain_by else {}
        self.risk_coverage += [
            {
                "condition": condition,
                "severity": severity,
                "coverage": float(coverage[i]),
                "risk": float(risk[i]),
                **extra,
            }
            for i in keep
        ]

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return pd.DataFrame(self.metrics), pd.DataFrame(self.calibration_bins), pd.DataFrame(self.risk_coverage)


@dataclass(frozen=True)
class Fitted:
    """What a task learns from the validation scores, before it sees a test score."""

    calibrators: dict[str, Calibrator]
    threshold: float | None = None
    run_values: dict[str, Any] = field(default_factory=dict)  # stored in `runs` (threshold, temperature)
    thresholds: np.ndarray | None = None  # multi-label: one logit threshold per target


def metric_row(condition: str, severity: int, m: MetricValue, flag: str | None = None) -> dict:
    return {"condition": condition, "severity": severity, **vars(m), "flag": flag}


TIE_RESAMPLES = 500  # paired bootstrap resamples behind a tie mark, where DeLong does not apply


class Task(TaskSpec):
    """A board's task with its scoring: what it fits on validation scores, how it evaluates a
    test condition, and its paired comparison. Adding a task is a spec in
    `harness.boards.tasks`, a subclass of it and of this class, and one line in
    `harness.scoring.tasks`."""

    @abstractmethod
    def fit_on_validation(self, board: Board, truth: np.ndarray, scores: np.ndarray) -> Fitted:
        """Threshold and calibrators from validation scores only."""

    @abstractmethod
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
        """Metrics of one test condition; `detailed` (the clean condition) adds every metric and slice."""

    @abstractmethod
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
        """Paired test of `metric` between two score sets on the same images."""

    @abstractmethod
    def tie_p(
        self,
        truth: np.ndarray,
        leader: np.ndarray,
        other: np.ndarray,
        groups: np.ndarray,
        metric: str,
        columns: list[int] | None = None,
    ) -> float:
        """p-value of `other` against the leader's scores, for tie marks on the leaderboard."""
