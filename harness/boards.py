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
from harness.fingerprints import dataset_pair_sha256
from harness.paths import project_root
from harness.tasks import task_for


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
    # Multi-label boards: the findings predicted, in the order of a method's logit columns.
    targets: tuple = ()
    # Cross-dataset boards: test images come from this dataset, train and val from `dataset`.
    test_dataset: DatasetSpec | None = None
    path: Path | None = None

    @property
    def dataset_sha256(self) -> str | None:
        """The dataset content hash of runs on this board, as frozen in the board file (None for
        real datasets, whose pixels are not hashed)."""
        if self.test_dataset is None:
            return self.dataset.content_sha256
        return dataset_pair_sha256(self.dataset.content_sha256, self.test_dataset.content_sha256) or None


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


def _dataset_spec(table: dict) -> DatasetSpec:
    table = dict(table)
    return DatasetSpec(name=table.pop("name"), content_sha256=table.pop("content_sha256", None), params=table)


def load_board(name_or_path: str | Path) -> Board:
    path = board_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise XRBenchError(f"board file {path} is not valid TOML: {exc}") from exc
    try:
        test_dataset = raw.pop("test_dataset", None)
        board = Board(
            dataset=_dataset_spec(raw.pop("dataset")),
            test_dataset=_dataset_spec(test_dataset) if test_dataset is not None else None,
            split_manifest=(path.parent / raw.pop("split_manifest")).resolve(),
            path=path,
            **raw,
        )
    except (KeyError, TypeError) as exc:
        raise XRBenchError(f"board file {path} is missing or has an unknown key: {exc}") from exc
    board = dataclasses.replace(board, slices=tuple(board.slices), targets=tuple(board.targets))
    task_for(board)
    return board
