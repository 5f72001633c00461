"""Freezing a board: its manifest built from dataset entries as its `[split]` table says, and
the hashes written back into its board file (`xrbench split freeze`)."""

from __future__ import annotations

import re

import pandas as pd

from harness.boards.spec import Board
from harness.boards.splits import (
    SPLITS,
    anomaly_split,
    boxed_test_split,
    cross_dataset_split,
    given_evaluation_split,
    labels_sha256,
    official_test_split,
    patient_split,
    write_manifest,
)
from harness.core.errors import XRBenchError


def usable_entries(entries: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The entries a split may draw: with a usable label, and of the `[split]` table's views."""
    entries = entries[entries["label"].notna()]
    if spec.get("views"):
        entries = entries[entries["view"].isin(spec["views"])]
    return entries.assign(label=entries["label"].astype(int))


def split_frame(
    board: Board, entries: pd.DataFrame, test_entries: pd.DataFrame | None, boxed: set[str] | None = None
) -> pd.DataFrame:
    """A board's manifest, built as its [split] table says (see `harness.boards.splits`) from
    usable entries (and a cross-dataset board's test entries, or a boxed test split's images
    with boxes); a missing key raises KeyError."""
    spec, seed = board.split, board.split.get("seed", board.seed)

    def counts(split: str) -> tuple[int, int]:
        return spec[f"n_{split}_normal"], spec[f"n_{split}_abnormal"]

    if test_entries is not None:
        return cross_dataset_split(entries, test_entries, spec["n_train"], counts("val"), counts("test"), seed)
    if spec.get("test") == "boxed":
        if boxed is None:
            raise XRBenchError(f"board {board.name}: a boxed test split needs the images with boxes")
        return boxed_test_split(entries, boxed, spec["n_train"], counts("val"), seed)
    if spec.get("official_test"):
        return official_test_split(entries, spec["val_fraction"], seed, spec.get("official_train_val", "train_val"))
    if spec.get("evaluation") == "given":
        return given_evaluation_split(entries, spec["n_train"], seed)
    if board.task == "multilabel":
        return patient_split(entries, {split: spec[f"{split}_fraction"] for split in SPLITS}, seed)
    return anomaly_split(entries, spec["n_train"], counts("val"), counts("test"), seed)


def set_board_value(text: str, table: str | None, key: str, value: str) -> str:
    """Set an existing `key = "..."` line of a board file inside `[table]` (None: the top
    level), leaving every other line as written."""
    lines, current = text.splitlines(keepends=True), None
    for i, line in enumerate(lines):
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            current = header.group(1)
        elif current == table and re.match(rf'^{key} = ".*"\s*$', line):
            lines[i] = f'{key} = "{value}"\n'
    return "".join(lines)


def set_top_level_value(text: str, key: str, value: str, after: str) -> str:
    """Set the top-level `key = "value"`, adding the line after the `after` key if absent."""
    if re.search(rf'^{key} = ".*"\s*$', text.split("\n[", 1)[0], flags=re.MULTILINE):
        return set_board_value(text, None, key, value)
    return re.sub(rf"^({after} = .*\n)", rf'\g<1>{key} = "{value}"\n', text, count=1, flags=re.MULTILINE)


def record_frozen(board: Board, frame: pd.DataFrame, content_sha256: dict[str, str | None]) -> str:
    """Write the manifest and record its hash (and, for a licensed board, its labels' hash; the
    datasets' content hashes, by table) in the board file; returns the manifest's SHA-256."""
    ids_only = board.labels_sha256 is not None
    sha = write_manifest(frame, board.split_manifest, ids_only=ids_only)
    assert board.path is not None
    text = set_board_value(board.path.read_text(), None, "split_sha256", sha)
    if ids_only:
        text = set_board_value(text, None, "labels_sha256", labels_sha256(frame))
    for table, content in content_sha256.items():
        if content:
            text = set_board_value(text, table, "content_sha256", content)
    board.path.write_text(text)
    return sha
