"""xrbench from Python and notebooks: `import xrbench as xb`, then `xb.bench("padim")`.

The functions are documented in docs/python-api.md and in their docstrings; they are the code
the `xrbench` command calls. Errors a user can fix raise the typed exceptions below, each a
subclass of `XRBenchError`, with the message the command prints.
"""

from harness import __version__
from harness.core.errors import (
    DatabaseLocked,
    DataIntegrityError,
    ManifestHashMismatch,
    MethodFailure,
    MethodOutputError,
    ParameterError,
    UnknownBoardError,
    UnknownMethodError,
    UnknownRunError,
    WeightsUnavailable,
    XRBenchError,
)
from harness.public import (
    Results,
    Run,
    bench,
    database,
    grid,
    import_bundles,
    leaderboard,
    load_bundle,
    results,
    verify,
)
from harness.submissions.schema import BundleError

__all__ = [
    "BundleError",
    "DataIntegrityError",
    "DatabaseLocked",
    "ManifestHashMismatch",
    "MethodFailure",
    "MethodOutputError",
    "ParameterError",
    "Results",
    "Run",
    "UnknownBoardError",
    "UnknownMethodError",
    "UnknownRunError",
    "WeightsUnavailable",
    "XRBenchError",
    "__version__",
    "bench",
    "database",
    "grid",
    "import_bundles",
    "leaderboard",
    "load_bundle",
    "results",
    "verify",
]
