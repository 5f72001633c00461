"""The embedded synthetic dental dataset: DICOM phantoms generated on first use, read back
through the dental DICOM adapter, verified by hash."""

from __future__ import annotations

from pathlib import Path

from harness.boards.spec import DatasetSpec
from harness.core.paths import data_root
from harness.data.adapters.base import DatasetSource
from harness.data.adapters.dental import read_dental
from harness.data.adapters.synthetic import checked_params, ensure_generated, verified_digests
from harness.data.groundtruth import ensure_ground_truth
from harness.data.synth.dental_cohort import DENTAL_GENERATOR_VERSION, draw_cohort, ground_truth_masks, write_dataset

DEFAULTS = {"seed": 0, "n_patients": 800, "image_height": 192}


def dataset_folder(params: dict) -> Path:
    p = {**DEFAULTS, **params}
    name = f"v{DENTAL_GENERATOR_VERSION}-seed{p['seed']}-n{p['n_patients']}-h{p['image_height']}"
    return data_root() / "synth-dental" / name


def prepare(spec: DatasetSpec, workers: int = 0) -> DatasetSource:
    params = checked_params("synth-dental", spec.params, DEFAULTS)
    folder = dataset_folder(params)
    n_images = len(draw_cohort(params["seed"], params["n_patients"]))
    ensure_generated(
        folder,
        f"synth-dental ({n_images} DICOM files)",
        n_images,
        lambda progress: write_dataset(
            folder, params["seed"], params["n_patients"], params["image_height"], workers=workers, progress=progress
        ),
    )
    content_sha256, digests = verified_digests(folder, spec.content_sha256)
    ensure_ground_truth(
        folder, lambda: ground_truth_masks(params["seed"], params["n_patients"], params["image_height"], workers)
    )
    return DatasetSource(
        name="synth-dental",
        root=folder,
        entries=read_dental(folder, folder / "labels.csv"),
        image_dir=folder,
        content_sha256=content_sha256,
        image_digests=digests,
    )
