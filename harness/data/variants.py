"""Board variants for the few-shot and noisy-training tracks, frozen as a manifest and a board
file with their hashes like every split:

- few-shot: the training split keeps only k of the parent's normal images, drawn with a seed;
- noisy training: a share of the training images are abnormal ones the parent does not use,
  from patients outside validation and test (so no test patient is trained on), in place of
  as many normal ones, drawn with a seed.

`variants/<board>-k<k>-draw<seed>.toml` (or `-noise<percent>-draw<seed>`) beside the parent's
board file (for the committed boards `leaderboards/variants/`, where boards are also found by
name) names its parent in `[variant]`; its validation and test splits are the parent's, image
for image, so runs on every variant of a board are scored on the same test images and their
curves compare.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.files import load_board
from harness.boards.freeze import set_board_value
from harness.boards.spec import Board
from harness.boards.splits import labels_sha256, write_manifest
from harness.core.errors import XRBenchError
from harness.data.loading import frozen_manifest, load_manifest


def shots_name(board: str, k: int, draw: int) -> str:
    return f"{board}-k{k}-draw{draw}"


def noise_name(board: str, share: float, draw: int) -> str:
    return f"{board}-noise{share * 100:g}-draw{draw}"


def variant_target(
    parent: str | Path, track: str, name: Callable[[str], str], folder: Path | None
) -> tuple[Board, Path]:
    """The parent board (an anomaly board) and where its variant named `name(parent)` lives:
    `folder`, by default `variants/` beside the parent's file (leaderboards/variants/)."""
    board = load_board(parent)
    if board.task != "anomaly":
        raise XRBenchError(f"board {board.name} is {board.task}: {track} variants are of anomaly boards")
    assert board.path is not None
    return board, (folder or board.path.parent / "variants") / f"{name(board.name)}.toml"


def noisy_variant(parent: str | Path, share: float, draw: int, folder: Path | None = None) -> Path:
    """The board file of `parent` whose training split holds `share` abnormal images (in place
    of as many normal ones), drawn with seed `draw`: written when absent (this reads the
    dataset's entries, so a real board needs the local copy), kept when present."""
    if not 0 <= share < 1:
        raise XRBenchError(f"noise share {share} is outside [0, 1): the share of abnormal training images")
    board, path = variant_target(parent, "noisy-training", lambda name: noise_name(name, share, draw), folder)
    if path.exists():
        return path
    found = load_manifest(board)
    manifest, entries = found.manifest, found.source.entries
    held_out = set(manifest.loc[manifest["split"] != "train", "patient_id"])
    pool = entries[~entries["image_id"].isin(set(manifest["image_id"])) & ~entries["patient_id"].isin(held_out)]
    pool = pool[pool["label"] == 1]
    train = manifest[manifest["split"] == "train"]
    n = round(share * len(train))
    if n > len(pool):
        raise XRBenchError(f"board {board.name} has {len(pool)} unused abnormal images outside validation and test; "
                           f"a share of {share} needs {n}")  # fmt: skip
    rng = np.random.default_rng(draw)
    dropped = set(rng.choice(train.index.to_numpy(), size=n, replace=False))
    added = pool.loc[rng.choice(pool.index.to_numpy(), size=n, replace=False)].assign(split="train")
    frame = pd.concat([manifest[~manifest.index.isin(dropped)], added], ignore_index=True)
    summary = f"{share:.0%} abnormal training images (draw {draw})"
    write_variant(board, frame, path, summary, {"parent": board.name, "noise": share, "draw": draw})
    return path


def shot_variant(parent: str | Path, k: int, draw: int, folder: Path | None = None) -> Path:
    """The board file of `parent` with k normal training images drawn with seed `draw`:
    written (manifest and board file) when absent, kept when present."""
    board, path = variant_target(parent, "few-shot", lambda name: shots_name(name, k, draw), folder)
    if path.exists():
        return path
    manifest = frozen_manifest(board) if board.labels_sha256 is None else load_manifest(board).manifest
    normals = manifest[(manifest["split"] == "train") & (manifest["label"] == 0)]
    if not 1 <= k <= len(normals):
        raise XRBenchError(f"k={k} is outside 1..{len(normals)}, the normal training images of board {board.name}")
    chosen = np.random.default_rng(draw).choice(normals.index.to_numpy(), size=k, replace=False)
    frame = manifest[(manifest["split"] != "train") | manifest.index.isin(chosen)].reset_index(drop=True)
    summary = f"{k} normal training image{'s' if k > 1 else ''} (draw {draw})"
    write_variant(board, frame, path, summary, {"parent": board.name, "shots": k, "draw": draw})
    return path


def write_variant(board: Board, frame: pd.DataFrame, path: Path, summary: str, variant: dict) -> None:
    """The variant's manifest beside its board file, and the parent's board text with the
    variant's name, description, manifest and hashes and its `[variant]` table, checked as any
    board file before it takes its name (a broken one is not left behind)."""
    assert board.path is not None
    ids_only = board.labels_sha256 is not None
    manifest = path.with_suffix(".csv")
    sha = write_manifest(frame, manifest, ids_only=ids_only)
    text = board.path.read_text()
    for key, value in (("name", path.stem), ("description", f"{board.description}; {summary}"),
                       ("split_manifest", manifest.name), ("split_sha256", sha)):  # fmt: skip
        text = set_board_value(text, None, key, value)
    if ids_only:
        text = set_board_value(text, None, "labels_sha256", labels_sha256(frame))
    table = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in variant.items())
    tmp = path.with_name(f".{path.stem}.tmp.toml")
    header = f"# {summary}, drawn from {board.path.name} (xrbench grid --shots or --noise).\n"
    tmp.write_text(f"{header}{text.rstrip()}\n\n[variant]\n{table}")
    try:
        load_board(tmp)
    except XRBenchError:
        tmp.unlink()
        manifest.unlink()
        raise
    tmp.rename(path)
