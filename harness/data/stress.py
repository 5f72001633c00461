"""The corrupted test set of a board: rendered once, cached, verified, shared by all methods."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track

from harness.boards.spec import Board
from harness.core.cachefiles import load_verified, save_verified
from harness.core.errors import DataIntegrityError
from harness.core.paths import cache_root
from harness.data.cache import DECODING
from harness.data.corruptions import CORRUPTIONS_VERSION, apply


@dataclass(frozen=True)
class Condition:
    name: str  # "clean" or a corruption name
    severity: int  # 0 for clean, 1.. in the order the board lists the levels
    level: float | None
    images: torch.Tensor  # (N, 1, H, W) uint8

    @cached_property
    def pixels_sha256(self) -> str:
        """SHA-256 of the images' bytes, computed once (the frozen check and the run record
        both read it)."""
        return hashlib.sha256(self.images.numpy().tobytes()).hexdigest()


def corrupted_folder(board: Board, dataset_sha256: str) -> Path:
    """Where a board's corrupted test set is cached: the key holds the board, its split and
    dataset hashes, the resolution and resampling filter, the decoding scheme, the board seed
    and the corruptions' version."""
    resample = "" if board.resample == "bilinear" else f"-{board.resample}"
    key = (
        f"{board.name}-{board.split_sha256[:12]}-{dataset_sha256[:12]}-r{board.resolution}{resample}-d{DECODING}"
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
    bar = track(jobs, description="corrupted test set", transient=True, console=Console(stderr=True))
    for name, severity, level in bar:
        path = corrupted_file(folder, name, severity, level)
        found = load_verified(path)
        if isinstance(found, tuple) and len(found[0]) == len(images):
            array = found[0]
        else:
            if found != "missing":
                logging.getLogger("xrbench").warning("corrupted test set %s: %s; rendering it again", path, found)
            parts = [
                apply(name, images[i : i + chunk], level, image_ids[i : i + chunk], board.seed, severity)
                for i in range(0, len(images), chunk)
            ]
            array = torch.cat(parts).numpy()
            save_verified(path, array)
        conditions.append(Condition(name, severity, float(level), torch.from_numpy(array)))
    check_frozen(board, conditions)
    return conditions


def stress_sha256(conditions: list[Condition]) -> str:
    """SHA-256 of a corrupted test set: each condition's name, severity and pixels, in order."""
    digest = hashlib.sha256()
    for c in conditions:
        if c.name != "clean":
            digest.update(f"{c.name}|{c.severity}|{tuple(c.images.shape)}|{c.pixels_sha256}\n".encode())
    return digest.hexdigest()


def check_frozen(board: Board, conditions: list[Condition]) -> None:
    """Refuse a corrupted test set whose bytes are not the ones the board file froze."""
    if board.stress_sha256 is None:
        return
    found = stress_sha256(conditions)
    if found != board.stress_sha256:
        raise DataIntegrityError(
            f"board {board.name}: the corrupted test set rendered here hashes to {found}, the board file froze "
            f"{board.stress_sha256}; this machine renders other bytes, so its results would not be comparable"
        )
