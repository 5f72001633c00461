"""One benchmark run: fit a method on a board, predict, score, store."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.adapters import prepare_dataset
from harness.boards import Board, load_board
from harness.data import SplitData, board_splits
from harness.errors import MethodOutputError, XRBenchError
from harness.metrics import MetricValue, best_f1_threshold, binary_metrics
from harness.paths import cache_root, default_db
from harness.protocol import FitContext, ImageBatches, Method
from harness.provenance import environment
from harness.registry import create_method
from harness.splits import read_manifest, verify_manifest
from harness.store import ResultStore

T = TypeVar("T")
log = logging.getLogger("xrbench")


@dataclass
class BenchResult:
    run_id: str
    board: str
    method: str
    metrics: list[MetricValue]
    fit_seconds: float
    predict_seconds: float
    weights_id: str
    db_path: Path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise XRBenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def load_board_data(board: Board) -> tuple[dict[str, SplitData], str]:
    """Verify the frozen split, make sure the dataset is present, return the board's splits."""
    verify_manifest(board.split_manifest, board.split_sha256)
    manifest = read_manifest(board.split_manifest)
    source = prepare_dataset(board.dataset)
    return board_splits(source, manifest, board.split_sha256, board.resolution), source.content_sha256 or ""


def predict_split(method: Method, name: str, batches: ImageBatches, split: str, progress: Any) -> np.ndarray:
    scores = []
    for images in progress(batches, f"predicting {split}"):
        pred = method.predict(images)
        s = pred.scores.detach().to("cpu", torch.float64)
        if s.shape != (len(images),):
            raise MethodOutputError(
                f"method {name} returned scores of shape {tuple(s.shape)} for a batch of "
                f"{len(images)} images; expected ({len(images)},)"
            )
        scores.append(s.numpy())
    out = np.concatenate(scores)
    return out


def check_finite(name: str, split: str, scores: np.ndarray, data: SplitData) -> None:
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise MethodOutputError(
            f"method {name} returned {len(bad)} non-finite scores on {split} "
            f"(first image: {data.meta['image_id'].iloc[bad[0]]})"
        )


def test_metrics(board: Board, data: SplitData, scores: np.ndarray, threshold: float) -> list[MetricValue]:
    labels, groups = data.labels, data.meta["patient_id"].to_numpy()
    values = binary_metrics(labels, scores, groups, threshold, board.bootstrap, board.seed)
    # Per finding: the images with that finding against all normal images.
    findings = data.meta["findings"].str.split("|")
    names = sorted({f for fs in findings for f in fs} - {board.normal_label})
    for finding in names:
        mask = (labels == 0) | findings.apply(lambda fs, f=finding: f in fs).to_numpy()
        values += binary_metrics(
            labels[mask],
            scores[mask],
            groups[mask],
            threshold,
            board.bootstrap,
            board.seed,
            slice_name=f"finding={finding}",
            metrics=("auroc",),
        )
    return values


def predictions_sha256(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame[["image_id", "split", "condition", "score"]].to_csv(index=False).encode()).hexdigest()


def run_bench(
    method_name: str,
    board_name: str | Path,
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    db: Path | None = None,
    device: str = "auto",
    console: Console | None = None,
) -> BenchResult:
    console = console or Console(stderr=True)
    board = load_board(board_name)
    method = create_method(method_name, params)
    if board.task not in method.card.tasks:
        raise XRBenchError(f"method {method_name} supports {method.card.tasks}, board {board.name} is {board.task}")
    seed = board.seed if seed is None else seed
    torch_device = resolve_device(device)
    splits, content_sha256 = load_board_data(board)
    db = db or default_db()
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{method_name}-{uuid.uuid4().hex[:6]}"
    batches = {
        name: ImageBatches(s.images, torch.from_numpy(s.labels), board.batch_size, torch_device)
        for name, s in splits.items()
    }

    with (
        ResultStore(db) as store,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):

        def track(items: Iterable[T], description: str) -> Iterable[T]:
            total = len(items) if hasattr(items, "__len__") else None
            return progress.track(items, total=total, description=f"{method_name}: {description}")

        store.start_run(
            {
                "run_id": run_id,
                "board": board.name,
                "board_version": board.version,
                "method": method_name,
                "params": json.dumps(method.params, sort_keys=True),
                "seed": seed,
                "split_sha256": board.split_sha256,
                "dataset_sha256": content_sha256,
                **environment(torch_device),
            }
        )
        try:
            torch.manual_seed(seed)
            ctx = FitContext(
                seed=seed,
                device=torch_device,
                cache_dir=cache_root() / "methods" / method_name,
                log=logging.getLogger(f"xrbench.method.{method_name}"),
                progress=track,
                resolution=board.resolution,
                task=board.task,
            )
            start = time.perf_counter()
            method.fit(batches["train"], batches["val"], ctx)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            scores = {
                split: predict_split(method, method_name, batches[split], split, track) for split in ("val", "test")
            }
            predict_seconds = time.perf_counter() - start
            for split, s in scores.items():
                check_finite(method_name, split, s, splits[split])
            threshold = best_f1_threshold(splits["val"].labels, scores["val"])
            metric_values = test_metrics(board, splits["test"], scores["test"], threshold)
            predictions = pd.concat(
                [
                    pd.DataFrame(
                        {
                            "run_id": run_id,
                            "image_id": splits[split].meta["image_id"],
                            "split": split,
                            "condition": "clean",
                            "label": splits[split].labels,
                            "score": scores[split],
                        }
                    )
                    for split in ("val", "test")
                ],
                ignore_index=True,
            )
            metrics = pd.DataFrame(
                [
                    {
                        "run_id": run_id,
                        "board": board.name,
                        "method": method_name,
                        "condition": "clean",
                        "severity": 0,
                        **vars(m),
                    }
                    for m in metric_values
                ]
            )
            weights = method.weights()
            store.complete_run(
                run_id,
                predictions,
                metrics,
                {
                    "fit_seconds": fit_seconds,
                    "predict_seconds": predict_seconds,
                    "threshold": threshold,
                    "weights_id": weights.id,
                    "weights_sha256": weights.sha256,
                    "predictions_sha256": predictions_sha256(predictions),
                },
            )
        except BaseException as exc:
            store.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
    return BenchResult(
        run_id, board.name, method_name, metric_values, fit_seconds, predict_seconds, weights.id, Path(db)
    )
