"""Reader for the NIH ChestX-ray14 metadata table (`Data_Entry_2017.csv` layout).

The synthetic chest dataset writes the same layout, so one code path serves both.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.errors import XRBenchError

NIH_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]
REQUIRED = NIH_COLUMNS[:7]
NO_FINDING = "No Finding"


def read_data_entry(path: Path) -> pd.DataFrame:
    """Normalise the table to image_id, patient_id, follow_up, age, sex, view, findings, label, site."""
    try:
        raw = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str, "Patient ID": str})
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError) as exc:
        raise XRBenchError(f"cannot read NIH metadata table {path}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the NIH columns {missing}; found {list(raw.columns)}")
    findings = raw["Finding Labels"].fillna("").str.strip()
    if (findings == "").any():
        row = int((findings == "").to_numpy().nonzero()[0][0]) + 2
        raise XRBenchError(f"{path}, line {row}: empty 'Finding Labels'")
    return pd.DataFrame(
        {
            "image_id": raw["Image Index"],
            "patient_id": raw["Patient ID"],
            "follow_up": raw["Follow-up #"].astype(int),
            "age": raw["Patient Age"].astype(int),
            "sex": raw["Patient Gender"],
            "view": raw["View Position"],
            "findings": findings,
            "label": (findings != NO_FINDING).astype(int),
            "site": raw["Site"] if "Site" in raw.columns else "",
        }
    )
