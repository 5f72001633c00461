"""A run as one value: which method with which parameters, on which board edition, with which
seed and options. Built and checked once (`RunSpec.build`), then handed to every stage, to a
grid's cell and to a worker process; its `key` tells a grid that a cell is done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from harness.api.identity import method_origin
from harness.api.protocol import Method
from harness.api.registry import create_method, get_method
from harness.boards.files import load_board
from harness.boards.spec import Board
from harness.core.code import closure, files_sha256
from harness.core.errors import XRBenchError
from harness.core.limits import INT32_MAX, check_int
from harness.core.precision import PRECISIONS
from harness.data.corruptions import CORRUPTIONS
from harness.run.explainers import EXPLAINERS
from harness.run.saliency import refuse_unexplainable
from harness.scoring.evaluation import Task
from harness.scoring.tasks import task_for

PIPELINE = ("harness.run.inference", "harness.run.batches", "harness.data.loading", "harness.data.stress")
"""The harness code every method's predictions pass through, besides the method's own: how
images are loaded, cached, corrupted and batched, and how `predict` is called. Its files are
part of every run's key; the score stage's are not (a change there is a new `SCORING_VERSION`,
and `xrbench score` recomputes stored metrics without running anything again)."""


def resolve_device(name: str, here: bool = True) -> str:
    """`auto` -> cuda when there is a GPU, else cpu; a CUDA device without CUDA is refused
    (unless the run is for another machine: `here=False`, a Ray worker)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise XRBenchError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}")
    if here and name.startswith("cuda") and not torch.cuda.is_available():
        raise XRBenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return name


@dataclass(frozen=True)
class RunOptions:
    """How a run is made, besides what runs and where: the same for every cell of a grid."""

    device: str = "auto"
    precision: str = "fp32"
    corruptions: bool = True  # the board's stress suite too
    explain: str | None = None  # gradcam | gradcam++: keep saliency maps of the score

    def checked(self, here: bool = True) -> RunOptions:
        """The options with the device resolved (for this machine, or `here=False` for another:
        a Ray worker), refusing an unknown precision or explainer."""
        if self.precision not in PRECISIONS:
            raise XRBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.explain is not None and self.explain not in EXPLAINERS:
            raise XRBenchError(f"explain must be one of {', '.join(EXPLAINERS)}, not {self.explain!r}")
        return RunOptions(resolve_device(self.device, here), self.precision, self.corruptions, self.explain)


@dataclass(frozen=True)
class RunSpec:
    """One run: `params` are every parameter of the method (defaults merged, typed); `board`
    is the board file's edition (its frozen hashes, before any exclusion on this machine)."""

    method: str
    params: dict[str, Any]
    board: Board
    seed: int
    options: RunOptions = field(default_factory=RunOptions)

    @classmethod
    def build(
        cls,
        method: str,
        board: str | Path | Board = "synth-cxr-ad",
        seed: int | None = None,
        params: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        here: bool = True,
    ) -> RunSpec:
        """Check everything that can be checked before data is loaded: the board file, the
        method and its parameters, that it supports the board's task and can be explained if
        asked, the options (`here=False`: for another machine). The seed defaults to the board's."""
        options = (options or RunOptions()).checked(here)
        if seed is not None:
            check_int(seed, "the seed", 0, INT32_MAX)
        board = board if isinstance(board, Board) else load_board(board)
        unknown = sorted(set(board.corruptions) - set(CORRUPTIONS))
        if unknown:
            raise XRBenchError(f"board {board.name}: [corruptions] {CORRUPTIONS.unknown(unknown[0])}")
        instance = create_method(method, params)
        if board.task not in instance.card.tasks:
            raise XRBenchError(f"method {method} supports {instance.card.tasks}, board {board.name} is {board.task}")
        refuse_unexplainable(options.explain, instance)
        return cls(method, instance.params.as_dict(), board, board.seed if seed is None else seed, options)

    @property
    def task(self) -> Task:
        return task_for(self.board)

    @property
    def device(self) -> torch.device:
        return torch.device(self.options.device)

    def create_method(self) -> Method:
        """A fresh instance of the method with the spec's parameters."""
        return create_method(self.method, self.params)

    @cached_property
    def code(self) -> dict[str, Any]:
        """The method's code identity (`harness.api.identity`)."""
        return method_origin(get_method(self.method))

    @cached_property
    def key(self) -> str:
        """What identifies the run's result, for `xrbench grid` to tell a cell already done: the
        method, its parameters and code, the harness code its predictions pass through, the
        board edition, its resolution and resampling filter, the seed, the device type and the
        options."""
        parts = {
            "method": self.method,
            "params": self.params,
            "code": self.code,
            "pipeline": pipeline_code(),
            "board": [self.board.name, self.board.version, self.board.split_sha256, self.board.dataset_sha256],
            "pixels": [self.board.resolution, self.board.resample],
            "map_sample": self.board.map_sample,
            "seed": self.seed,
            "device": self.options.device.split(":")[0],
            "corruptions": self.options.corruptions,
            "precision": self.options.precision,
            "explain": self.options.explain,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def pipeline_code() -> dict[str, str]:
    """The files of `PIPELINE` and of what they import, with their SHA-256."""
    return files_sha256(closure(list(PIPELINE), ("harness",)))
