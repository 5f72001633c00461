"""Where xrbench finds its definitions and keeps its data, caches and results.

Definitions (board files, frozen manifests, dataset cards, the site's templates) are read from
the checkout when xrbench runs from one, else from the copy an installed wheel carries
(`harness/_shipped/`); results and built sites go to the workspace: the checkout, or the
current folder for an installed wheel. Every location can be moved with an environment
variable; the defaults keep a checkout clean (generated data and caches live under the user's
cache folder, results under `results/`, which git ignores).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import XRBenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the `harness` package: a checkout, or site-packages."""
SHIPPED = Path(__file__).resolve().parents[1] / "_shipped"
"""The definitions an installed wheel carries (leaderboards/, datasets/, site/)."""


def checkout() -> Path | None:
    """The checkout xrbench runs from, or None when it is installed from a wheel."""
    return REPO_ROOT if (REPO_ROOT / "leaderboards").is_dir() and (REPO_ROOT / "harness").is_dir() else None


def project_root() -> Path:
    """Where `leaderboards/`, `datasets/` and `site/` are read from (override: XRBENCH_ROOT)."""
    override = os.environ.get("XRBENCH_ROOT")
    return Path(override) if override else checkout() or SHIPPED


def workspace_root() -> Path:
    """Where results, built sites and new bundles are written: XRBENCH_ROOT, the checkout, or
    the current folder when xrbench is installed from a wheel."""
    override = os.environ.get("XRBENCH_ROOT")
    return Path(override) if override else checkout() or Path.cwd()


def cache_root() -> Path:
    """Preprocessed tensors and model checkpoints (override: XRBENCH_CACHE)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrbench"
    return Path(os.environ.get("XRBENCH_CACHE", default))


def data_root() -> Path:
    """Generated synthetic datasets (override: XRBENCH_DATA)."""
    return Path(os.environ.get("XRBENCH_DATA", cache_root() / "data"))


def default_db() -> Path:
    """The results database (override: XRBENCH_DB or --db)."""
    return Path(os.environ.get("XRBENCH_DB", workspace_root() / "results" / "xrbench.duckdb"))


def under(root: Path, *parts: str) -> Path:
    """`root / parts...`, refused in one line when it resolves outside `root` (a part holding
    `..`, an absolute path or a link leading out)."""
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise XRBenchError(f"{'/'.join(parts)} would lie outside {root}; names may not hold '..' or '/'")
    return path
