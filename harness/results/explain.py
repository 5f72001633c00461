"""`xrbench explain RUN_ID IMAGE_ID`: one image of a run with its stored map and ground truth, for
a quick look from the terminal."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.boards.files import load_board
from harness.boards.spec import Board
from harness.core.errors import XRBenchError
from harness.core.maps import decode
from harness.data.groundtruth import truth_of
from harness.data.loading import BoardData, load_board_data
from harness.results.plots import overlay
from harness.results.store import ResultStore


@dataclass
class Explained:
    """What a figure of one image shows: the image (board resolution, uint8), the run's map of
    it (None when it kept none), the ground truth, the colour scale and what the map is of."""

    image: np.ndarray
    heat: np.ndarray | None
    mask: np.ndarray | None
    boxes: list
    scale: tuple[float, float]
    finding: str | None
    note: str


def explained(
    store: ResultStore, run_id: str, image_id: str, board_file: str | Path | None = None, finding: str | None = None
) -> Explained:
    """One validation or test image of a run with its stored clean map and ground truth. On a
    multi-label board the map is `finding`'s (default: the image's first finding that is a
    target, else the first target)."""
    run = store.run(run_id)
    board = load_board(board_file or run["board"])
    data = load_board_data(board)
    image, findings = _image(data, board, image_id)
    channel, finding = _channel(board, findings, finding)
    maps = store.maps(run_id)
    rows = maps[(maps["image_id"] == image_id) & (maps["condition"] == "clean")] if not maps.empty else maps
    heat = decode(rows.iloc[0])[channel] if not rows.empty else None
    mask, boxes = truth_of(data.truth, image_id, finding or "")
    scale = (float(np.percentile(heat, 1)), float(np.percentile(heat, 99))) if heat is not None else (0.0, 1.0)
    if heat is None:
        note = "the run kept no map for this image: its method makes none (run it with --explain)"
    else:
        note = f"map of {finding}" if finding else ""
    return Explained(image, heat, mask, boxes, scale, finding, note)


def explain_image(
    store: ResultStore,
    run_id: str,
    image_id: str,
    board_file: str | Path | None = None,
    out: Path | None = None,
    finding: str | None = None,
) -> tuple[Path, str]:
    """`explained` as a PNG file; returns its path and a note (what the map shows, or why it is
    missing)."""
    e = explained(store, run_id, image_id, board_file, finding)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{run_id}-{image_id}" + (f"-{e.finding}" if e.finding else ""))
    out = out or Path(f"{safe}.png")
    out.write_bytes(overlay(e.image, e.heat, e.mask, e.boxes, e.scale))
    return out, e.note


def _image(data: BoardData, board: Board, image_id: str) -> tuple[np.ndarray, list[str]]:
    """The image (board resolution, uint8) and its findings, from the validation or test split."""
    for split in ("test", "val"):
        meta = data.splits[split].meta
        ids = meta["image_id"].tolist()
        if image_id in ids:
            row = ids.index(image_id)
            return data.splits[split].images[row, 0].numpy(), str(meta["findings"].iloc[row]).split("|")
    raise XRBenchError(f"image {image_id!r} is not in the validation or test split of board {board.name}")


def _channel(board: Board, findings: list[str], finding: str | None) -> tuple[int, str | None]:
    if not board.targets:
        if finding:
            raise XRBenchError(f"--finding is for multi-label boards; board {board.name} has one map per image")
        return 0, None
    targets = list(board.targets)
    if finding is None:
        finding = next((f for f in findings if f in targets), targets[0])
    if finding not in targets:
        raise XRBenchError(f"finding {finding!r} is not a target of board {board.name} ({', '.join(targets)})")
    return targets.index(finding), finding
