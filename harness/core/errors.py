"""Errors that the CLI prints as one clear message instead of a stack trace."""


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
