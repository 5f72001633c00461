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
    """Every error below: a problem the user can fix, with a message that says how."""

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of a traceback: the message and its notes, as
        the command line prints them. The traceback stays one call away."""
        lines = [f"{type(self).__name__}: {printable(str(self))}"]
        lines += [f"  {printable(note)}" for note in getattr(self, "__notes__", [])]
        return [*lines, "  (the traceback: import sys, traceback; traceback.print_exception(sys.last_value))"]


class ManifestHashMismatch(XRBenchError):
    """A split manifest or label file whose SHA-256 is not the one its board file froze."""


class DataIntegrityError(XRBenchError):
    """Data that is not what it should be: an unreadable image, or stored predictions and
    maps that no longer match the hash their run recorded."""


class UnknownMethodError(XRBenchError):
    """A method name that no module registers (the message suggests the closest)."""


class UnknownBoardError(XRBenchError):
    """A board name without a board file in leaderboards/, or a path that is not one."""


class WeightsUnavailable(XRBenchError):
    """Pretrained weights that are not on this machine: the message says what to fetch and
    where to put it (nothing is downloaded at run time)."""


class MethodOutputError(XRBenchError):
    """A method's output that breaks the contract: a wrong shape or type, or values that are
    not finite; the message names the method, the images and the problem."""


class ParameterError(XRBenchError):
    """A method parameter that is unknown, of the wrong type, out of range or not finite."""


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
