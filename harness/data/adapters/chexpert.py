"""CheXpert (`CheXpert-v1.0` and `CheXpert-v1.0-small`): `train.csv` and `valid.csv` with
`Path, Sex, Age, Frontal/Lateral, AP/PA` and the 14 observation columns."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.core.errors import XRBenchError
from harness.data.adapters.chexpert_labels import OBSERVATIONS, anomaly_labels

REQUIRED = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS)
PATIENT = re.compile(r"patient(\d+)")
STUDY = re.compile(r"study(\d+)")


def _read(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"Path": str, "Sex": str, "Frontal/Lateral": str, "AP/PA": str})
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError) as exc:
        raise XRBenchError(f"cannot read CheXpert table {path}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the CheXpert columns {missing}")
    return table


def read_chexpert(
    root: Path,
    uncertainty: str = "ignore",
    frontal_only: bool = True,
    uncertain_positive: list[str] | tuple[str, ...] = (),
    views: list[str] | tuple[str, ...] = (),
    support_devices: bool = True,
) -> pd.DataFrame:
    """Entries (image paths relative to `root`, the folder holding train.csv and valid.csv).

    `official_split` keeps the release's train/valid assignment (valid.csv may be absent: the
    boards use train.csv only); labels as `chexpert_labels` defines them, with the uncertainty
    policy and the findings read as present when uncertain. `views` keeps those AP/PA values
    only; `support_devices = false` leaves out images with support devices positive or
    uncertain (the UPD protocol's anomaly boards)."""
    for option, value in (("views", views), ("uncertain_positive", uncertain_positive)):
        if isinstance(value, str):
            raise XRBenchError(f"chexpert option {option} must be a list, such as [{value!r}], not {value!r}")
    frames = []
    for name, split in (("train.csv", "train"), ("valid.csv", "valid")):
        if name == "valid.csv" and not (root / name).exists():
            continue
        table = _read(root / name)
        table["official_split"] = split
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    if frontal_only:
        table = table[table["Frontal/Lateral"] == "Frontal"]
    if views:
        table = table[table["AP/PA"].isin(list(views))]
    if not support_devices:
        table = table[~pd.to_numeric(table["Support Devices"], errors="coerce").isin([1.0, -1.0])]
    table = table.reset_index(drop=True)
    # `Path` starts with the release folder name (CheXpert-v1.0-small/train/...): drop it.
    image_id = table["Path"].str.split("/", n=1).str[1]
    patient = table["Path"].str.extract(PATIENT, expand=False)
    if patient.isna().any():
        raise XRBenchError(f"no patientNNNNN in path {table.loc[patient.isna(), 'Path'].iloc[0]!r}")
    label, findings = anomaly_labels(table, uncertainty, tuple(uncertain_positive))
    return pd.DataFrame(
        {
            "image_id": image_id,
            "patient_id": "chexpert-" + patient,
            "study_id": table["Path"].str.extract(STUDY, expand=False),
            "findings": findings,
            "label": label,
            "view": table["AP/PA"].fillna(""),
            "sex": table["Sex"].map({"Male": "M", "Female": "F"}).fillna(""),
            "age": table["Age"].fillna(-1).astype(int),
            "site": "",
            "official_split": table["official_split"],
            "path": image_id,
        }
    )
