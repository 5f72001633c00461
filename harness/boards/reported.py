"""Numbers a paper published on a board's protocol, kept beside the runs verified here.

A board file may hold `[[reported]]` entries (as RobustBench keeps the authors' number next to
its own). They are never ranked: the board page lists them marked "reported in <source>, not
run here". Values are on xrbench's scale (an AUROC of 67.5 % is 0.675).

    [[reported]]
    method = "AE (latent 16)"          # as the paper names it
    metric = "auroc"                   # a metric of xrbench's catalogue
    value = 0.675
    spread = 0.009                     # optional: the standard deviation over runs
    n_runs = 3                         # optional
    source = "Cai et al., MICCAI 2024, Table 2"
    protocol = "64x64, latent 16, ..." # optional: what differs from this board
    runs_here = { method = "ae", params = { latent = 16 } }
                                       # optional: the xrbench method and parameters that
                                       # run this recipe; the board page sets their runs'
                                       # mean over seeds beside the reported number
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.core.errors import XRBenchError
from harness.core.metrics import METRICS

REQUIRED = {"method": str, "metric": str, "value": float, "source": str}
OPTIONAL = {"spread": float, "n_runs": int, "protocol": str, "runs_here": dict}


def check_reported(entries: object, task: str, path: Path) -> tuple[dict, ...]:
    """The entries, each checked: known keys of the right type, a metric of the board's task, a
    finite value, a spread not below zero, at least one run, a source."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise XRBenchError(f"board file {path}: reported must be [[reported]] tables")
    return tuple(_checked(entry, task, f"board file {path}, [[reported]] entry {k + 1}")
                 for k, entry in enumerate(entries))  # fmt: skip


def _checked(entry: dict, task: str, where: str) -> dict:
    kinds = REQUIRED | OPTIONAL
    unknown = sorted(set(entry) - set(kinds))
    if unknown:
        raise XRBenchError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(kinds)})")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise XRBenchError(f"{where}: no {missing[0]} (every reported number names its {', '.join(REQUIRED)})")
    for key, value in entry.items():
        kind = kinds[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (kind is float and not number) or (kind is not float and not isinstance(value, kind)) or value is True:
            raise XRBenchError(f"{where}: {key} = {value!r} is not a {kind.__name__}")
    if not entry["source"].strip():
        raise XRBenchError(f"{where}: source is empty; say where the number was published")
    if entry["metric"] not in METRICS or task not in METRICS.get(entry["metric"]).tasks:
        raise XRBenchError(f"{where}: metric {entry['metric']!r} is not one of xrbench's {task} metrics")
    if not math.isfinite(entry["value"]) or not math.isfinite(entry.get("spread", 0.0)) or entry.get("spread", 0) < 0:
        raise XRBenchError(f"{where}: value and spread must be finite numbers, the spread not negative")
    if entry.get("n_runs", 1) < 1:
        raise XRBenchError(f"{where}: n_runs = {entry['n_runs']} must be at least 1")
    recipe = entry.get("runs_here", {"method": "unnamed"})
    if (
        not (isinstance(recipe.get("method"), str) and recipe["method"].strip())
        or not isinstance(recipe.get("params", {}), dict)
        or (set(recipe) - {"method", "params"})
    ):
        raise XRBenchError(f'{where}: runs_here must be {{ method = "name", params = {{ ... }} }}, not {recipe!r}')
    return {key: float(value) if kinds[key] is float else value for key, value in entry.items()}
