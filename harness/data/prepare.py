"""`xrbench data prepare`: make a user's copy of a real dataset ready for its frozen boards.

For every board on the dataset: the frozen manifest is verified by hash, each of its images
must exist in the copy's metadata with the same findings, and its images are decoded once (in
worker processes) into the verified image cache. Images that are missing or cannot be decoded
are listed in `$XRBENCH_DATA/<name>/exclusions.csv` and remembered; runs then leave them out
under a different split hash, so they are never ranked with runs on the full manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.boards.files import available_boards, load_board
from harness.boards.spec import Board
from harness.boards.splits import attach_labels, excluded_split_sha256, read_manifest, verify_manifest
from harness.core.errors import DataIntegrityError
from harness.core.paths import data_root, under
from harness.data.adapters.base import DatasetSource
from harness.data.cache import decode_all, write_cache
from harness.data.datasets import read_entries
from harness.data.local import FileReport, entry_crops, record_prepared


@dataclass
class PreparedBoard:
    name: str
    images: int
    excluded: int
    split_sha256: str
    seconds: float


@dataclass
class PrepareResult:
    name: str
    excluded: dict[str, str]
    report_path: Path
    boards: list[PreparedBoard] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{b.name}: {b.images} images cached ({b.images / max(b.seconds, 1e-9):.0f} images/s), "
            + (f"{b.excluded} excluded, split hash {b.split_sha256[:12]}" if b.excluded else "full manifest")
            for b in self.boards
        ]
        if not self.boards:
            out.append(f"no board uses dataset {self.name} yet; metadata checked, nothing cached")
        if self.excluded:
            shown = list(self.excluded.items())[:5]
            out.append(f"{len(self.excluded)} images excluded, listed in {self.report_path}:")
            out += [f"  {image_id}: {reason}" for image_id, reason in shown]
            if len(self.excluded) > 5:
                out.append(f"  ... and {len(self.excluded) - 5} more")
        return out


def boards_on(dataset: str) -> list[Board]:
    """Boards with images from `dataset`: as their dataset, or as a cross-dataset board's test set."""
    return [b for b in map(load_board, available_boards()) if dataset in _dataset_names(b)]


def _dataset_names(board: Board) -> set[str]:
    return {board.dataset.name} | ({board.test_dataset.name} if board.test_dataset else set())


def rows_from(board: Board, manifest: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, dict]:
    """The manifest rows whose images come from `dataset`, and that dataset's board options."""
    if board.test_dataset is None or board.test_dataset.name == board.dataset.name:
        return manifest, board.dataset.params
    is_test = manifest["split"] == "test"
    if board.test_dataset.name == dataset:
        return manifest[is_test].reset_index(drop=True), board.test_dataset.params
    return manifest[~is_test].reset_index(drop=True), board.dataset.params


def check_manifest_images(board: Board, manifest: pd.DataFrame, entries: pd.DataFrame) -> None:
    """Refuse a copy whose metadata lacks manifest images."""
    known = set(entries["image_id"])
    unknown = [i for i in manifest["image_id"] if i not in known]
    if unknown:
        raise DataIntegrityError(
            f"{len(unknown)} images of {board.name}'s frozen manifest are not in your copy's metadata "
            f"(first: {unknown[0]}); is this the release described in the dataset's card under datasets/?"
        )


def check_manifest_labels(board: Board, manifest: pd.DataFrame, entries: pd.DataFrame) -> None:
    """Refuse a copy whose metadata lacks manifest images or labels them differently."""
    check_manifest_images(board, manifest, entries)
    known = entries.set_index("image_id")
    theirs = known.loc[manifest["image_id"], "findings"].to_numpy()
    differ = manifest["findings"].to_numpy() != theirs
    if differ.any():
        first = int(differ.nonzero()[0][0])
        raise DataIntegrityError(
            f"{int(differ.sum())} images of {board.name} have other findings in your copy than in the frozen "
            f"manifest (first: {manifest['image_id'].iloc[first]}: manifest {manifest['findings'].iloc[first]!r}, "
            f"yours {theirs[first]!r}); the board was frozen from the metadata file named in its board file"
        )


def prepare_local_dataset(name: str, root: Path, entries: pd.DataFrame, report: FileReport) -> PrepareResult:
    ids_of = entries.groupby("path")["image_id"].agg(list)  # a file may hold several entries (crops)
    excluded = {i: "missing" for p in report.missing for i in ids_of[p]} | {
        i: why for p, why in report.unreadable.items() for i in ids_of[p]
    }
    paths = dict(zip(entries["image_id"], entries["path"], strict=True))
    source = DatasetSource(name, root, entries, image_dir=root, paths=paths, crops=entry_crops(entries))
    prepared = []
    for board in boards_on(name):
        verify_manifest(board.split_manifest, board.split_sha256)
        frozen = read_manifest(board.split_manifest, board.labels_sha256 is not None, board.patient_disjoint)
        manifest, params = rows_from(board, frozen, name)
        board_entries = read_entries(name, root, **params) if params else entries
        if board.labels_sha256 is None:
            check_manifest_labels(board, manifest, board_entries)
        elif board.test_dataset is None:
            manifest = attach_labels(manifest, board_entries, board.labels_sha256, f"board {board.name}")
        else:  # the labels hash covers both datasets: checked when the board runs
            check_manifest_images(board, manifest, board_entries)
        ids = [i for i in manifest["image_id"] if i not in excluded]
        start = time.perf_counter()
        array, failures = decode_all(source, ids, board.resolution, resample=board.resample)
        excluded.update(failures)
        failed = {image_id for image_id, _ in failures}
        keep = [i not in failed for i in ids]
        board_excluded = sorted(set(manifest["image_id"]) & set(excluded))
        split = excluded_split_sha256(board.split_sha256, board_excluded) if board_excluded else board.split_sha256
        kept = [i for i, k in zip(ids, keep, strict=True) if k]
        write_cache(source, split, board.resolution, array[keep], kept, board.resample)
        prepared.append(PreparedBoard(board.name, sum(keep), len(board_excluded), split, time.perf_counter() - start))
    report_path = under(data_root(), name, "exclusions.csv")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": list(excluded), "reason": list(excluded.values())}).to_csv(report_path, index=False)
    record_prepared(name, root, list(excluded))
    return PrepareResult(name, excluded, report_path, prepared)
