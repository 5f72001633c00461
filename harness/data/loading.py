"""The first stage of a run: a board's verified manifest, its datasets, and its images.

`load_manifest` verifies the frozen split and gives the manifest with its labels (for licensed
datasets, read from the user's copy and checked against the board's labels hash), without
touching an image: what scoring needs. `load_board_data` adds the images of every split, from
the verified cache.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pandas as pd

from harness.boards.lists import is_listed, labels_from_lists, list_labelled
from harness.boards.slices import check_slices
from harness.boards.spec import Board
from harness.boards.splits import attach_labels, excluded_split_sha256, read_manifest, verify_manifest
from harness.core.errors import XRBenchError
from harness.core.fingerprints import dataset_pair_sha256
from harness.data.adapters.base import DatasetSource
from harness.data.cache import SplitData, board_splits
from harness.data.datasets import prepare_dataset
from harness.data.groundtruth import GroundTruth, load_ground_truth


@dataclass(frozen=True)
class BoardManifest:
    board: Board  # as run: with exclusions, its split_sha256 is the reduced manifest's
    manifest: pd.DataFrame
    source: DatasetSource
    test_source: DatasetSource | None = None  # cross-dataset boards: where the test images are
    excluded: tuple[str, ...] = ()  # manifest images left out on this machine (see `xrbench data prepare`)
    truth: GroundTruth | None = None  # the test images' boxes and masks, when the board has them

    @property
    def dataset_sha256(self) -> str:
        if self.test_source is None:
            return self.source.content_sha256 or ""
        return dataset_pair_sha256(self.source.content_sha256, self.test_source.content_sha256)

    @property
    def source_manifest(self) -> pd.DataFrame:
        """The manifest rows whose images are in `source` (all but a cross-dataset board's test)."""
        if self.test_source is None:
            return self.manifest
        return self.manifest[self.manifest["split"] != "test"].reset_index(drop=True)


@dataclass(frozen=True)
class BoardData(BoardManifest):
    splits: dict[str, SplitData] = dataclasses.field(default_factory=dict)


def frozen_manifest(board: Board) -> pd.DataFrame:
    """The board's committed manifest, verified by hash. For a licensed dataset it holds ids,
    patients and splits only: `load_manifest` adds the labels from the user's copy."""
    verify_manifest(board.split_manifest, board.split_sha256)
    return read_manifest(board.split_manifest, board.labels_sha256 is not None, board.patient_disjoint)


def load_manifest(board: Board) -> BoardManifest:
    """Verify the frozen split, make sure the dataset is present, return the labelled manifest.

    Images that `xrbench data prepare` recorded as missing or unreadable are left out, and the
    board is run under the reduced manifest's hash (with a warning)."""
    manifest = frozen_manifest(board)
    source = prepare_dataset(board.dataset)
    test_source = prepare_dataset(board.test_dataset) if board.test_dataset else None
    sources = [source] if test_source is None else [source, test_source]
    if board.labels_sha256 is not None:
        entries = pd.concat([s.entries for s in sources], ignore_index=True)
        entries = list_labelled(board, entries) if labels_from_lists(board) else entries
        manifest = attach_labels(manifest, entries, board.labels_sha256, f"board {board.name}")
    check_slices(board.slices, list(manifest.columns), f"board {board.name}")
    excluded = sorted(set().union(*(s.excluded for s in sources)) & set(manifest["image_id"]))
    if excluded and is_listed(board):
        raise XRBenchError(
            f"board {board.name} reproduces a published protocol, and {len(excluded)} of its images are missing or "
            f"unreadable on this machine (first: {excluded[0]}; see `xrbench data prepare`): a partial "
            "reproduction is not a reproduction"
        )
    if excluded:
        manifest = manifest[~manifest["image_id"].isin(excluded)].reset_index(drop=True)
        board = dataclasses.replace(board, split_sha256=excluded_split_sha256(board.split_sha256, excluded))
        logging.getLogger("xrbench").warning(
            "%d images of %s are excluded on this machine (see `xrbench data prepare`); results are stored under "
            "split hash %s and are not ranked with results on the full manifest",
            len(excluded),
            board.name,
            board.split_sha256[:12],
        )
    truth = test_ground_truth(board, manifest, test_source or source)
    return BoardManifest(board, manifest, source, test_source, tuple(excluded), truth)


def test_ground_truth(board: Board, manifest: pd.DataFrame, source: DatasetSource) -> GroundTruth | None:
    """The board's ground truth for its test images, from the root of the test images' dataset."""
    if not board.ground_truth:
        return None
    test = manifest[manifest["split"] == "test"]
    known = set(source.entries["image_id"])
    return load_ground_truth(board.ground_truth, source.root, test, known, board.resolution, f"board {board.name}")


def load_board_data(board: Board) -> BoardData:
    """`load_manifest`, then every split's images at the board's resolution."""
    found = load_manifest(board)
    board, manifest = found.board, found.manifest
    if found.test_source is None:
        splits = board_splits(found.source, manifest, board.split_sha256, board.resolution, board.resample)
    else:
        is_test = (manifest["split"] == "test").to_numpy()
        own, other = (
            board_splits(s, manifest[rows].reset_index(drop=True), board.split_sha256, board.resolution, board.resample)
            for s, rows in ((found.source, ~is_test), (found.test_source, is_test))
        )
        splits = {"train": own["train"], "val": own["val"], "test": other["test"]}
    return BoardData(board, manifest, found.source, found.test_source, found.excluded, found.truth, splits)
