"""The embedded synthetic chest dataset: generated on first use, verified by hash."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from harness.boards.spec import DatasetSpec
from harness.core.errors import DataIntegrityError
from harness.core.fingerprints import combine_digests
from harness.core.paths import data_root
from harness.data.adapters.base import DatasetSource
from harness.data.adapters.nih import read_data_entry
from harness.data.groundtruth import ensure_ground_truth
from harness.data.synth.cohort import GENERATOR_VERSION, draw_cohort, ground_truth_masks, write_dataset

DEFAULTS = {"seed": 0, "n_patients": 950, "image_size": 256}


def dataset_folder(params: dict) -> Path:
    p = {**DEFAULTS, **params}
    name = f"v{GENERATOR_VERSION}-seed{p['seed']}-n{p['n_patients']}-s{p['image_size']}"
    return data_root() / "synth-cxr" / name


def checked_params(name: str, params: dict, defaults: dict) -> dict:
    merged = {**defaults, **params}
    unknown = set(merged) - set(defaults)
    if unknown:
        raise DataIntegrityError(f"{name}: unknown dataset parameters {sorted(unknown)}; known: {sorted(defaults)}")
    return merged


def ensure_generated(folder: Path, description: str, n_images: int, write: Callable) -> None:
    """Run `write(progress)` once, with a progress bar, unless `folder` holds a finished dataset."""
    if not (folder / "dataset.json").exists():
        with Progress(transient=True, console=Console(stderr=True)) as progress:
            task = progress.add_task(f"generating {description}", total=n_images)
            write(lambda n: progress.advance(task, n))


def verified_digests(folder: Path, expected_sha256: str | None) -> tuple[str, dict[str, str]]:
    """The dataset's content SHA-256 and per-image digests, checked against each other and
    against the board's expectation."""
    info = json.loads((folder / "dataset.json").read_text())
    digests = pd.read_csv(folder / "digests.csv", dtype=str)
    if combine_digests(bytes.fromhex(d) for d in digests["sha256"]) != info["content_sha256"]:
        raise DataIntegrityError(f"{folder}/digests.csv does not match dataset.json; delete {folder} to regenerate")
    if expected_sha256 and info["content_sha256"] != expected_sha256:
        raise DataIntegrityError(
            f"the synthetic dataset in {folder} has content SHA-256 {info['content_sha256']}, "
            f"but the board expects {expected_sha256}. The generator produced different pixels "
            "(a changed generator or decoder, or numpy/scipy computing differently on this machine); "
            "results would not be comparable with the leaderboard's."
        )
    return info["content_sha256"], dict(zip(digests["image_id"], digests["sha256"], strict=True))


def prepare(spec: DatasetSpec, workers: int = 0) -> DatasetSource:
    params = checked_params("synth-cxr", spec.params, DEFAULTS)
    folder = dataset_folder(params)
    n_images = len(draw_cohort(params["seed"], params["n_patients"]))
    ensure_generated(
        folder,
        f"synth-cxr ({n_images} images)",
        n_images,
        lambda progress: write_dataset(
            folder, params["seed"], params["n_patients"], params["image_size"], workers=workers, progress=progress
        ),
    )
    content_sha256, digests = verified_digests(folder, spec.content_sha256)
    ensure_ground_truth(
        folder, lambda: ground_truth_masks(params["seed"], params["n_patients"], params["image_size"], workers)
    )
    return DatasetSource(
        name="synth-cxr",
        root=folder,
        entries=read_data_entry(folder / "Data_Entry_2017.csv"),
        image_dir=folder / "images",
        content_sha256=content_sha256,
        image_digests=digests,
    )
