"""Dental panoramic radiographs: a folder tree of DICOM files plus labels.

Files are found by the DICOM preamble, whatever their extension. Labels come from a CSV with
a `label` column (normal/abnormal or 0/1), an optional `finding` column, and either a `path`
column (relative to the root) or a `sop_instance_uid` column; an optional `patient_id` column
overrides the DICOM header's PatientID. Without a CSV, a `normal/` or `abnormal/` folder in
each file's path gives its label.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import DataIntegrityError, XRBenchError
from harness.data.dicom import dicom_header, is_dicom

LABEL_VALUES = {"normal": 0, "0": 0, "abnormal": 1, "1": 1}


def find_dicom_files(root: Path) -> list[str]:
    """Relative POSIX paths of every DICOM file under `root`, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and is_dicom(p))


def age_years(value: str) -> int:
    """DICOM AgeString ('045Y', '006M') to whole years; -1 when absent."""
    match = re.fullmatch(r"(\d{1,3})([DWMY]?)", value.strip())
    if not match:
        return -1
    number, unit = int(match.group(1)), match.group(2) or "Y"
    return {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}[unit]


def _labels_from_csv(path: Path, files: list[str], headers: dict[str, dict]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError) as exc:
        raise XRBenchError(f"cannot read dental labels {path}: {exc}") from exc
    if "label" not in table.columns or not {"path", "sop_instance_uid"} & set(table.columns):
        raise XRBenchError(
            f"{path} needs a 'label' column and a 'path' or 'sop_instance_uid' column; found {list(table.columns)}"
        )
    bad = sorted(set(table["label"].str.lower()) - set(LABEL_VALUES))
    if bad:
        raise XRBenchError(f"{path}: unknown label values {bad}; use normal/abnormal or 0/1")
    if "path" in table.columns:
        table["image_id"] = table["path"].str.replace("\\", "/", regex=False)
    else:
        by_uid = {h["sop_instance_uid"]: f for f, h in headers.items()}
        table["image_id"] = table["sop_instance_uid"].map(by_uid)
        unmatched = table["image_id"].isna()
        if unmatched.any():
            raise DataIntegrityError(
                f"{path}: {int(unmatched.sum())} SOPInstanceUIDs match no DICOM file "
                f"(first: {table.loc[unmatched, 'sop_instance_uid'].iloc[0]})"
            )
    return table


def _labels_from_folders(files: list[str]) -> pd.DataFrame:
    labels = []
    for f in files:
        parts = {p.lower() for p in Path(f).parts[:-1]}
        kinds = parts & {"normal", "abnormal"}
        if len(kinds) != 1:
            raise XRBenchError(f"{f}: no labels CSV and no single normal/ or abnormal/ folder in its path")
        labels.append(kinds.pop())
    return pd.DataFrame({"image_id": files, "label": labels})


def read_dental(root: Path, labels_csv: Path | None = None) -> pd.DataFrame:
    """Entries with image_id (relative path), patient_id, findings, label, view, sex, age, site."""
    files = find_dicom_files(root)
    if not files:
        raise XRBenchError(f"no DICOM files under {root}")
    headers = {f: dicom_header(root / f) for f in files}
    table = _labels_from_csv(labels_csv, files, headers) if labels_csv else _labels_from_folders(files)
    unlabelled = sorted(set(files) - set(table["image_id"]))
    if unlabelled:
        raise DataIntegrityError(
            f"{len(unlabelled)} DICOM files under {root} have no label (first: {unlabelled[0]}); "
            "label them or move them out of the tree"
        )
    label = table["label"].str.lower().map(LABEL_VALUES).astype(int)
    finding = table["finding"] if "finding" in table.columns else pd.Series("", index=table.index)
    patient = table["patient_id"] if "patient_id" in table.columns else pd.Series("", index=table.index)
    header = [headers.get(i, {}) for i in table["image_id"]]
    patient = [p or h.get("patient_id", "") for p, h in zip(patient, header, strict=True)]
    without = [i for i, p in zip(table["image_id"], patient, strict=True) if not p]
    if without:
        raise DataIntegrityError(
            f"{len(without)} images under {root} have no patient id in the labels CSV or the DICOM header "
            f"(first: {without[0]}; a truncated header loses it): add a patient_id column to the labels CSV"
        )
    return pd.DataFrame(
        {
            "image_id": table["image_id"],
            "patient_id": patient,
            "findings": [f or ("Abnormal" if lab else NO_FINDING) for f, lab in zip(finding, label, strict=True)],
            "label": label,
            "view": "PAN",
            "sex": [h.get("sex", "") for h in header],
            "age": [age_years(h.get("age", "")) for h in header],
            "site": "",
            "path": table["image_id"],
        }
    )


def read_dental_folder(root: Path, labels: str = "labels.csv") -> pd.DataFrame:
    """`read_dental` with the labels in `root/labels` when that file exists, else from
    `normal/` and `abnormal/` folders."""
    return read_dental(root, root / labels if (root / labels).exists() else None)
