"""What a kind of board asks of a method: the labels it trains on, the shape of the scores and
maps it returns, how its predictions are stored, and the board keys it needs.

How a task is scored (thresholds, calibrators, metrics, paired tests) is the score stage's
part of it: `harness.scoring.tasks` extends each spec here with its scoring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from harness.boards.splits import target_matrix
from harness.core.errors import XRBenchError
from harness.core.registry import Registry

if TYPE_CHECKING:
    from harness.boards.spec import Board


class TaskSpec(ABC):
    name: ClassVar[str]
    primary_metrics: ClassVar[tuple[str, ...]]
    """Metrics a board may rank by (`primary_metric`); the first is the default."""
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


class AnomalySpec(TaskSpec):
    """Anomaly detection: one score per image, higher is more anomalous; truth is normal (0)
    or abnormal (1, any finding)."""

    name: ClassVar[str] = "anomaly"
    primary_metrics: ClassVar[tuple[str, ...]] = ("auroc", "auprc", "sens@95spec")
    label_dtype: ClassVar[str] = "int64"

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


class MultilabelSpec(TaskSpec):
    """Multi-label classification: one logit per board target (finding); truth is multi-hot."""

    name: ClassVar[str] = "multilabel"
    primary_metrics: ClassVar[tuple[str, ...]] = ("auroc", "auprc")
    label_dtype: ClassVar[str] = "float32"

    def check_board(self, board: Board) -> None:
        if not board.targets:
            raise XRBenchError(f"board {board.name}: a multilabel board lists its `targets` (findings, in logit order)")
        if len(set(board.targets)) != len(board.targets) or board.normal_label in board.targets:
            raise XRBenchError(f"board {board.name}: targets must be distinct findings, not {board.normal_label!r}")

    def truth(self, meta: pd.DataFrame, board: Board) -> np.ndarray:
        return target_matrix(meta["findings"], board.targets)

    def score_shape(self, n: int, board: Board) -> tuple[int, ...]:
        return (n, len(board.targets))

    def map_shape(self, n: int, board: Board) -> tuple[int | None, ...]:
        return (n, len(board.targets), None, None)

    def map_channels(self, board: Board) -> tuple[str, ...] | None:
        return board.targets

    def prediction_columns(self, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        return {"scores": scores.tolist(), "target_labels": truth.tolist()}

    def stored_scores(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return multilabel_arrays(rows)


def multilabel_arrays(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot truth, logits), each (N, K), of stored multi-label predictions."""
    return np.stack(predictions["target_labels"].to_numpy()), np.stack(predictions["scores"].to_numpy())


TASKS: Registry[TaskSpec] = Registry("task")
for _spec in (AnomalySpec(), MultilabelSpec()):
    TASKS.add(_spec.name, _spec)


def task_spec(board: Board) -> TaskSpec:
    """The board's task, checking the board's task-specific keys and its primary metric."""
    if board.task not in TASKS:
        raise XRBenchError(f"board {board.name}: task must be one of {', '.join(TASKS)}, not {board.task!r}")
    task = TASKS.get(board.task)
    task.check_board(board)
    if board.primary_metric not in task.primary_metrics:
        raise XRBenchError(
            f"board {board.name}: primary_metric {board.primary_metric!r} is not one a {task.name} board ranks by; "
            f"choose one of {', '.join(task.primary_metrics)}"
        )
    return task
