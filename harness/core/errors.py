"""Errors that the CLI prints as one clear message instead of a stack trace."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes, bidirectional overrides) written as
    `\\xNN` escapes: what a message quotes from a bundle or a file cannot drive the terminal."""
    return CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none)."""
    return (str(exc).strip().splitlines() or [""])[0]


class XRBenchError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ManifestHashMismatch(XRBenchError):
    pass


class DataIntegrityError(XRBenchError):
    pass


class UnknownMethodError(XRBenchError):
    pass


class UnknownBoardError(XRBenchError):
    pass


class WeightsUnavailable(XRBenchError):
    pass


class MethodOutputError(XRBenchError):
    pass


class ParameterError(XRBenchError):
    pass


class UnknownRunError(XRBenchError, KeyError):
    """A run id that is not in the results database."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DatabaseLocked(XRBenchError):
    """The results database stayed locked by another process."""


class MethodFailure(XRBenchError):
    """A method raised: the message names the method, the stage and the batch."""


@contextmanager
def noted(doing: str) -> Iterator[None]:
    """Add "while <doing>" to an unexpected exception passing through, so that the one line
    the CLI prints names the stage and the object (a file, a run, a bundle)."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, XRBenchError):
            exc.add_note(f"while {doing}")
        raise
