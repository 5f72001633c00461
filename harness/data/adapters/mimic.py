"""MIMIC-CXR-JPG (2.0.0 / 2.1.0): metadata, CheXpert- or NegBio-derived labels per study, and
the official split, joined on subject and study; images at
`files/p{first two digits}/p{subject_id}/s{study_id}/{dicom_id}.jpg`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.core.errors import XRBenchError
from harness.data.adapters.chexpert_labels import OBSERVATIONS, anomaly_labels

FRONTAL = ("PA", "AP")


def _table(root: Path, stem: str, columns: tuple[str, ...]) -> pd.DataFrame:
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if (root / name).exists():
            try:
                table = pd.read_csv(root / name, dtype={"dicom_id": str, "ViewPosition": str})
            except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
                raise XRBenchError(f"cannot read {root / name}: {exc}") from exc
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise XRBenchError(f"{root / name} lacks columns {missing}")
            return table
    raise XRBenchError(f"{root} has no {stem}.csv.gz (or .csv): is this the MIMIC-CXR-JPG root?")


def image_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    s = str(subject_id)
    return f"files/p{s[:2]}/p{s}/s{study_id}/{dicom_id}.jpg"


def read_mimic(
    root: Path, labeler: str = "chexpert", uncertainty: str = "ignore", frontal_only: bool = True
) -> pd.DataFrame:
    if labeler not in ("chexpert", "negbio"):
        raise XRBenchError(f"labeler {labeler!r}: choose chexpert or negbio")
    meta = _table(root, "mimic-cxr-2.0.0-metadata", ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    labels = _table(root, f"mimic-cxr-2.0.0-{labeler}", ("subject_id", "study_id", *OBSERVATIONS))
    split = _table(root, "mimic-cxr-2.0.0-split", ("dicom_id", "study_id", "subject_id", "split"))
    if frontal_only:
        meta = meta[meta["ViewPosition"].isin(FRONTAL)]
    table = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="left", validate="one_to_one")
    table = table.merge(labels, on=["subject_id", "study_id"], how="left", validate="many_to_one")
    # Studies missing from the label file keep their row with label NaN (reported by `data
    # check`, left out of anomaly boards), never dropped silently.
    label, findings = anomaly_labels(table, uncertainty)
    return pd.DataFrame(
        {
            "image_id": table["dicom_id"],
            "patient_id": "mimic-" + table["subject_id"].astype(str),
            "study_id": table["study_id"].astype(str),
            "findings": findings,
            "label": label,
            "view": table["ViewPosition"],
            "sex": "",
            "age": -1,
            "site": "",
            "official_split": table["split"].fillna(""),
            "path": [image_path(*r) for r in table[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)],
        }
    )
