"""VinDr-CXR training set: per-reader findings with boxes, three readers per image.

Two published layouts are read: PhysioNet's (`annotations/annotations_train.csv`, images
`train/<image_id>.dicom`) and the Kaggle VinBigData competition's (`train.csv`, same images).
Both have `image_id, rad_id, class_name, x_min, y_min, x_max, y_max`, a row per finding and
reader, "No finding" when a reader found nothing.

Readers are aggregated by majority: a finding is present when at least two of an image's
readers name it; an image is normal when every reader wrote "No finding", abnormal when some
finding has a majority, and left unlabelled otherwise (a finding named by one reader only).
The release has no patient ids; each image is taken as its own patient.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError

LAYOUTS = ("annotations/annotations_train.csv", "train.csv")
NONE = "No finding"
COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")


def annotations_file(root: Path) -> Path:
    found = next((root / name for name in LAYOUTS if (root / name).exists()), None)
    if found is None:
        raise XRBenchError(f"{root} has neither {' nor '.join(LAYOUTS)}: is this the VinDr-CXR root?")
    return found


def read_annotations(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"image_id": str, "rad_id": str, "class_name": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise XRBenchError(f"cannot read VinDr-CXR annotations {path}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the VinDr-CXR columns {missing}; found {list(table.columns)}")
    boxless = (table["class_name"] != NONE) & table[list(COLUMNS[3:])].isna().any(axis=1)
    if boxless.any():
        row = int(boxless.to_numpy().nonzero()[0][0])
        raise XRBenchError(f"{path}, line {row + 2}: finding {table['class_name'].iloc[row]!r} without a box")
    return table


def majority_findings(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(label, findings) per image id: see the module docstring."""
    readers = table.groupby("image_id")["rad_id"].nunique()
    found = table[table["class_name"] != NONE].drop_duplicates(["image_id", "rad_id", "class_name"])
    votes = found.groupby(["image_id", "class_name"]).size()
    needed = (readers // 2 + 1).reindex(votes.index.get_level_values(0)).to_numpy()
    agreed = votes[votes.to_numpy() >= needed].reset_index()
    names = agreed.sort_values(["image_id", "class_name"]).groupby("image_id")["class_name"].agg("|".join)
    anyone = set(found["image_id"])
    label = pd.Series(
        [1.0 if i in names.index else (np.nan if i in anyone else 0.0) for i in readers.index], index=readers.index
    )
    findings = pd.Series([names.get(i, "" if i in anyone else NO_FINDING) for i in readers.index], index=readers.index)
    return label, findings


def read_boxes(path: Path) -> pd.DataFrame:
    """Every reader's box of a majority finding (their union), in the image's own pixels."""
    table = read_annotations(path)
    _, findings = majority_findings(table)
    agreed = {(i, f) for i, fs in findings.items() for f in fs.split("|")}
    rows = table[[(i, f) in agreed for i, f in zip(table["image_id"], table["class_name"], strict=True)]]
    return pd.DataFrame(
        {
            "image_id": rows["image_id"],
            "finding": rows["class_name"],
            "reader": rows["rad_id"],
            "x": rows["x_min"],
            "y": rows["y_min"],
            "w": rows["x_max"] - rows["x_min"],
            "h": rows["y_max"] - rows["y_min"],
        }
    ).reset_index(drop=True)


def read_vindr(root: Path) -> pd.DataFrame:
    """Entries for a local VinDr-CXR copy (`root`: the release folder)."""
    label, findings = majority_findings(read_annotations(annotations_file(root)))
    image_ids = pd.Series(label.index, dtype=str)
    return pd.DataFrame(
        {
            "image_id": image_ids,
            "patient_id": image_ids,
            "findings": findings.to_numpy(),
            "label": label.to_numpy(),
            "view": "",
            "sex": "",
            "age": -1,
            "site": "",
            "path": [f"train/{i}.dicom" for i in image_ids],
        }
    )
