"""What a task is: everything about a kind of board that the harness must not guess.

A task owns its label format, the score (and map) shape it expects from a method, what it fits
on validation scores (threshold, calibrators, temperature), its per-condition evaluation, its
prediction columns, its leaderboard columns and main score, and its paired comparison test.
Adding a task is one module in `harness/tasks/` and one line in `harness/tasks/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from harness.calibration import SMALL_N, calibration_metrics, reliability_bins
from harness.errors import XRBenchError
from harness.metrics import MetricValue
from harness.selective import RISK_COVERAGE_POINTS, risk_coverage
from harness.significance import Comparison

if TYPE_CHECKING:
    from harness.boards import Board

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
        first, and its AURC (`harness.selective`)."""
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


DERIVED_SLICES = {"age_bin": "age", "num_findings": "findings"}
"""Slice columns the harness derives, and the manifest column each is derived from."""


def check_slices(slices: tuple[str, ...], columns: list[str], where: str) -> None:
    """Refuse a slice that is neither a manifest column nor derived from one."""
    for name in slices:
        if DERIVED_SLICES.get(name, name) not in columns:
            known = sorted(set(columns) - {"image_id", "patient_id", "split"}) + sorted(DERIVED_SLICES)
            raise XRBenchError(f"{where}: slice {name!r} is not a manifest column; slices can be {', '.join(known)}")


def slice_values(meta: pd.DataFrame, column: str) -> pd.Series:
    """A metadata column as slice values; `age_bin` is derived from `age`, `num_findings` (case
    complexity: 0, 1 or 2+ findings) from `findings`."""
    if column == "num_findings":
        normal = "No Finding"  # harness.adapters.base.NO_FINDING (importing it here would make a cycle)
        named = meta["findings"].fillna("").str.split("|").map(lambda fs: sum(f not in ("", normal) for f in fs))
        return named.clip(upper=2).map({0: "0", 1: "1", 2: "2+"})
    if column == "age_bin":
        return pd.cut(meta["age"].astype(float), [0, 40, 60, 200], right=False, labels=["<40", "40-59", "60+"]).astype(
            str
        )
    return meta[column].astype(str)


Column = tuple[str, str, bool]  # (metric key, label, lower is better)
TIE_RESAMPLES = 500  # paired bootstrap resamples behind a tie mark, where DeLong does not apply


class Task(ABC):
    name: ClassVar[str]
    primary_metrics: ClassVar[tuple[str, ...]]
    """Metrics a board may rank by (`primary_metric`); the first is the default."""
    leaderboard_columns: ClassVar[list[Column]]
    label_dtype: ClassVar[str]
    """dtype of the labels methods train on (`ImageBatches.with_labels`)."""

    @abstractmethod
    def check_board(self, board: Board) -> None:
        """Raise a clear error when the board's task-specific keys are wrong."""

    @abstractmethod
    def truth(self, meta: pd.DataFrame, board: Board) -> np.ndarray:
        """Ground truth of manifest rows: (N,) or (N, K) int64."""

    @abstractmethod
    def score_shape(self, n: int, board: Board) -> tuple[int, ...]:
        """The shape `predict` must return for a batch of n images."""

    @abstractmethod
    def map_shape(self, n: int, board: Board) -> tuple[int | None, ...]:
        """The shape of a batch's maps; None for a free (but consistent) size."""

    @abstractmethod
    def map_channels(self, board: Board) -> tuple[str, ...] | None:
        """The finding each map channel is for; None for one map for every finding."""

    @abstractmethod
    def prediction_columns(self, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        """The task's columns of the predictions table (besides ids, split, condition and the
        manifest's `label`: 1 for an image with any finding)."""

    @abstractmethod
    def stored_scores(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(truth, scores) as stored in prediction rows, in row order."""

    @abstractmethod
    def fit_on_validation(self, truth: np.ndarray, scores: np.ndarray) -> Fitted:
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
