"""Content fingerprints: SHA-256 of files, arrays, decoded images, model states and stored
predictions. Every cache key and every provenance hash in xrbench is built here, so that two
places never hash the same thing two ways."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(array: np.ndarray, rows: int = 1024) -> str:
    """SHA-256 of the array's bytes in C order, read in slices so that a memory-mapped array is
    never copied whole into memory."""
    h = hashlib.sha256()
    for start in range(0, len(array), rows):
        h.update(np.ascontiguousarray(array[start : start + rows]).data)
    return h.hexdigest()


def image_digest(image_id: str, pixels: np.ndarray) -> bytes:
    """Digest of an image's decoded pixels (not its file bytes, which depend on the encoder)."""
    h = hashlib.sha256(image_id.encode())
    h.update(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.digest()


def combine_digests(digests: Iterable[bytes]) -> str:
    """A dataset's content hash: its image digests, in image-id order."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return h.hexdigest()


def dataset_pair_sha256(train: str | None, test: str | None) -> str:
    """The content hash of a cross-dataset board (train/val from one dataset, test from
    another): both datasets' hashes combined; empty when neither has one."""
    both = [train or "", test or ""]
    return hashlib.sha256("|".join(both).encode()).hexdigest() if any(both) else ""


def state_sha256(model: object) -> str:
    """SHA-256 of a torch module's state dict as `torch.save` writes it."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # type: ignore[attr-defined]
    return hashlib.sha256(buffer.getvalue()).hexdigest()


PREDICTION_KEY = ["split", "condition", "severity", "image_id"]
"""The canonical order of stored predictions (and of maps)."""
PREDICTIONS_HASH_SCHEME = 2
"""1: image id, split, condition, severity and score as CSV in the run's own row order (runs
written before scheme 2; not recomputable from the table). 2: `predictions_sha256`."""
PREDICTION_SCHEMA = {
    "image_id": "str",
    "patient_id": "str",
    "split": "str",
    "condition": "str",
    "severity": "num",
    "label": "num",
    "score": "num",
    "scores": "list",
    "target_labels": "list",
}
NULL = b"\x01null"


def _column_bytes(values: pd.Series, kind: str) -> bytes:
    """A column as unambiguous bytes: strings NUL-separated, numbers as little-endian float64
    (every NULL as one fixed NaN), lists as their length (-1 for NULL) and values, blobs as
    their length and bytes."""
    if kind == "str":
        return b"".join(NULL + b"\0" if _missing(v) else str(v).encode() + b"\0" for v in values)
    if kind == "num":
        numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype="<f8", na_value=np.nan)
        return np.where(np.isnan(numbers), np.nan, numbers).astype("<f8").tobytes()
    parts = []
    for v in values:
        if _missing(v):
            parts.append(np.array([-1], "<i8").tobytes())
        elif kind == "bytes":
            parts.append(np.array([len(v)], "<i8").tobytes() + bytes(v))
        else:
            items = np.asarray(v, dtype="<f8")
            parts.append(np.array([len(items)], "<i8").tobytes() + items.tobytes())
    return b"".join(parts)


def _missing(value: object) -> bool:
    """None, NaN or pandas' NA: how a NULL can come back from DuckDB."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def table_sha256(frame: pd.DataFrame, schema: dict[str, str], key: list[str]) -> str:
    """SHA-256 over the columns of `schema` (name -> str | num | list | bytes), rows sorted by
    `key`: the same for a table as it was written and as DuckDB gives it back. A column the
    frame lacks counts as all NULL, as it reads back from the database."""
    ordered = frame.sort_values(key, kind="stable").reset_index(drop=True)
    h = hashlib.sha256(str(len(ordered)).encode())
    for column, kind in schema.items():
        values = ordered[column] if column in ordered else pd.Series([None] * len(ordered), dtype=object)
        h.update(column.encode() + b"\0")
        h.update(_column_bytes(values, kind))
    return h.hexdigest()


def predictions_sha256(frame: pd.DataFrame) -> str:
    """Hash scheme 2 of a run's stored predictions: every stored column, canonical row order;
    `variances` counts only in runs that have them (so the hashes of runs without them stand)."""
    return table_sha256(frame, prediction_schema(frame), PREDICTION_KEY)


def prediction_schema(frame: pd.DataFrame) -> dict[str, str]:
    """The columns a prediction frame's hash covers."""
    with_variances = "variances" in frame and frame["variances"].map(lambda v: not _missing(v)).any()
    return PREDICTION_SCHEMA | ({"variances": "list"} if with_variances else {})
