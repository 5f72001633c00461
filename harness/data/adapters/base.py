"""What every dataset adapter hands to the harness, and the table layout it follows.

Adapters normalise a dataset's own metadata to one row per image with `ENTRY_COLUMNS`:
image_id, patient_id, age, sex, view, findings (`|`-separated names as NIH writes them,
`No Finding` for a normal image), label (1 abnormal, 0 normal, missing when unusable) and
site; they may add columns of their own (`path`, `follow_up`, `official_split`). The NIH
ChestX-ray14 table layout (`NIH_COLUMNS`, `Data_Entry_2017.csv`) is the reference layout:
the synthetic chest dataset writes it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ENTRY_COLUMNS = ["image_id", "patient_id", "age", "sex", "view", "findings", "label", "site"]
NIH_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]


@dataclass(frozen=True)
class DatasetSource:
    """A dataset present on disk: where its images are and how to check them."""

    name: str
    root: Path
    entries: pd.DataFrame  # one row per image, `ENTRY_COLUMNS` and any adapter-specific ones
    image_dir: Path
    content_sha256: str | None = None  # over decoded pixels, when the dataset defines one
    image_digests: dict[str, str] | None = None  # per-image SHA-256 of decoded pixels
    paths: dict[str, str] | None = None  # image id -> path below image_dir, when they differ
    excluded: tuple[str, ...] = ()  # images `xrbench data prepare` found missing or unreadable
    # image id -> (left, top, right, bottom) fractions of its file, for entries that are a part
    # of an image (DENTEX's quadrants); other images are used whole.
    crops: dict[str, tuple[float, float, float, float]] | None = None

    def crop(self, image_id: str) -> tuple[float, float, float, float] | None:
        return self.crops.get(image_id) if self.crops else None

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / (self.paths.get(image_id, image_id) if self.paths else image_id)
