"""The widths of the integers the results database stores, and checks against them.

Seeds, board versions and counts reach DuckDB's INTEGER (32-bit) and BIGINT (64-bit) columns;
a value beyond them is refused where it is read, in one line, rather than by the database
halfway through a run.
"""

from __future__ import annotations

from harness.core.errors import XRBenchError

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def check_int(value: object, what: str, low: int = 0, high: int = INT32_MAX) -> int:
    """`value` when it is a whole number within [low, high]; else one line naming `what`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise XRBenchError(f"{what} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise XRBenchError(f"{what} = {value} is out of range ({low} to {high})")
    return value
