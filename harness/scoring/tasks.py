"""The scoring of each task of `harness.boards.tasks`, by task name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.boards.tasks import TASKS as SPECS
from harness.boards.tasks import task_spec
from harness.core.registry import Registry
from harness.scoring.anomaly import AnomalyTask
from harness.scoring.evaluation import Task
from harness.scoring.multilabel import MultilabelTask

if TYPE_CHECKING:
    from harness.boards.spec import Board

TASKS: Registry[Task] = Registry("task")
for _task in (AnomalyTask(), MultilabelTask()):
    TASKS.add(_task.name, _task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def task_for(board: Board) -> Task:
    """The board's task with its scoring, checking the board as `harness.boards.tasks.task_spec` does."""
    return TASKS.get(task_spec(board).name)


def unscored_tasks() -> list[str]:
    """Task specs without a scoring here (a task must have both)."""
    return [name for name in SPECS if name not in TASKS]
