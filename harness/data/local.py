"""Datasets a user downloads: read their published metadata, check what is on disk, and
remember (in `$XRBENCH_DATA/local.json`) where each prepared copy lives and which of its
images were found missing or unreadable."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.core.errors import XRBenchError
from harness.core.paths import data_root
from harness.data.adapters.base import DatasetSource
from harness.data.dicom import is_dicom

MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _state_file() -> Path:
    return data_root() / "local.json"


def prepared_state(name: str) -> dict:
    """Where the prepared copy of `name` is, and its exclusions. `XRBENCH_<NAME>_ROOT` points at
    a copy without preparing it (no exclusions)."""
    override = os.environ.get(f"XRBENCH_{name.upper()}_ROOT")
    if override:
        return {"root": override, "excluded": []}
    path = _state_file()
    state = json.loads(path.read_text()).get(name) if path.exists() else None
    if state is None:
        raise XRBenchError(
            f"dataset {name} has not been prepared on this machine: run `xrbench data prepare {name} --root PATH` "
            f"with PATH your copy in its published layout (see datasets/ for the layout)"
        )
    return state


def record_prepared(name: str, root: Path, excluded: list[str]) -> None:
    path = _state_file()
    state = json.loads(path.read_text()) if path.exists() else {}
    state[name] = {"root": str(root.resolve()), "excluded": sorted(excluded)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def entry_crops(entries: pd.DataFrame) -> dict[str, tuple] | None:
    """image id -> crop, for adapters whose entries are parts of images (a `crop` column)."""
    if "crop" not in entries.columns:
        return None
    return {i: tuple(c) for i, c in zip(entries["image_id"], entries["crop"], strict=True)}


@dataclass
class FileReport:
    present: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> what is wrong
    decoded: bool = False  # every present file was decoded, not only recognised by its signature

    def lines(self, shown: int = 5) -> list[str]:
        out = []
        if self.missing:
            more = " ..." if len(self.missing) > shown else ""
            out.append(f"{len(self.missing)} missing: " + ", ".join(self.missing[:shown]) + more)
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable:")
            out += [f"  {path}: {why}" for path, why in list(self.unreadable.items())[:shown]]
            out += [f"  ... and {len(self.unreadable) - shown} more"] if len(self.unreadable) > shown else []
        if not self.decoded:
            out.append("presence and file signatures checked only (--quick): files were not decoded")
        return out


def check_files(
    root: Path, image_ids: list[str], progress: Callable = lambda it, _: it, decode: bool = False
) -> FileReport:
    """Which images exist and start like a PNG, JPEG or DICOM file; with `decode`, which of
    those also decode (truncated files, multi-frame or colour DICOMs are found then)."""
    report = FileReport(decoded=decode)
    recognised = []
    for image_id in progress(image_ids, "checking files"):
        path = root / image_id
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
        except FileNotFoundError:
            report.missing.append(image_id)
            continue
        except OSError as exc:
            report.unreadable[image_id] = f"cannot be opened ({exc.strerror})"
            continue
        if head.startswith(MAGIC) or is_dicom(path):
            recognised.append(image_id)
        else:
            report.unreadable[image_id] = "not a PNG, JPEG or DICOM file"
    failed = {}
    if decode and recognised:
        from harness.data.cache import decode_all

        files = pd.DataFrame({"image_id": recognised})
        _, failures = decode_all(DatasetSource("check", root, files, image_dir=root), recognised, resolution=16)
        failed = {image_id: message.removeprefix(f"{root / image_id}: ") for image_id, message in failures}
    report.unreadable |= failed
    report.present = len(recognised) - len(failed)
    return report
