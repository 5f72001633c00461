"""Checks a method author runs in their own tests: `check_method(MyMethod)`.

It fits and predicts the method on a tiny generated board (synthetic chest phantoms, one board
per task the card lists, built once per process), with the card's `smoke_params`, through the
same inference path as a real run, and checks the contract: score shape and dtype, no
non-finite value, maps of the declared shape when the card `produces_maps` (and none
otherwise), weights reported, and byte-identical predictions when fitted twice with one seed
on the CPU. It raises `MethodCheckError` naming what is wrong.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.api.protocol import LEARNING, Method, WeightsInfo
from harness.boards.files import load_board
from harness.boards.spec import DatasetSpec
from harness.boards.splits import anomaly_split, patient_split, write_manifest
from harness.core.errors import XRBenchError
from harness.data.adapters import synthetic
from harness.data.loading import load_board_data
from harness.run.batches import split_batches
from harness.run.inference import predict_split
from harness.run.runner import fit_stage
from harness.scoring.tasks import TASKS, task_for

TINY_DATASET = {"seed": 3, "n_patients": 70, "image_size": 64}
TINY_TARGETS = ("Cardiomegaly", "Effusion", "Nodule")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_BOARDS: dict[str, Path] = {}


class MethodCheckError(XRBenchError, AssertionError):
    """A method breaks the contract of `harness.api.protocol.Method`."""


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


@dataclass
class CheckReport:
    method: str
    task: str
    scores_shape: tuple[int, ...]
    maps_shape: tuple[int, ...] | None
    weights: WeightsInfo
    fit_seconds: float


def _fit_and_predict(
    cls: type[Method], board_path: Path, params: dict[str, Any], seed: int
) -> tuple[Method, np.ndarray, np.ndarray | None, float]:
    board = load_board(board_path)
    data = load_board_data(board)
    method = cls(**params)
    device = torch.device("cpu")
    fit = fit_stage(method, board, data, seed, device, lambda items, _: items)
    scores, maps = [], []
    for split in ("val", "test"):
        part = data.splits[split]
        ids = part.meta["image_id"].tolist()
        batches = split_batches(part.images, part, board, device)
        out = predict_split(
            method, task_for(board), board, batches, ids, split, device, "fp32", set(ids), lambda i, _: i
        )
        scores.append(out.scores)
        maps.append(out.maps)
    kept = None if maps[0] is None else np.concatenate(maps)
    return method, np.concatenate(scores), kept, fit.seconds


def _check_card(cls: type[Method]) -> None:
    card = getattr(cls, "card", None)
    if card is None:
        raise MethodCheckError(f"{cls.__name__} has no `card` (a harness.api.protocol.MethodCard)")
    problems = []
    if not NAME.match(card.name):
        problems.append(f"name {card.name!r} is not lower-case letters, digits and dashes")
    if not card.tasks or set(card.tasks) - set(TASKS):
        problems.append(f"tasks {card.tasks} must be some of {', '.join(TASKS)}")
    if card.learning not in LEARNING:
        problems.append(f"learning {card.learning!r} must be one of {', '.join(LEARNING)}")
    unknown = sorted(set(card.smoke_params) - set(card.defaults))
    if unknown:
        problems.append(f"smoke_params {unknown} are not parameters of the method (its defaults)")
    if problems:
        raise MethodCheckError(f"method {card.name}: " + "; ".join(problems))


def check_method(cls: type[Method], params: dict[str, Any] | None = None, seed: int = 0) -> list[CheckReport]:
    """Check `cls` on a tiny board of every task its card lists (see the module docstring);
    `params` override the card's `smoke_params`. Returns one report per task."""
    _check_card(cls)
    card = cls.card
    params = {**card.smoke_params, **(params or {})}
    reports = []
    for task in card.tasks:
        board = tiny_board(task)
        method, scores, maps, seconds = _fit_and_predict(cls, board, params, seed)
        _, again, maps_again, _ = _fit_and_predict(cls, board, params, seed)
        if scores.tobytes() != again.tobytes():
            raise MethodCheckError(
                f"method {card.name}: two fits with seed {seed} on the CPU gave different scores "
                f"(max difference {np.abs(scores - again).max():.3g}); seed every random draw from the "
                "FitContext's seed, or a torch.Generator seeded with it"
            )
        if maps is not None and maps_again is not None and maps.tobytes() != maps_again.tobytes():
            raise MethodCheckError(f"method {card.name}: two fits with seed {seed} gave different maps")
        if card.produces_maps and maps is None:
            raise MethodCheckError(f"method {card.name}: declares produces_maps but no maps were returned")
        weights = method.weights()
        if not isinstance(weights, WeightsInfo):
            raise MethodCheckError(f"method {card.name}: weights() returned {type(weights).__name__}, not WeightsInfo")
        if weights.id != "none" and not (isinstance(weights.sha256, str) and len(weights.sha256) == 64):
            raise MethodCheckError(
                f"method {card.name}: weights {weights.id!r} are reported without their SHA-256 "
                "(harness.core.fingerprints.file_sha256 or state_sha256)"
            )
        reports.append(
            CheckReport(card.name, task, scores.shape, None if maps is None else maps.shape, weights, seconds)
        )
    return reports
