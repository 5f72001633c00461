"""Board files: one TOML file per board in `leaderboards/`, read and checked into a `Board`.

Relative paths in a board file are relative to that file. Every key is checked for its type and
range, the dataset and box format against `harness.boards.datasets`, the task's own keys and
the primary metric against `harness.boards.tasks`; a problem is one line naming the file and
the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from pathlib import Path

from harness.boards.datasets import DATASETS, box_formats, mask_formats
from harness.boards.reported import check_reported
from harness.boards.spec import Board, DatasetSpec
from harness.boards.tasks import task_spec
from harness.core.errors import UnknownBoardError, XRBenchError
from harness.core.limits import INT32_MAX
from harness.core.names import check_name
from harness.core.paths import project_root


def boards_dir() -> Path:
    return project_root() / "leaderboards"


def available_boards() -> list[str]:
    return sorted(p.stem for p in boards_dir().glob("*.toml"))


def board_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate
    path = boards_dir() / f"{name_or_path}.toml"
    if not path.exists() and (boards_dir() / "variants" / f"{name_or_path}.toml").exists():
        return boards_dir() / "variants" / f"{name_or_path}.toml"  # a few-shot variant (harness.data.variants)
    if not path.exists():
        close = difflib.get_close_matches(str(name_or_path), available_boards(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownBoardError(
            f"unknown board {str(name_or_path)!r}{hint} (available: {', '.join(available_boards()) or 'none'};"
            f" or pass the path of a board .toml file)"
        )
    return path


# Keys a board file may hold, with their TOML type and the values allowed (inclusive bounds).
KEY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "version": int,
    "description": str,
    "task": str,
    "resolution": int,
    "split_manifest": str,
    "split_sha256": str,
    "normal_label": str,
    "primary_metric": str,
    "bootstrap": int,
    "seed": int,
    "batch_size": int,
    "resample": str,
    "threshold": str,
    "threshold_quantile": float,
    "split": dict,
    "corruptions": dict,
    "slices": list,
    "min_slice_class": int,
    "map_sample": int,
    "reference_method": str,
    "labels_sha256": str,
    "targets": list,
    "dataset": dict,
    "test_dataset": dict,
    "ground_truth": dict,
    "stress_sha256": str,
    "reported": list,
    "variant": dict,
}
GROUND_TRUTH_KEYS = {
    "boxes": str,
    "boxes_sha256": str,
    "box_space": list,
    "box_format": str,
    "masks": str,
    "masks_sha256": str,
    "mask_format": str,
}
THRESHOLDS = ("best-f1", "normal-quantile")  # harness.scoring.anomaly
RESAMPLE_FILTERS = ("bilinear", "lanczos")  # the keys of harness.data.cache.RESAMPLING
RANGES = {  # the store keeps versions and seeds as 32-bit integers
    "version": (1, INT32_MAX),
    "resolution": (8, 4096),
    "bootstrap": (1, 1_000_000),
    "seed": (0, INT32_MAX),
    "batch_size": (1, 65536),
    "min_slice_class": (1, INT32_MAX),
    "map_sample": (0, INT32_MAX),
}


def check_board_table(raw: dict, path: Path) -> None:
    """Refuse unknown keys, wrong types and out-of-range values, naming the board file and key."""
    for key, value in raw.items():
        if key not in KEY_TYPES:
            close = difflib.get_close_matches(key, KEY_TYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise XRBenchError(f"board file {path}: unknown key {key!r}{hint}")
        wanted = KEY_TYPES[key]
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            kind = {int: "a whole number", float: "a number", str: "a string", dict: "a table", list: "a list"}[wanted]
            raise XRBenchError(f"board file {path}: {key} must be {kind}, not {value!r}")
        low, high = RANGES.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"from {low}" + (f" to {high}" if high is not None else " up")
            raise XRBenchError(f"board file {path}: {key} = {value} is out of range ({allowed})")
    _check_choices(raw, path)
    for key in ("slices", "targets"):
        if not all(isinstance(v, str) for v in raw.get(key, [])):
            raise XRBenchError(f"board file {path}: {key} must be a list of strings, not {raw[key]!r}")
    for name, levels in raw.get("corruptions", {}).items():
        if not isinstance(levels, list) or not levels or not all(_finite_number(x) for x in levels):
            raise XRBenchError(f"board file {path}: [corruptions] {name} must list one finite number per severity")
    for key, value in raw.get("ground_truth", {}).items():
        if not isinstance(value, GROUND_TRUTH_KEYS.get(key, type(None))):
            wanted = ", ".join(GROUND_TRUTH_KEYS)
            raise XRBenchError(f"board file {path}: [ground_truth] {key} = {value!r} is not allowed (keys: {wanted})")
    box_format = raw.get("ground_truth", {}).get("box_format", "nih")
    if box_format not in box_formats():
        raise XRBenchError(
            f"board file {path}: [ground_truth] box_format {box_format!r} is not one of {', '.join(box_formats())}"
        )
    truth = raw.get("ground_truth", {})
    if "mask_format" in truth and (truth["mask_format"] not in mask_formats() or "masks" not in truth):
        raise XRBenchError(f"board file {path}: [ground_truth] mask_format {truth['mask_format']!r} needs a masks "
                           f"file and is one of {', '.join(mask_formats())}")  # fmt: skip
    if truth and "boxes" not in truth and "mask_format" not in truth:
        raise XRBenchError(f"board file {path}: [ground_truth] needs a boxes file (or masks with their mask_format)")
    for table in ("dataset", "test_dataset"):
        if table in raw and not isinstance(raw[table].get("name"), str):
            raise XRBenchError(f"board file {path}: [{table}] needs a name (a string)")
        if table in raw and raw[table]["name"] not in DATASETS:
            raise XRBenchError(f"board file {path}: [{table}] {DATASETS.unknown(raw[table]['name'])}")


def _check_choices(raw: dict, path: Path) -> None:
    """Keys that take one of a few values, and the threshold quantile."""
    for key, choices, default in (("threshold", THRESHOLDS, "best-f1"), ("resample", RESAMPLE_FILTERS, "bilinear")):
        if raw.get(key, default) not in choices:
            raise XRBenchError(f"board file {path}: {key} = {raw[key]!r}; choose one of {', '.join(choices)}")
    quantile = raw.get("threshold_quantile", 0.95)
    if not (math.isfinite(quantile) and 0.0 < quantile < 1.0):
        raise XRBenchError(f"board file {path}: threshold_quantile = {quantile} must lie strictly between 0 and 1")


def _finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _dataset_spec(table: dict) -> DatasetSpec:
    table = dict(table)
    return DatasetSpec(name=table.pop("name"), content_sha256=table.pop("content_sha256", None), params=table)


def load_board(name_or_path: str | Path) -> Board:
    path = board_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise XRBenchError(f"board file {path} is not valid TOML: {exc}") from exc
    check_board_table(raw, path)
    if "name" in raw:
        check_name(raw["name"], "board", f"board file {path}")
    missing = [k for k in ("name", "version", "description", "task", "resolution", "split_manifest", "split_sha256",
                           "dataset") if k not in raw]  # fmt: skip
    if missing:
        raise XRBenchError(f"board file {path} lacks the key{'s' * (len(missing) > 1)} {', '.join(missing)}")
    test_dataset = raw.pop("test_dataset", None)
    reported = check_reported(raw.pop("reported", []), raw["task"], path)
    board = Board(
        reported=reported,
        dataset=_dataset_spec(raw.pop("dataset")),
        test_dataset=_dataset_spec(test_dataset) if test_dataset is not None else None,
        split_manifest=(path.parent / raw.pop("split_manifest")).resolve(),
        path=path,
        **raw,
    )
    board = dataclasses.replace(board, slices=tuple(board.slices), targets=tuple(board.targets))
    task_spec(board)
    return board
