"""SIIM-ACR Pneumothorax Segmentation (Kaggle, 2019): `train-rle.csv` with `ImageId,
EncodedPixels` (one row per pneumothorax region, `-1` for an image without one) and the DICOM
files `dicom-images-train/<study>/<series>/<ImageId>.dcm` (the folder names do not matter:
images are found by file name).

The masks are radiologists' outlines, run-length encoded in the competition's relative form
over the 1024 x 1024 image read column by column: pairs of (offset from the end of the
previous run, run length). They are the only real pixel-level ground truth of chest
radiographs within reach, and xrbench scores maps against them (a board's `[ground_truth]`
names the file with `mask_format = "siim"`; the box metrics use a box around each region).

The labels file names no patient, so each image is its own unit of the patient bootstrap and
of the split. Age, sex and view are read from the DICOM headers when the images are present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import DataIntegrityError, XRBenchError
from harness.data.adapters.dental import age_years
from harness.data.dicom import dicom_header

LABELS = "train-rle.csv"
IMAGES = "dicom-images-train"
PNEUMOTHORAX = "Pneumothorax"
SIZE = (1024, 1024)  # (height, width) of every SIIM radiograph, the space of its run lengths


def read_rle_table(path: Path) -> pd.DataFrame:
    """The labels table (image_id, rle), one row per region or per image without one."""
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError, pd.errors.EmptyDataError) as exc:
        raise XRBenchError(f"cannot read SIIM labels {path}: {exc}") from exc
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in ("ImageId", "EncodedPixels") if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the SIIM columns {missing}; found {list(table.columns)}")
    empty = table["ImageId"].isna() | table["EncodedPixels"].isna()
    if empty.any():
        raise DataIntegrityError(f"{path}, line {int(np.flatnonzero(empty)[0]) + 2}: an empty ImageId or EncodedPixels")
    return pd.DataFrame({"image_id": table["ImageId"].str.strip(), "rle": table["EncodedPixels"].str.strip()})


def decode_rle(text: str, size: tuple[int, int] = SIZE, where: str = "run lengths") -> np.ndarray:
    """A bool mask of (height, width) from SIIM's relative run lengths over the pixels read
    column by column; refuses what is not pairs of whole numbers that stay inside the image."""
    try:
        values = np.array([int(v) for v in text.split()], dtype=np.int64)
    except ValueError:
        raise DataIntegrityError(f"{where}: {text[:40]!r} is not whole numbers") from None
    if len(values) == 0 or len(values) % 2 or (values < 0).any() or (values[1::2] == 0).any():
        raise DataIntegrityError(f"{where}: run lengths must be pairs of (offset >= 0, length > 0)")
    offsets, lengths = values[0::2], values[1::2]
    ends = np.cumsum(offsets + lengths)
    starts = ends - lengths
    pixels = size[0] * size[1]
    if ends[-1] > pixels:
        raise DataIntegrityError(f"{where}: the runs end at pixel {ends[-1]}, past the {size[1]} x {size[0]} image")
    earlier = np.cumsum(lengths) - lengths  # pixels in the runs before each run
    marked = np.repeat(starts - earlier, lengths) + np.arange(int(lengths.sum()))  # start, ..., end - 1 of each run
    flat = np.zeros(pixels, dtype=bool)
    flat[marked] = True
    return flat.reshape(size, order="F")


def read_masks(path: Path, image_ids: set[str] | None = None) -> dict[tuple[str, str], np.ndarray]:
    """(image id, "Pneumothorax") -> the union of the image's regions at 1024 x 1024, for the
    images of `image_ids` (all when None); a malformed row is refused naming file and line."""
    table = read_rle_table(path)
    masks: dict[tuple[str, str], np.ndarray] = {}
    for line, (image_id, rle) in enumerate(zip(table["image_id"], table["rle"], strict=True), start=2):
        if rle == "-1" or (image_ids is not None and image_id not in image_ids):
            continue
        mask = decode_rle(rle, SIZE, f"{path}, line {line}")
        key = (image_id, PNEUMOTHORAX)
        masks[key] = masks[key] | mask if key in masks else mask
    return masks


def _headers(root: Path, image_ids: pd.Series) -> tuple[list[dict], dict[str, str]]:
    """Each image's DICOM header fields (empty without the images) and its path below root."""
    folder = root / IMAGES
    found = {p.stem: p.relative_to(root).as_posix() for p in folder.rglob("*.dcm")} if folder.is_dir() else {}
    headers = [dicom_header(root / found[i]) if i in found else {} for i in image_ids]
    return headers, found


def read_siim(root: Path) -> pd.DataFrame:
    """Entries for a local copy of the SIIM-ACR training images (`root`: the folder holding
    train-rle.csv and dicom-images-train/)."""
    table = read_rle_table(root / LABELS)
    abnormal = (table["rle"] != "-1").groupby(table["image_id"], sort=False).any()
    image_ids = pd.Series(abnormal.index, dtype=str)
    label = abnormal.to_numpy().astype(int)
    headers, found = _headers(root, image_ids)
    return pd.DataFrame(
        {
            "image_id": image_ids,
            "patient_id": image_ids,
            "findings": [PNEUMOTHORAX if v else NO_FINDING for v in label],
            "label": label,
            "view": [h.get("view", "") for h in headers],
            "sex": [h.get("sex", "") for h in headers],
            "age": [age_years(h.get("age", "")) for h in headers],
            "site": "",
            "path": [found.get(i, f"{IMAGES}/{i}.dcm") for i in image_ids],
        }
    )
