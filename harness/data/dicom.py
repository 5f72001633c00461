"""DICOM radiographs to display-ready grayscale, the way a reading workstation shows them.

Order: stored values (BitsStored respected by pydicom) -> Modality LUT (rescale slope and
intercept, or a Modality LUT sequence) -> VOI LUT (a VOI LUT sequence, else the first window
centre/width, else the full range of the image) -> MONOCHROME1 inversion (bright = dense
everywhere). Compressed transfer syntaxes decode through pydicom's pixel handlers: RLE
natively, JPEG, JPEG-LS and JPEG 2000 through the pylibjpeg plugins.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.core.errors import DataIntegrityError


def is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """pydicom's warnings, collected instead of printed (values are converted lazily, so the
    whole reading happens inside)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _read(path: Path, **options: object) -> object:
    import pydicom

    try:
        return pydicom.dcmread(path, **options)
    except Exception as exc:  # pydicom raises many types for damaged or unsupported files
        raise DataIntegrityError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc


def read_dicom(path: Path) -> np.ndarray:
    """Display values in [0, 1] as float32 (H, W); a damaged or unsupported file is one
    DataIntegrityError naming it and what is wrong."""
    with _quiet() as caught:
        ds = _read(path)
        noted = f" (pydicom: {caught[0].message})" if caught else ""
        if "PixelData" not in ds:
            raise DataIntegrityError(f"{path}: no pixel data; the file is truncated or not an image{noted}")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if frames != 1:
            raise DataIntegrityError(f"{path}: {frames} frames; xrbench reads single-frame radiographs only")
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise DataIntegrityError(
                f"{path}: photometric interpretation {photometric or 'missing'}; "
                f"xrbench reads grayscale (MONOCHROME1/2) radiographs only{noted}"
            )
        try:
            stored = ds.pixel_array
        except Exception as exc:
            raise DataIntegrityError(f"{path}: pixel data cannot be decoded ({type(exc).__name__}: {exc})") from exc
        if stored.shape != (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))):
            raise DataIntegrityError(f"{path}: pixel data of shape {stored.shape} does not match Rows x Columns")
        return _display(ds, stored, photometric)


def _display(ds: object, stored: np.ndarray, photometric: str) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(stored, ds).astype(np.float64)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True).astype(np.float64)
        low, high = _voi_range(ds, values)
    else:
        low, high = float(values.min()), float(values.max())
    out = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def to_uint8(display: np.ndarray) -> np.ndarray:
    """[0, 1] display values to the 8-bit form the image cache holds."""
    return np.round(display * 255.0).astype(np.uint8)


def _voi_range(ds, values: np.ndarray) -> tuple[float, float]:
    """Output range of the VOI transform: the LUT's declared bit depth, or the window's output
    range (pydicom maps a window to [min, max] of the data type's range before us)."""
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        ends = sorted((low * slope + intercept, high * slope + intercept))
        return ends[0], ends[1]
    return float(low), float(high)


def dicom_header(path: Path) -> dict[str, str]:
    """Patient and study fields used by adapters, without reading pixel data (empty strings
    for what a truncated header lacks)."""
    with _quiet():
        ds = _read(path, stop_before_pixels=True)
        keys = {"patient_id": "PatientID", "sex": "PatientSex", "age": "PatientAge"}
        keys |= {"sop_instance_uid": "SOPInstanceUID", "modality": "Modality", "view": "ViewPosition"}
        return {name: str(ds.get(keyword, "")) for name, keyword in keys.items()}
