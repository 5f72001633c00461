"""A synthetic chest X-ray cohort written to disk in the NIH ChestX-ray14 layout.

The cohort (patients, follow-ups, views, sites, findings) is drawn from one seeded generator;
each image is then rendered from its own seed (dataset seed, patient id, follow-up), so images
can be rendered in any order or in parallel and still come out byte-identical.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from PIL import Image

from harness.boards.slices import NO_FINDING
from harness.core.fingerprints import combine_digests, image_digest
from harness.data.adapters.base import NIH_COLUMNS
from harness.data.synth.chest import (
    FINDINGS,
    Acquisition,
    Anatomy,
    Finding,
    draw_acquisition,
    draw_anatomy,
    draw_finding,
    finding_masks,
    render_chest,
)

T = TypeVar("T")
GENERATOR_VERSION = 2
# Relative frequencies of findings among abnormal images.
FINDING_WEIGHTS = {
    "Nodule": 0.2,
    "Mass": 0.12,
    "Effusion": 0.2,
    "Cardiomegaly": 0.18,
    "Pneumothorax": 0.12,
    "Consolidation": 0.18,
}


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    patient_id: int
    follow_up: int
    age: int
    sex: str
    view: str
    site: str
    findings: tuple[str, ...]

    @property
    def finding_labels(self) -> str:
        return "|".join(self.findings) if self.findings else NO_FINDING


def draw_cohort(seed: int, n_patients: int, abnormal_rate: float = 0.3) -> list[ImageRecord]:
    """Draw patients, their follow-up images and each image's findings (no pixels yet)."""
    rng = np.random.default_rng([seed, 0])
    names = list(FINDING_WEIGHTS)
    weights = np.array([FINDING_WEIGHTS[n] for n in names])
    weights = weights / weights.sum()
    records = []
    for patient in range(1, n_patients + 1):
        sex = "M" if rng.uniform() < 0.5 else "F"
        age = int(rng.integers(20, 86))
        site = "A" if rng.uniform() < 0.6 else "B"
        n_images = 1 + int(rng.binomial(2, 0.35))
        for follow_up in range(n_images):
            abnormal = rng.uniform() < abnormal_rate
            view = "AP" if rng.uniform() < (0.35 if abnormal else 0.25) else "PA"
            findings: tuple[str, ...] = ()
            if abnormal:
                count = 2 if rng.uniform() < 0.15 else 1
                findings = tuple(sorted(rng.choice(names, size=count, replace=False, p=weights)))
            records.append(
                ImageRecord(f"{patient:08d}_{follow_up:03d}.png", patient, follow_up, age, sex, view, site, findings)
            )
    return records


def scene(record: ImageRecord, seed: int) -> tuple[Anatomy, Acquisition, list[Finding]]:
    """What one image shows. The patient's anatomy is shared by all of their follow-ups."""
    anatomy = draw_anatomy(np.random.default_rng([seed, record.patient_id]), record.sex, record.age)
    rng = np.random.default_rng([seed, record.patient_id, record.follow_up + 1])
    acquisition = draw_acquisition(rng, record.view, record.site)
    return anatomy, acquisition, [draw_finding(rng, name) for name in record.findings]


def render_record(record: ImageRecord, seed: int, size: int) -> np.ndarray:
    return render_chest(*scene(record, seed), size)


def _keep_freed_memory() -> None:
    """Ask glibc to reuse freed arrays instead of returning each one to the OS.

    Rendering allocates many short-lived 0.5 MB arrays; by default each is mmap-ed and
    unmapped again, and the page faults cost about a quarter of the generation time.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _render_and_save(args: tuple[ImageRecord, int, int, str]) -> bytes:
    record, seed, size, folder = args
    pixels = render_record(record, seed, size)
    Image.fromarray(pixels).save(os.path.join(folder, record.image_id), compress_level=1)
    return image_digest(record.image_id, pixels)


def render_all(
    render: Callable[[T], bytes], jobs: list[T], workers: int = 0, progress: Callable[[int], None] | None = None
) -> list[bytes]:
    """Run `render` (a picklable function returning a digest) over `jobs`, in worker processes
    when `workers` > 1 (default: up to 4), keeping the jobs' order."""
    workers = workers or min(4, os.cpu_count() or 1)
    digests: list[bytes] = []
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_keep_freed_memory) as pool:
            results = pool.map(render, jobs, chunksize=16)
            for digest in results:
                digests.append(digest)
                if progress:
                    progress(1)
        return digests
    _keep_freed_memory()
    for job in jobs:
        digests.append(render(job))
        if progress:
            progress(1)
    return digests


def partial_folder(folder: Path) -> Path:
    """An empty temporary folder beside `folder` to generate into."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def finish_dataset(tmp: Path, folder: Path, image_ids: list[str], digests: list[bytes], info: dict) -> str:
    """Write `digests.csv` and `dataset.json` (with the content SHA-256), then move the dataset
    into place: readers only trust folders holding dataset.json. Returns the content SHA-256."""
    content_sha256 = combine_digests(digests)
    pd.DataFrame({"image_id": image_ids, "sha256": [d.hex() for d in digests]}).to_csv(tmp / "digests.csv", index=False)
    info = {**info, "n_images": len(image_ids), "content_sha256": content_sha256}
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return content_sha256


def _finding_masks(args: tuple[ImageRecord, int, int]) -> list[tuple[str, str, np.ndarray]]:
    record, seed, size = args
    anatomy, acquisition, findings = scene(record, seed)
    masks = finding_masks(anatomy, acquisition, findings, size)
    return [(record.image_id, f.name, m) for f, m in zip(findings, masks, strict=True)]


def ground_truth_masks(seed: int, n_patients: int, size: int, workers: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """Every abnormal image's finding masks (see `harness.data.synth.chest.finding_masks`)."""
    jobs = [(r, seed, size) for r in draw_cohort(seed, n_patients) if r.findings]
    return [item for items in render_all(_finding_masks, jobs, workers) for item in items]


def metadata_frame(records: list[ImageRecord], size: int) -> pd.DataFrame:
    """The cohort as an NIH `Data_Entry_2017.csv` table, plus a synthetic `Site` column."""
    spacing = round(0.143 * 3000 / size, 4)
    rows = [
        [
            r.image_id,
            r.finding_labels,
            r.follow_up,
            r.patient_id,
            r.age,
            r.sex,
            r.view,
            size,
            size,
            spacing,
            spacing,
            r.site,
        ]
        for r in records
    ]
    return pd.DataFrame(rows, columns=[*NIH_COLUMNS, "Site"])


def write_dataset(
    folder: Path,
    seed: int,
    n_patients: int,
    size: int,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Render the cohort into `folder` (atomically: a temporary folder renamed at the end).

    Returns the content SHA-256 over all decoded images, in image-id order.
    """
    records = draw_cohort(seed, n_patients)
    tmp = partial_folder(folder)
    (tmp / "images").mkdir()
    jobs = [(r, seed, size, str(tmp / "images")) for r in records]
    digests = render_all(_render_and_save, jobs, workers, progress)
    metadata_frame(records, size).to_csv(tmp / "Data_Entry_2017.csv", index=False)
    info = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_patients": n_patients,
        "image_size": size,
        "findings": list(FINDINGS),
    }
    return finish_dataset(tmp, folder, [r.image_id for r in records], digests, info)
