"""Names that become parts of paths: boards, methods, run ids, datasets.

One pattern for all of them, checked where a name is read (a board file, a method's card, a
bundle), so that no name can lead a write outside its folder (`../`, `/`, a drive letter).
"""

from __future__ import annotations

import re

from harness.core.errors import XRBenchError

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
"""Lower-case letters, digits and dashes, starting with a letter or digit, at most 100 long."""
NAME_RULE = "lower-case letters, digits and dashes, starting with a letter or digit (at most 100)"


def is_name(value: object) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def check_name(value: object, what: str, where: str = "") -> str:
    """`value` when it is a valid name; else one line naming `what` and `where` it was read."""
    if not is_name(value):
        prefix = f"{where}: " if where else ""
        raise XRBenchError(f"{prefix}{what} {value!r} is not a name: {NAME_RULE}")
    return value  # type: ignore[return-value]
