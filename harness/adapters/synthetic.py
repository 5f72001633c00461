"""The embedded synthetic chest dataset: generated on first use, verified by hash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from harness.adapters.base import DatasetSource
from harness.adapters.nih import read_data_entry
from harness.boards import DatasetSpec
from harness.errors import DataIntegrityError
from harness.paths import data_root
from harness.synth.cohort import GENERATOR_VERSION, combine_digests, draw_cohort, write_dataset

DEFAULTS = {"seed": 0, "n_patients": 950, "image_size": 256}


def dataset_folder(params: dict) -> Path:
    p = {**DEFAULTS, **params}
    name = f"v{GENERATOR_VERSION}-seed{p['seed']}-n{p['n_patients']}-s{p['image_size']}"
    return data_root() / "synth-cxr" / name


def prepare(spec: DatasetSpec, workers: int = 0) -> DatasetSource:
    params = {**DEFAULTS, **spec.params}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise DataIntegrityError(f"synth-cxr: unknown dataset parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    folder = dataset_folder(params)
    if not (folder / "dataset.json").exists():
        n_images = len(draw_cohort(params["seed"], params["n_patients"]))
        with Progress(transient=True) as progress:
            task = progress.add_task(f"generating synth-cxr ({n_images} images)", total=n_images)
            write_dataset(
                folder,
                params["seed"],
                params["n_patients"],
                params["image_size"],
                workers=workers,
                progress=lambda n: progress.advance(task, n),
            )
    info = json.loads((folder / "dataset.json").read_text())
    digests = pd.read_csv(folder / "digests.csv", dtype=str)
    if combine_digests(bytes.fromhex(d) for d in digests["sha256"]) != info["content_sha256"]:
        raise DataIntegrityError(f"{folder}/digests.csv does not match dataset.json; delete {folder} to regenerate")
    expected = spec.content_sha256
    if expected and info["content_sha256"] != expected:
        raise DataIntegrityError(
            f"the synthetic dataset in {folder} has content SHA-256 {info['content_sha256']}, "
            f"but the board expects {expected}. The generator produced different pixels "
            "(a changed generator, or numpy/scipy computing differently on this machine); "
            "results would not be comparable with the leaderboard's."
        )
    return DatasetSource(
        name="synth-cxr",
        root=folder,
        entries=read_data_entry(folder / "Data_Entry_2017.csv"),
        image_dir=folder / "images",
        content_sha256=info["content_sha256"],
        image_digests=dict(zip(digests["image_id"], digests["sha256"], strict=True)),
    )
