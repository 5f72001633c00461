"""What every dataset adapter hands to the harness."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class DatasetSource:
    """A dataset present on disk: where its images are and how to check them."""

    name: str
    root: Path
    entries: pd.DataFrame  # one row per image, normalised columns (see adapters.nih)
    image_dir: Path
    content_sha256: str | None = None  # over decoded pixels, when the dataset defines one
    image_digests: dict[str, str] | None = None  # per-image SHA-256 of decoded pixels
    paths: dict[str, str] | None = None  # image id -> path below image_dir, when they differ
    excluded: tuple[str, ...] = ()  # images `xrbench data prepare` found missing or unreadable

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / (self.paths.get(image_id, image_id) if self.paths else image_id)
