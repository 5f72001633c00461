"""A synthetic dental panoramic cohort written as a DICOM folder tree with a labels CSV, the
layout the dental adapter reads (so the synthetic board exercises the real DICOM path).

The files mix what real archives contain: MONOCHROME1 and MONOCHROME2, with and without a
VOI window, uncompressed and RLE Lossless, files with and without a `.dcm` extension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.fingerprints import image_digest
from harness.data.dicom import read_dicom, to_uint8
from harness.data.synth.cohort import finish_dataset, partial_folder, render_all
from harness.data.synth.dental import (
    FINDINGS,
    draw_acquisition,
    draw_finding,
    draw_patient,
    finding_masks,
    render_panoramic,
)

DENTAL_GENERATOR_VERSION = 1
FINDING_WEIGHTS = {"Periapical lesion": 0.45, "Caries": 0.35, "Cyst": 0.2}
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


@dataclass(frozen=True)
class DentalRecord:
    path: str  # relative to the dataset root
    patient_id: int
    visit: int
    age: int
    sex: str
    findings: tuple[str, ...]
    monochrome1: bool
    windowed: bool
    rle: bool


def draw_cohort(seed: int, n_patients: int, abnormal_rate: float = 0.3) -> list[DentalRecord]:
    rng = np.random.default_rng([seed, 0])
    names = list(FINDING_WEIGHTS)
    weights = np.array([FINDING_WEIGHTS[n] for n in names])
    records = []
    for patient in range(1, n_patients + 1):
        sex = "M" if rng.uniform() < 0.5 else "F"
        age = int(rng.integers(18, 80))
        for visit in range(1 + int(rng.binomial(1, 0.2))):
            findings: tuple[str, ...] = ()
            if rng.uniform() < abnormal_rate:
                count = 2 if rng.uniform() < 0.1 else 1
                findings = tuple(sorted(rng.choice(names, size=count, replace=False, p=weights / weights.sum())))
            n = len(records)
            name = f"PAN{visit + 1:02d}" + ("" if n % 4 == 3 else ".dcm")
            records.append(
                DentalRecord(
                    path=f"dicom/P{patient:05d}/{name}",
                    patient_id=patient,
                    visit=visit,
                    age=age,
                    sex=sex,
                    findings=findings,
                    monochrome1=n % 3 == 1,
                    windowed=n % 2 == 0,
                    rle=n % 5 in (1, 3),
                )
            )
    return records


def scene(record: DentalRecord, seed: int) -> tuple[dict, dict, list[dict]]:
    """What one panoramic shows: the patient, the acquisition, the findings."""
    patient = draw_patient(np.random.default_rng([seed, record.patient_id]))
    rng = np.random.default_rng([seed, record.patient_id, record.visit + 1])
    acquisition = draw_acquisition(rng)
    return patient, acquisition, [draw_finding(rng, name, len(patient["teeth"])) for name in record.findings]


def render_record(record: DentalRecord, seed: int, height: int) -> np.ndarray:
    return render_panoramic(*scene(record, seed), height)


def _finding_masks(args: tuple[DentalRecord, int, int]) -> list[tuple[str, str, np.ndarray]]:
    record, seed, height = args
    patient, acquisition, findings = scene(record, seed)
    masks = finding_masks(patient, acquisition, findings, height)
    return [(record.path, f["name"], m) for f, m in zip(findings, masks, strict=True)]


def ground_truth_masks(seed: int, n_patients: int, height: int, workers: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """Every abnormal panoramic's finding masks (see `harness.data.synth.dental.finding_masks`)."""
    jobs = [(r, seed, height) for r in draw_cohort(seed, n_patients) if r.findings]
    return [item for items in render_all(_finding_masks, jobs, workers) for item in items]


def write_dicom(path: Path, values: np.ndarray, record: DentalRecord, seed: int) -> None:
    """12-bit panoramic DICOM (modality PX) holding `values` (larger = denser)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[str(seed), record.path, kind])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.Modality, ds.PatientID = "PX", f"D{record.patient_id:05d}"
    ds.PatientSex, ds.PatientAge = record.sex, f"{record.age:03d}Y"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME1" if record.monochrome1 else "MONOCHROME2"
    stored = (4095 - values if record.monochrome1 else values).astype(np.uint16)
    if record.windowed:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.tobytes()
    if record.rle:
        ds.compress(RLELossless, stored)
    ds.save_as(path, enforce_file_format=True)


def _render_and_write(args: tuple[DentalRecord, int, int, str]) -> bytes:
    record, seed, height, root = args
    path = Path(root) / record.path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, render_record(record, seed, height), record, seed)
    # The digest is over what the DICOM reader decodes, so the adapter's path is what is hashed.
    return image_digest(record.path, to_uint8(read_dicom(path)))


def write_dataset(
    folder: Path,
    seed: int,
    n_patients: int,
    height: int,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Render the cohort into `folder` atomically; returns the content SHA-256."""
    records = draw_cohort(seed, n_patients)
    tmp = partial_folder(folder)
    jobs = [(r, seed, height, str(tmp)) for r in records]
    digests = render_all(_render_and_write, jobs, workers, progress)
    labels = pd.DataFrame(
        {
            "path": [r.path for r in records],
            "label": ["abnormal" if r.findings else "normal" for r in records],
            "finding": ["|".join(r.findings) for r in records],
        }
    )
    labels.to_csv(tmp / "labels.csv", index=False)
    info = {
        "generator_version": DENTAL_GENERATOR_VERSION,
        "seed": seed,
        "n_patients": n_patients,
        "image_height": height,
        "findings": list(FINDINGS),
    }
    return finish_dataset(tmp, folder, [r.path for r in records], digests, info)
