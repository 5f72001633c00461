"""Arrays kept in the cache beside a JSON record of their SHA-256: written atomically, and
verified on every load, so that a damaged file is rebuilt, never used."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.fingerprints import array_sha256


def save_verified(path: Path, array: np.ndarray, **record: Any) -> None:
    """`path` (.npy) and `path.with_suffix('.json')` holding its SHA-256 and `record`."""
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
    record = {**record, "sha256": array_sha256(array), "n": len(array)}
    path.with_suffix(".json").write_text(json.dumps(record))


def load_verified(path: Path, mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]] | str:
    """(array, record) when the file and its record are readable and agree; else what is wrong,
    naming the file ('missing' when there is nothing yet)."""
    record_path = path.with_suffix(".json")
    if not path.exists() and not record_path.exists():
        return "missing"
    for file in (record_path, path):
        if not file.exists():
            return f"{file.name} is missing"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{record_path.name} is unreadable ({type(exc).__name__}: {exc})"
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError) as exc:
        return f"{path.name} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(record, dict) or record.get("sha256") != array_sha256(array) or record.get("n") != len(array):
        return f"{path.name} is damaged (its contents no longer have the SHA-256 recorded when it was written)"
    return array, record
