"""Slices: the manifest columns a board reports its metrics per value of, and the ones the
harness derives (`age_bin` from `age`, `num_findings` from `findings`)."""

from __future__ import annotations

import pandas as pd

from harness.core.errors import XRBenchError

NO_FINDING = "No Finding"
"""The `findings` of a normal image, as NIH ChestX-ray14 writes it (every adapter follows it)."""
DERIVED_SLICES = {"age_bin": "age", "num_findings": "findings"}
"""Slice columns the harness derives, and the manifest column each is derived from."""


def check_slices(slices: tuple[str, ...], columns: list[str], where: str) -> None:
    """Refuse a slice that is neither a manifest column nor derived from one."""
    for name in slices:
        if DERIVED_SLICES.get(name, name) not in columns:
            known = sorted(set(columns) - {"image_id", "patient_id", "split"}) + sorted(DERIVED_SLICES)
            raise XRBenchError(f"{where}: slice {name!r} is not a manifest column; slices can be {', '.join(known)}")


def slice_values(meta: pd.DataFrame, column: str) -> pd.Series:
    """A metadata column as slice values; `age_bin` is derived from `age`, `num_findings` (case
    complexity: 0, 1 or 2+ findings) from `findings`."""
    if column == "num_findings":
        named = meta["findings"].fillna("").str.split("|").map(lambda fs: sum(f not in ("", NO_FINDING) for f in fs))
        return named.clip(upper=2).map({0: "0", 1: "1", 2: "2+"})
    if column == "age_bin":
        return pd.cut(meta["age"].astype(float), [0, 40, 60, 200], right=False, labels=["<40", "40-59", "60+"]).astype(
            str
        )
    return meta[column].astype(str)
