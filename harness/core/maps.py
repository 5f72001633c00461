"""Anomaly and saliency maps as the results database keeps them.

Maps are stored per image at most `MAX_SIDE` x `MAX_SIDE` (area-averaged when larger), as
float16 with a power-of-two scale per map so that values beyond float16's range survive, in
the `maps` table. `decode` turns a stored row back into a float32 array (channels, h, w).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.core.fingerprints import PREDICTION_KEY, table_sha256

MAX_SIDE = 64
FLOAT16_MAX = 65504.0
MAP_SCHEMA = {
    "split": "str",
    "condition": "str",
    "severity": "num",
    "image_id": "str",
    "channels": "num",
    "height": "num",
    "width": "num",
    "scale": "num",
    "data": "bytes",
}


def stored_size(height: int, width: int) -> tuple[int, int]:
    return min(height, MAX_SIDE), min(width, MAX_SIDE)


def encode(maps: np.ndarray) -> tuple[list[bytes], list[float]]:
    """(N, C, h, w) float32 maps, already at stored size -> float16 bytes and scales per map."""
    peaks = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    scales = [1.0 if p <= FLOAT16_MAX else 2.0 ** math.ceil(math.log2(p / FLOAT16_MAX)) for p in peaks]
    data = [(m / s).astype("<f2").tobytes() for m, s in zip(maps, scales, strict=True)]
    return data, scales


def decode(row: pd.Series | dict) -> np.ndarray:
    """A stored map row -> (channels, height, width) float32."""
    shape = (int(row["channels"]), int(row["height"]), int(row["width"]))
    return np.frombuffer(bytes(row["data"]), dtype="<f2").astype(np.float32).reshape(shape) * float(row["scale"])


def map_rows(split: str, condition: str, severity: int, image_ids: list[str], maps: np.ndarray) -> pd.DataFrame:
    """Rows of the `maps` table for (N, C, h, w) maps at stored size."""
    data, scales = encode(maps)
    _, c, h, w = maps.shape
    return pd.DataFrame(
        {
            "split": split,
            "condition": condition,
            "severity": severity,
            "image_id": image_ids,
            "channels": c,
            "height": h,
            "width": w,
            "scale": scales,
            "data": data,
        }
    )


def maps_sha256(frame: pd.DataFrame) -> str:
    return table_sha256(frame, MAP_SCHEMA, PREDICTION_KEY)
