"""The corrupted test set of a board: rendered once, cached, verified, shared by all methods."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from harness.boards import Board
from harness.corruptions import CORRUPTIONS_VERSION, apply
from harness.fingerprints import array_sha256
from harness.paths import cache_root


@dataclass(frozen=True)
class Condition:
    name: str  # "clean" or a corruption name
    severity: int  # 0 for clean, 1.. in the order the board lists the levels
    level: float | None
    images: torch.Tensor  # (N, 1, H, W) uint8


def corrupted_folder(board: Board, dataset_sha256: str) -> Path:
    """Where a board's corrupted test set is cached: the key holds the board, its split and
    dataset hashes, the resolution, the board seed and the corruptions' version."""
    key = (
        f"{board.name}-{board.split_sha256[:12]}-{dataset_sha256[:12]}-r{board.resolution}"
        f"-seed{board.seed}-v{CORRUPTIONS_VERSION}"
    )
    return cache_root() / "corrupted" / key


def corrupted_file(folder: Path, name: str, severity: int, level: float) -> Path:
    return folder / f"{name}-{severity}-{level}.npy"


def corrupted_conditions(
    board: Board, images: torch.Tensor, image_ids: list[str], dataset_sha256: str, chunk: int = 64
) -> list[Condition]:
    """Every (corruption, severity) of the board applied to `images`, from cache when possible.

    Each file carries its SHA-256 and is checked on load.
    """
    folder = corrupted_folder(board, dataset_sha256)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(name, s + 1, level) for name, levels in board.corruptions.items() for s, level in enumerate(levels)]
    conditions = []
    for name, severity, level in track(jobs, description="corrupted test set", transient=True):
        path = corrupted_file(folder, name, severity, level)
        meta = path.with_suffix(".json")
        array = None
        if path.exists() and meta.exists():
            array = np.load(path)
            if json.loads(meta.read_text()).get("sha256") != array_sha256(array):
                array = None
        if array is None:
            parts = [
                apply(name, images[i : i + chunk], level, image_ids[i : i + chunk], board.seed, severity)
                for i in range(0, len(images), chunk)
            ]
            array = torch.cat(parts).numpy()
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, array)
            os.replace(tmp, path)
            meta.write_text(json.dumps({"sha256": array_sha256(array), "n": len(array)}))
        conditions.append(Condition(name, severity, float(level), torch.from_numpy(array)))
    return conditions
