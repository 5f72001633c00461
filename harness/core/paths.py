"""Where xrbench finds its definitions and keeps its data, caches and results.

Every location can be moved with an environment variable; the defaults keep the repository
clean (generated data and caches live under the user's cache folder, results under
`results/`, which git ignores).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The checkout holding `leaderboards/` and `datasets/` (override: XRBENCH_ROOT)."""
    return Path(os.environ.get("XRBENCH_ROOT", REPO_ROOT))


def cache_root() -> Path:
    """Preprocessed tensors and model checkpoints (override: XRBENCH_CACHE)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrbench"
    return Path(os.environ.get("XRBENCH_CACHE", default))


def data_root() -> Path:
    """Generated synthetic datasets (override: XRBENCH_DATA)."""
    return Path(os.environ.get("XRBENCH_DATA", cache_root() / "data"))


def default_db() -> Path:
    """The results database (override: XRBENCH_DB or --db)."""
    return Path(os.environ.get("XRBENCH_DB", project_root() / "results" / "xrbench.duckdb"))
