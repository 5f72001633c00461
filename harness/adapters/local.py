"""Datasets a user downloads: read their published metadata, check what is on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.dicom import is_dicom
from harness.errors import XRBenchError

MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _readers() -> dict[str, Callable[[Path], pd.DataFrame]]:
    from harness.adapters.chexpert import read_chexpert
    from harness.adapters.dental import read_dental
    from harness.adapters.mimic import read_mimic
    from harness.adapters.nih import read_nih

    def dental(root: Path) -> pd.DataFrame:
        labels = root / "labels.csv"
        return read_dental(root, labels if labels.exists() else None)

    return {"nih": read_nih, "chexpert": read_chexpert, "mimic": read_mimic, "dental": dental}


DATASETS = ("nih", "chexpert", "mimic", "dental")


def read_entries(name: str, root: Path) -> pd.DataFrame:
    if name not in DATASETS:
        raise XRBenchError(f"unknown dataset {name!r}; local datasets: {', '.join(DATASETS)}")
    if not root.is_dir():
        raise XRBenchError(f"{root} is not a folder")
    return _readers()[name](root)


@dataclass
class FileReport:
    present: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def lines(self, shown: int = 5) -> list[str]:
        out = []
        for kind, items in (("missing", self.missing), ("unreadable", self.unreadable)):
            if items:
                out.append(f"{len(items)} {kind}: " + ", ".join(items[:shown]) + (" ..." if len(items) > shown else ""))
        return out


def check_files(root: Path, image_ids: list[str], progress: Callable = lambda it, _: it) -> FileReport:
    """Which images exist and start like a PNG, JPEG or DICOM file (no full decode)."""
    report = FileReport()
    for image_id in progress(image_ids, "checking files"):
        path = root / image_id
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
        except FileNotFoundError:
            report.missing.append(image_id)
            continue
        except OSError:
            report.unreadable.append(image_id)
            continue
        if head.startswith(MAGIC) or is_dicom(path):
            report.present += 1
        else:
            report.unreadable.append(image_id)
    return report
