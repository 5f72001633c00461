"""PadChest (Bustos et al., Medical Image Analysis 2020; Hospital San Juan, Alicante, Spain):
`PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv` (one row per image: `ImageID`,
`ImageDir`, `PatientID`, `PatientBirth`, `PatientSex_DICOM`, `StudyDate_DICOM`, `Projection`,
`MethodLabel`, `Labels`) and the images `<ImageDir>/<ImageID>` (16-bit PNGs).

`Labels` is a Python-style list of the report's findings, written by physicians for a
quarter of the images (`MethodLabel` "Physician") and by a recurrent network trained on them
for the rest ("RNN_model"). An image's anomaly label:
- normal ("No Finding"): its labels are exactly "normal";
- abnormal: any label is a radiological finding, that is not one of `NOT_FINDINGS` (study
  notes such as "unchanged") nor of `DEVICES` (tubes, catheters, prostheses, surgical
  material), which describe what is in the image rather than what is wrong;
- left out of every board (no label): "exclude" or "suboptimal study"; "normal" beside a
  finding; only notes and devices (neither called normal nor given a finding); or no labels
  at all.
`label_method = "physician"` keeps the physicians' labels only (the default: the boards are
scored on them); `"any"` keeps the network's too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError

LABELS = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
NORMAL = "normal"
UNUSABLE = frozenset({"exclude", "suboptimal study"})
NOT_FINDINGS = frozenset({"", "unchanged", "nipple shadow", "end on vessel"})
DEVICES = frozenset({
    "NSG tube", "aortic endoprosthesis", "artificial aortic heart valve", "artificial heart valve",
    "artificial mitral heart valve", "bone cement", "catheter", "central venous catheter",
    "central venous catheter via jugular vein", "central venous catheter via subclavian vein",
    "central venous catheter via umbilical vein", "chest drain tube", "double J stent", "dual chamber device",
    "electrical device", "endoprosthesis", "endotracheal tube", "external foreign body", "gastrostomy tube",
    "humeral prosthesis", "mammary prosthesis", "mastectomy", "metal", "nephrostomy tube",
    "osteosynthesis material", "pacemaker", "prosthesis", "reservoir central venous catheter",
    "single chamber device", "sternotomy", "surgery", "surgery breast", "surgery heart", "surgery humeral",
    "surgery lung", "surgery neck", "suture material", "tracheostomy tube", "ventriculoperitoneal drain tube",
})  # fmt: skip
METHODS = {"physician": ("Physician",), "any": ("Physician", "RNN_model")}


def parse_labels(text: object, where: str) -> list[str]:
    """A `Labels` cell as its list of findings (stripped); a cell that is not a list of strings
    is refused naming the file and line."""
    if not isinstance(text, str) or text.strip() in ("", "nan"):  # a report without labels: left out
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise XRBenchError(f"{where}: Labels {text[:40]!r} is not a list of findings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise XRBenchError(f"{where}: Labels {text[:40]!r} is not a list of findings")
    return [v.strip() for v in value]


def anomaly_label(labels: list[str]) -> tuple[float, str]:
    """(label, findings) of one image as the module docstring defines them: 1.0 with its
    findings `|`-joined, 0.0 with "No Finding", or NaN with "" when left out."""
    named = set(labels)
    findings = sorted(named - NOT_FINDINGS - DEVICES - UNUSABLE - {NORMAL})
    if named & UNUSABLE or (NORMAL in named and findings):
        return np.nan, ""
    if findings:
        return 1.0, "|".join(findings)
    return (0.0, NO_FINDING) if named == {NORMAL} else (np.nan, "")


def read_padchest(root: Path, label_method: str = "physician") -> pd.DataFrame:
    """Entries for a local PadChest copy (`root`: the folder holding the labels table and the
    numbered image folders)."""
    if label_method not in METHODS:
        raise XRBenchError(f"padchest option label_method = {label_method!r}: choose one of {', '.join(METHODS)}")
    path = root / LABELS
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=0)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise XRBenchError(f"cannot read PadChest labels {path}: {exc}") from exc
    needed = ["ImageID", "ImageDir", "PatientID", "PatientBirth", "PatientSex_DICOM", "StudyDate_DICOM", "Projection",
              "MethodLabel", "Labels"]  # fmt: skip
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the PadChest columns {missing}")
    table = table[table["MethodLabel"].isin(METHODS[label_method])].reset_index(drop=True)
    parsed = [parse_labels(t, f"{path}, image {i}") for t, i in zip(table["Labels"], table["ImageID"], strict=True)]
    label, findings = zip(*map(anomaly_label, parsed), strict=True) if parsed else ((), ())
    born = pd.to_numeric(table["PatientBirth"].str.split(".").str[0], errors="coerce")
    studied = pd.to_numeric(table["StudyDate_DICOM"].str[:4], errors="coerce")
    return pd.DataFrame(
        {
            "image_id": table["ImageID"],
            "patient_id": "padchest-" + table["PatientID"],
            "findings": list(findings),
            "label": np.array(label, dtype=float),
            "view": table["Projection"],
            "sex": table["PatientSex_DICOM"].where(table["PatientSex_DICOM"].isin(["M", "F"]), ""),
            "age": (studied - born).fillna(-1).astype(int),
            "site": "",
            "path": table["ImageDir"] + "/" + table["ImageID"],
        }
    )
