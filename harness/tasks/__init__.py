"""Tasks: what kind of prediction a board asks for, and how it is scored (see `base.Task`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import XRBenchError
from harness.tasks.anomaly import AnomalyTask
from harness.tasks.base import Evaluation, Fitted, Task
from harness.tasks.multilabel import MultilabelTask

if TYPE_CHECKING:
    from harness.boards import Board

TASKS: dict[str, Task] = {task.name: task for task in (AnomalyTask(), MultilabelTask())}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise XRBenchError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def task_for(board: Board) -> Task:
    """The board's task, checking the board's task-specific keys and its primary metric."""
    if board.task not in TASKS:
        raise XRBenchError(f"board {board.name}: task must be one of {', '.join(TASKS)}, not {board.task!r}")
    task = TASKS[board.task]
    task.check_board(board)
    if board.primary_metric not in task.primary_metrics:
        raise XRBenchError(
            f"board {board.name}: primary_metric {board.primary_metric!r} is not one a {task.name} board ranks by; "
            f"choose one of {', '.join(task.primary_metrics)}"
        )
    return task


__all__ = ["TASKS", "Evaluation", "Fitted", "Task", "get_task", "task_for"]
