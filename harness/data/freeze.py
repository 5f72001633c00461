"""`xrbench split freeze BOARD`: a board's manifest drawn from its dataset's entries and frozen
(`harness.boards.freeze`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harness.boards.files import load_board
from harness.boards.freeze import record_frozen, set_top_level_value, split_frame, usable_entries
from harness.boards.lists import is_listed, listed_split
from harness.core.errors import XRBenchError
from harness.data.datasets import prepare_dataset
from harness.data.groundtruth import box_reader


@dataclass(frozen=True)
class Frozen:
    manifest: Path
    images: int
    sha256: str
    board_file: Path


def freeze_board(name: str | Path, force: bool = False) -> Frozen:
    """Build the board's manifest from its `[split]` table and record its hashes; an existing
    manifest is kept unless `force` (a new board version)."""
    board = load_board(name)
    spec = board.split
    if not spec:
        raise XRBenchError(f"board {board.name} has no [split] table saying how to build its manifest")
    if board.split_manifest.exists() and not force:
        raise XRBenchError(
            f"{board.split_manifest} exists; frozen splits are not rebuilt (use --force for a new board version)"
        )
    # Freezing records the dataset's content hash anew, so it does not check the old one.
    source = prepare_dataset(dataclasses.replace(board.dataset, content_sha256=None))
    test_source = (
        prepare_dataset(dataclasses.replace(board.test_dataset, content_sha256=None)) if board.test_dataset else None
    )
    boxed = None
    if spec.get("test") == "boxed":
        boxed = set(box_reader(board.ground_truth)(source.root / board.ground_truth["boxes"])["image_id"])
    test_entries = usable_entries(test_source.entries, spec) if test_source else None
    try:
        if is_listed(board):  # the lists label the images, those the copy leaves unlabelled too
            frame = listed_split(board, source.entries, source.root)
        else:
            frame = split_frame(board, usable_entries(source.entries, spec), test_entries, boxed)
    except KeyError as exc:
        raise XRBenchError(f"board {board.name}: its [split] table lacks {exc}") from None
    contents = {"dataset": source.content_sha256, "test_dataset": test_source.content_sha256 if test_source else None}
    sha = record_frozen(board, frame, contents)
    assert board.path is not None
    return Frozen(board.split_manifest, len(frame), sha, board.path)


def freeze_stress(name: str | Path, force: bool = False) -> tuple[str, Path]:
    """Render the board's corrupted test set and record its SHA-256 as `stress_sha256` in the
    board file; a different recorded hash is kept unless `force` (a new board version)."""
    from harness.data.loading import load_board_data
    from harness.data.stress import corrupted_conditions, stress_sha256

    board = load_board(name)
    unfrozen = dataclasses.replace(board, stress_sha256=None)
    data = load_board_data(unfrozen)
    test = data.splits["test"]
    conditions = corrupted_conditions(unfrozen, test.images, test.meta["image_id"].tolist(), data.dataset_sha256)
    sha = stress_sha256(conditions)
    if board.stress_sha256 not in (None, sha) and not force:
        raise XRBenchError(
            f"board {board.name} froze a corrupted test set of SHA-256 {board.stress_sha256}; this machine renders "
            f"{sha} (use --force for a new board version)"
        )
    assert board.path is not None
    board.path.write_text(set_top_level_value(board.path.read_text(), "stress_sha256", sha, after="split_sha256"))
    return sha, board.path
