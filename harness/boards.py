"""Board definitions: one TOML file per board in `leaderboards/`.

A board fixes everything that makes two results comparable: dataset and its parameters, task,
resolution, frozen split manifest (with its SHA-256), label definition, primary metric,
bootstrap resamples and seed. Relative paths in a board file are relative to that file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UnknownBoardError, XRBenchError
from harness.paths import project_root

TASKS = ("anomaly", "multilabel")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: dict = field(default_factory=dict)
    content_sha256: str | None = None


@dataclass(frozen=True)
class Board:
    name: str
    version: int
    description: str
    task: str
    resolution: int
    split_manifest: Path
    split_sha256: str
    dataset: DatasetSpec
    normal_label: str = "No Finding"
    primary_metric: str = "auroc"
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 32
    split: dict = field(default_factory=dict)  # how the manifest was built (xrbench split freeze)
    corruptions: dict = field(default_factory=dict)  # corruption name -> parameter per severity
    slices: tuple = ()  # metadata columns reported per value (age_bin is derived from age)
    min_slice_class: int = 10  # fewer abnormal or normal images than this: no number, a flag
    reference_method: str | None = None  # normalises corruption errors (as AlexNet in ImageNet-C)
    # Set for licensed datasets: the committed manifest holds ids, patients and splits only;
    # labels come from the user's copy and must hash to this (see splits.attach_labels).
    labels_sha256: str | None = None
    path: Path | None = None


def boards_dir() -> Path:
    return project_root() / "leaderboards"


def available_boards() -> list[str]:
    return sorted(p.stem for p in boards_dir().glob("*.toml"))


def board_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate
    path = boards_dir() / f"{name_or_path}.toml"
    if not path.exists():
        raise UnknownBoardError(
            f"unknown board {str(name_or_path)!r}; available: {', '.join(available_boards()) or 'none'}"
            f" (or pass the path of a board .toml file)"
        )
    return path


def load_board(name_or_path: str | Path) -> Board:
    path = board_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise XRBenchError(f"board file {path} is not valid TOML: {exc}") from exc
    try:
        dataset = raw.pop("dataset")
        board = Board(
            dataset=DatasetSpec(
                name=dataset.pop("name"),
                content_sha256=dataset.pop("content_sha256", None),
                params=dataset,
            ),
            split_manifest=(path.parent / raw.pop("split_manifest")).resolve(),
            path=path,
            **raw,
        )
    except (KeyError, TypeError) as exc:
        raise XRBenchError(f"board file {path} is missing or has an unknown key: {exc}") from exc
    board = dataclasses.replace(board, slices=tuple(board.slices))
    if board.task not in TASKS:
        raise XRBenchError(f"board {board.name}: task must be one of {TASKS}, not {board.task!r}")
    return board
