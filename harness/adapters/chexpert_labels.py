"""The 14 CheXpert observations and their value coding, shared by CheXpert and MIMIC-CXR-JPG
(whose `-chexpert.csv` and `-negbio.csv` label files use the same names and codes).

Codes: 1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned (read as negative).
The uncertainty policy is part of a board: `ignore` (an image whose only abnormal evidence is
uncertain is left out of anomaly boards; NaN for multi-label training), `zeros`, or `ones`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import XRBenchError

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FINDINGS = OBSERVATIONS[1:]
UNCERTAINTY_POLICIES = ("ignore", "zeros", "ones")


def apply_uncertainty(values: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Observation columns to 1.0 / 0.0 / NaN (uncertain under `ignore`)."""
    if policy not in UNCERTAINTY_POLICIES:
        raise XRBenchError(f"uncertainty policy {policy!r}: choose one of {', '.join(UNCERTAINTY_POLICIES)}")
    out = values.apply(pd.to_numeric, errors="coerce").fillna(0.0)
    bad = ~out.isin([1.0, 0.0, -1.0])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise XRBenchError(
            f"label value {values.iloc[row, col]!r} in column {values.columns[col]!r} is not 1, 0, -1 or blank"
        )
    return out.replace(-1.0, {"ignore": np.nan, "zeros": 0.0, "ones": 1.0}[policy])


def anomaly_labels(observations: pd.DataFrame, policy: str) -> tuple[pd.Series, pd.Series]:
    """(label, findings) per row: label 0 for 'No Finding', 1 for any positive finding
    (support devices do not count), NaN when neither is certain."""
    values = apply_uncertainty(observations[list(OBSERVATIONS)], policy)
    positive = values[list(FINDINGS[:-1])] == 1.0
    abnormal = positive.any(axis=1)
    normal = (values["No Finding"] == 1.0) & ~abnormal
    label = pd.Series(np.where(abnormal, 1.0, np.where(normal, 0.0, np.nan)), index=observations.index)
    findings = positive.apply(lambda row: "|".join(row.index[row]) or "No Finding", axis=1)
    return label, findings
