"""Experiment files: a grid (methods, their fixed and swept parameters, boards, seeds) in one
versioned TOML file, run by `xrbench grid --config experiments/<name>.toml`.

    description = "PatchCore's coreset ratio on the chest phantoms"
    boards = ["synth-cxr-ad"]
    seeds = [0, 1, 2]
    shots = [1, 4, 16]             # optional: the few-shot track (k normal training images)
    noise = [0.05, 0.1]            # optional: the noisy-training track (share of abnormal ones)
    corruptions = false            # optional: the stress suite (default true)

    [methods.patchcore]
    coreset_ratio = [0.01, 0.05]   # a list sweeps the parameter
    backbone = "resnet18"          # a single value fixes it

Every key is checked before anything runs: an unknown key names the file and the key, and the
methods and their parameters are checked as the grid builds its cells.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import XRBenchError

KEYS = {
    "description": str, "boards": list, "seeds": list, "shots": list, "noise": list, "corruptions": bool,
    "methods": dict,
}  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    path: Path
    description: str
    methods: list[str]
    boards: list[str]
    seeds: list[int] | None
    corruptions: bool
    overrides: dict[str, dict[str, Any]]  # method -> parameter -> value, or a list of values to sweep
    shots: list[int] | None = None  # the few-shot track: normal training images per variant
    noise: list[float] | None = None  # the noisy-training track: shares of abnormal training images


def whole_numbers(values: list, low: int) -> bool:
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)


def load_experiment(path: Path) -> Experiment:
    """Read and check an experiment file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise XRBenchError(f"no experiment file {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise XRBenchError(f"experiment file {path} is not valid TOML: {exc}") from None
    for key, value in raw.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise XRBenchError(
                f"experiment file {path}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        if not isinstance(value, KEYS[key]):
            raise XRBenchError(f"experiment file {path}: {key} must be a {KEYS[key].__name__}")
    methods = raw.get("methods", {})
    if not methods or not all(isinstance(p, dict) for p in methods.values()):
        raise XRBenchError(
            f"experiment file {path}: give each method as a table, [methods.NAME] (empty for its defaults)"
        )
    boards, seeds = raw.get("boards", ["synth-cxr-ad"]), raw.get("seeds")
    if not boards or not all(isinstance(b, str) for b in boards):
        raise XRBenchError(f"experiment file {path}: boards must be a list of board names")
    shots = raw.get("shots")
    for key, values, low in (("seeds", seeds, 0), ("shots", shots, 1)):
        if values is not None and not whole_numbers(values, low):
            raise XRBenchError(f"experiment file {path}: {key} must be a list of whole numbers >= {low}")
    noise = raw.get("noise")
    if noise is not None and not (noise and all(isinstance(x, (int, float)) and 0 <= x < 1 for x in noise)):
        raise XRBenchError(f"experiment file {path}: noise must be a list of shares in [0, 1)")
    for method, params in methods.items():
        for key, value in params.items():
            if isinstance(value, list) and (not value or len({repr(v) for v in value}) < len(value)):
                raise XRBenchError(f"experiment file {path}: {method}.{key} sweeps distinct values; give at least one")
    return Experiment(path, raw.get("description", ""), list(methods), boards, seeds, raw.get("corruptions", True),
                      {m: dict(p) for m, p in methods.items()}, shots, noise)  # fmt: skip
