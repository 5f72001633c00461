"""Tiny generated boards, one per task: what the conformance checks and the test suite run
methods on (synthetic chest phantoms, generated once in the data cache)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from harness.boards.spec import DatasetSpec
from harness.boards.splits import anomaly_split, patient_split, write_manifest
from harness.data.adapters import synthetic

TINY_DATASET = {"seed": 3, "n_patients": 70, "image_size": 64}
TINY_TARGETS = ("Cardiomegaly", "Effusion", "Nodule")
_BOARDS: dict[str, Path] = {}


def write_tiny_board(folder: Path, task: str = "anomaly", name: str | None = None, **settings: Any) -> Path:
    """A reduced board on a small synthetic chest dataset (generated once, in the data cache):
    anomaly: 40 normal training images, validation 10 + 10, test 16 + 16, 64 px;
    multilabel: every image split 40/25/35 by patient, three findings, 32 px."""
    source = synthetic.prepare(DatasetSpec("synth-cxr", dict(TINY_DATASET)))
    name = name or ("tiny-ad" if task == "anomaly" else "tiny-cls")
    if task == "anomaly":
        frame = anomaly_split(source.entries, n_train=40, n_val=(10, 10), n_test=(16, 16), seed=0)
        defaults = {"resolution": 64, "bootstrap": 50, "slices": ["view", "sex", "age_bin", "site"]}
        defaults |= {"min_slice_class": 3, "reference_method": "intensity"}
    else:
        frame = patient_split(source.entries, {"train": 0.4, "val": 0.25, "test": 0.35}, seed=0)
        defaults = {"resolution": 32, "bootstrap": 30, "slices": ["sex"], "min_slice_class": 2}
        defaults |= {"reference_method": "random", "targets": list(TINY_TARGETS)}
    board = {"description": f"reduced synthetic {task} board for tests", "batch_size": 16, **defaults, **settings}
    return write_synthetic_board(folder, name, task, frame, source, TINY_DATASET, board)


def write_synthetic_board(
    folder: Path, name: str, task: str, frame: Any, source: Any, dataset: dict[str, Any], settings: dict[str, Any]
) -> Path:
    """Freeze `frame` (a split of the synthetic chest dataset `source`, generated with
    `dataset`) as board `name` in `folder`: its manifest, then the board file with `settings`,
    the dataset's parameters and content hash, and its ground truth; returns the board file."""
    manifest = folder / f"{name}.csv"
    sha = write_manifest(frame, manifest)
    board = {"name": name, "version": 1, "task": task, "split_manifest": manifest.name, "split_sha256": sha}
    board |= {"seed": 0, **{k: v for k, v in settings.items() if k != "corruptions"}}
    lines = [f"{k} = {_toml(v)}" for k, v in board.items()]
    lines += ["", "[dataset]", 'name = "synth-cxr"', *(f"{k} = {v}" for k, v in dataset.items())]
    lines.append(f'content_sha256 = "{source.content_sha256}"')
    truth = json.loads((source.root / "ground_truth.json").read_text())
    size = dataset["image_size"]
    lines += ["", "[ground_truth]", *(f"{k} = {_toml(v)}" for k, v in truth.items()), f"box_space = [{size}, {size}]"]
    if settings.get("corruptions"):
        lines += ["", "[corruptions]", *(f"{k} = {_toml(v)}" for k, v in settings["corruptions"].items())]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def tiny_board(task: str) -> Path:
    """The process's tiny board for `task`, in a temporary folder."""
    if task not in _BOARDS:
        _BOARDS[task] = write_tiny_board(Path(tempfile.mkdtemp(prefix="xrbench-check-")), task)
    return _BOARDS[task]
