"""The 14 CheXpert observations and their value coding, shared by CheXpert and MIMIC-CXR-JPG
(whose `-chexpert.csv` and `-negbio.csv` label files use the same names and codes).

Codes: 1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned (read as negative).
The uncertainty policy is part of a board: `ignore` (an uncertain finding is unknown), `zeros`
(read as absent) or `ones` (read as present), with `uncertain_positive` naming findings read as
present whatever the policy (the CheXpert paper's U-Ones for Atelectasis and Edema).

Image labels (the anomaly label, also which images a multi-label board keeps):
- 1, abnormal: any finding positive after the policy (Support Devices is not a finding);
- 0, normal: the labeler wrote "No Finding" = 1, or, under `zeros`, the only abnormal
  evidence was uncertain (read as absent, the report holds no finding);
- unlabelled (NaN, left out of every board): under `ignore`, images whose only abnormal
  evidence is uncertain; under every policy, images where nothing is positive or uncertain but
  the labeler did not write "No Finding" either (4,184 frontal images of CheXpert's train.csv:
  reports it could not call normal, so neither does xrbench).
`findings` lists the positive findings (`|`-separated), "No Finding" for a normal image and is
empty for an unlabelled one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError

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


def apply_uncertainty(values: pd.DataFrame, policy: str, uncertain_positive: tuple[str, ...] = ()) -> pd.DataFrame:
    """Observation columns to 1.0 / 0.0 / NaN (uncertain under `ignore`)."""
    if policy not in UNCERTAINTY_POLICIES:
        raise XRBenchError(f"uncertainty policy {policy!r}: choose one of {', '.join(UNCERTAINTY_POLICIES)}")
    unknown = sorted(set(uncertain_positive) - set(FINDINGS))
    if unknown:
        raise XRBenchError(f"uncertain_positive names {unknown}, not CheXpert findings ({', '.join(FINDINGS)})")
    out = values.apply(pd.to_numeric, errors="coerce").fillna(0.0)
    bad = ~out.isin([1.0, 0.0, -1.0])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise XRBenchError(
            f"label value {values.iloc[row, col]!r} in column {values.columns[col]!r} is not 1, 0, -1 or blank"
        )
    ones = [c for c in out.columns if c in uncertain_positive]
    out[ones] = out[ones].replace(-1.0, 1.0)
    return out.replace(-1.0, {"ignore": np.nan, "zeros": 0.0, "ones": 1.0}[policy])


def anomaly_labels(
    observations: pd.DataFrame, policy: str, uncertain_positive: tuple[str, ...] = ()
) -> tuple[pd.Series, pd.Series]:
    """(label, findings) per row, as the module docstring defines them."""
    raw = observations[list(OBSERVATIONS)].apply(pd.to_numeric, errors="coerce")
    values = apply_uncertainty(observations[list(OBSERVATIONS)], policy, uncertain_positive)
    findings = list(FINDINGS[:-1])  # Support Devices is not a finding
    positive = values[findings] == 1.0
    abnormal = positive.any(axis=1)
    uncertain = (raw[findings] == -1.0).any(axis=1)
    normal = ~abnormal & ((raw["No Finding"] == 1.0) | (uncertain & (policy == "zeros")))
    label = pd.Series(np.where(abnormal, 1.0, np.where(normal, 0.0, np.nan)), index=observations.index)
    names = pd.Series("", index=observations.index)
    for finding in findings:  # column by column: vectorised over 200,000 rows
        names = names.where(~positive[finding], names + "|" + finding)
    text = names.str.removeprefix("|").where(abnormal, np.where(normal, NO_FINDING, ""))
    return label, text
