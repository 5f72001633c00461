"""RSNA Pneumonia Detection Challenge (Kaggle, stage 2): `stage_2_train_labels.csv` with
`patientId, x, y, width, height, Target` (one row per lung-opacity box, one row with empty box
for an image without opacity) and the images `stage_2_train_images/<patientId>.dcm`.

Each image has its own `patientId` (the release has one radiograph per patient), so splits by
it are patient-disjoint. Normal = Target 0 ("No Finding"), abnormal = Target 1 ("Lung
Opacity"). Age, sex and view are in the DICOM headers only: read from a headers table beside
the labels when there is one (`stage_2_train_images_dicom_headers.csv`: PatientID, PatientAge,
PatientSex, ViewPosition), else from the DICOM files present. `rsna_class` carries the
detailed class ("Normal", "No Lung Opacity / Not Normal", "Lung Opacity") when
`stage_2_detailed_class_info.csv` is present, empty otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError
from harness.data.adapters.dental import age_years
from harness.data.dicom import dicom_header

LABELS = "stage_2_train_labels.csv"
HEADERS = "stage_2_train_images_dicom_headers.csv"
CLASSES = "stage_2_detailed_class_info.csv"
IMAGES = "stage_2_train_images"
OPACITY = "Lung Opacity"


def read_labels(path: Path) -> pd.DataFrame:
    """The labels table, checked: Target 0 or 1 and a box on every Target 1 row."""
    try:
        table = pd.read_csv(path, dtype={"patientId": str})
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError, pd.errors.EmptyDataError) as exc:
        raise XRBenchError(f"cannot read RSNA labels {path}: {exc}") from exc
    missing = [c for c in ("patientId", "x", "y", "width", "height", "Target") if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the RSNA columns {missing}; found {list(table.columns)}")
    bad = ~table["Target"].isin([0, 1]) | (
        (table["Target"] == 1) & table[["x", "y", "width", "height"]].isna().any(axis=1)
    )
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise XRBenchError(f"{path}, line {row + 2}: Target must be 0 or 1, with a box when 1")
    return table


def read_boxes(path: Path) -> pd.DataFrame:
    """The lung-opacity boxes (image_id, finding, x, y, w, h) in the 1024 x 1024 image pixels."""
    table = read_labels(path)
    boxes = table[table["Target"] == 1]
    return pd.DataFrame(
        {
            "image_id": boxes["patientId"],
            "finding": OPACITY,
            "x": boxes["x"].astype(float),
            "y": boxes["y"].astype(float),
            "w": boxes["width"].astype(float),
            "h": boxes["height"].astype(float),
        }
    ).reset_index(drop=True)


def _metadata(root: Path, image_ids: pd.Series) -> pd.DataFrame:
    """age, sex, view per image, from the headers table or the DICOM files present."""
    if (root / HEADERS).exists():
        table = pd.read_csv(root / HEADERS, dtype={"PatientID": str, "PatientSex": str, "ViewPosition": str})
        table = table.drop_duplicates("PatientID").set_index("PatientID")
        rows = table.reindex(image_ids)
        age = pd.to_numeric(rows["PatientAge"], errors="coerce").fillna(-1).astype(int)
        return pd.DataFrame(
            {
                "age": age.to_numpy(),
                "sex": rows["PatientSex"].fillna("").to_numpy(),
                "view": rows["ViewPosition"].fillna("").to_numpy(),
            }
        )
    headers = []
    for image_id in image_ids:
        path = root / IMAGES / f"{image_id}.dcm"
        headers.append(dicom_header(path) if path.exists() else {})
    return pd.DataFrame(
        {
            "age": [age_years(h.get("age", "")) for h in headers],
            "sex": [h.get("sex", "") for h in headers],
            "view": [h.get("view", "") for h in headers],
        }
    )


def read_rsna(root: Path) -> pd.DataFrame:
    """Entries for a local copy of the RSNA stage 2 training images (`root`: the folder holding
    stage_2_train_labels.csv)."""
    table = read_labels(root / LABELS)
    target = table.groupby("patientId", sort=False)["Target"].max()
    image_ids = pd.Series(target.index, dtype=str)
    meta = _metadata(root, image_ids)
    classes = {}
    if (root / CLASSES).exists():
        detailed = pd.read_csv(root / CLASSES, dtype=str)
        classes = dict(zip(detailed["patientId"], detailed["class"], strict=True))
    label = target.to_numpy().astype(int)
    return pd.DataFrame(
        {
            "image_id": image_ids,
            "patient_id": image_ids,
            "findings": [OPACITY if v else NO_FINDING for v in label],
            "label": label,
            "view": meta["view"],
            "sex": meta["sex"],
            "age": meta["age"],
            "site": "",
            "rsna_class": [classes.get(i, "") for i in image_ids],
            "path": [f"{IMAGES}/{i}.dcm" for i in image_ids],
        }
    )
