"""What a board is: everything that makes two results comparable (dataset and its parameters,
task, resolution, frozen split manifest with its SHA-256, label definition, primary metric,
bootstrap resamples and seed). Board files are read and checked by `harness.boards.files`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.boards.slices import NO_FINDING
from harness.core.fingerprints import dataset_pair_sha256


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: dict = field(default_factory=dict)
    content_sha256: str | None = None


@dataclass(frozen=True)
class Board:
    name: str
    version: int
    description: str
    task: str
    resolution: int
    split_manifest: Path
    split_sha256: str
    dataset: DatasetSpec
    normal_label: str = NO_FINDING
    primary_metric: str = "auroc"
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 32
    resample: str = "bilinear"  # the filter images are resized with (harness.data.cache.RESAMPLING)
    # Anomaly boards: how the decision threshold is chosen on validation scores, "best-f1" or
    # "normal-quantile" (that quantile of the normal scores; no abnormal validation image needed).
    threshold: str = "best-f1"
    threshold_quantile: float = 0.95
    split: dict = field(default_factory=dict)  # how the manifest was built (xrbench split freeze)
    corruptions: dict = field(default_factory=dict)  # corruption name -> parameter per severity
    slices: tuple = ()  # metadata columns reported per value (age_bin is derived from age)
    min_slice_class: int = 10  # fewer abnormal or normal images than this: no number, a flag
    reference_method: str | None = None  # normalises corruption errors (as AlexNet in ImageNet-C)
    # Maps kept and scored per split: 0 for every clean image, else every test image with ground
    # truth and a seeded, label-stratified sample up to this many (harness.boards.maps).
    map_sample: int = 0
    # Set for licensed datasets: the committed manifest holds ids, patients and splits only;
    # labels come from the user's copy and must hash to this (see splits.attach_labels).
    labels_sha256: str | None = None
    # Multi-label boards: the findings predicted, in the order of a method's logit columns.
    targets: tuple = ()
    # Cross-dataset boards: test images come from this dataset, train and val from `dataset`.
    test_dataset: DatasetSpec | None = None
    # Where the findings are, for scoring maps (see harness.data.groundtruth).
    ground_truth: dict = field(default_factory=dict)
    # SHA-256 of the rendered corrupted test set (harness.data.stress.stress_sha256), where the
    # board's pixels are known: a machine that renders other bytes is refused.
    stress_sha256: str | None = None
    # Numbers papers published on this board's protocol (harness.boards.reported), never ranked.
    reported: tuple = ()
    # A few-shot variant's parent board, shots and draw (harness.data.variants).
    variant: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def patient_disjoint(self) -> bool:
        """False only for a board that reproduces a published split keeping its crossing patients
        (`crossing_patients = "keep"`, harness.boards.lists)."""
        return self.split.get("crossing_patients") != "keep"

    @property
    def dataset_sha256(self) -> str | None:
        """The dataset content hash of runs on this board, as frozen in the board file (None for
        real datasets, whose pixels are not hashed)."""
        if self.test_dataset is None:
            return self.dataset.content_sha256
        return dataset_pair_sha256(self.dataset.content_sha256, self.test_dataset.content_sha256) or None


def board_edition(board: Board) -> dict[str, Any]:
    """What the results database remembers of a board file, for the leaderboard and the site."""
    return {
        "board": board.name,
        "version": board.version,
        "task": board.task,
        "primary_metric": board.primary_metric,
        "description": board.description,
        "split_sha256": board.split_sha256,
        "dataset_sha256": board.dataset_sha256,
        "targets": json.dumps(list(board.targets)) if board.targets else None,
        "reference_method": board.reference_method,
        "reported": json.dumps(list(board.reported)) if board.reported else None,
        "map_sample": board.map_sample,
        "variant": json.dumps(board.variant, sort_keys=True) if board.variant else None,
        "datasets": json.dumps(board_datasets(board)),
    }


def board_datasets(board: Board) -> list[str]:
    """The datasets a board's images come from (its own, and a cross-dataset board's test set's)."""
    return sorted({board.dataset.name} | ({board.test_dataset.name} if board.test_dataset else set()))
