"""One benchmark run: fit a method on a board, predict clean and corrupted test images, score,
calibrate, store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.adapters import prepare_dataset
from harness.adapters.base import DatasetSource
from harness.boards import Board, load_board
from harness.calibration import CALIBRATORS, fit_calibrator
from harness.data import SplitData, board_splits, cached_images, decode_images
from harness.errors import MethodOutputError, XRBenchError
from harness.evaluate import Evaluation, evaluate_condition, robustness_summary
from harness.latency import LatencyConfig, data_pipeline_speed, measure, peak_memory
from harness.metrics import best_f1_threshold
from harness.multilabel import evaluate_multilabel_condition, fit_calibrators
from harness.paths import cache_root, default_db
from harness.protocol import FitContext, ImageBatches, Method
from harness.provenance import environment
from harness.registry import create_method
from harness.splits import attach_labels, excluded_split_sha256, read_manifest, verify_manifest
from harness.store import ResultStore, now
from harness.stress import Condition, corrupted_conditions

T = TypeVar("T")
Track = Callable[[Iterable[T], str], Iterable[T]]


@dataclass
class BenchResult:
    run_id: str
    board: str
    method: str
    metrics: pd.DataFrame
    robustness: dict
    fit_seconds: float
    predict_seconds: float
    weights_id: str
    db_path: Path
    latency: pd.DataFrame
    fit_peak_memory_bytes: int
    notes: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise XRBenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


@dataclass(frozen=True)
class BoardData:
    splits: dict[str, SplitData]
    source: DatasetSource
    manifest: pd.DataFrame
    board: Board  # as run: with exclusions, its split_sha256 is the reduced manifest's
    test_source: DatasetSource | None = None  # cross-dataset boards: where the test images are

    @property
    def dataset_sha256(self) -> str:
        if self.test_source is None:
            return self.source.content_sha256 or ""
        both = [self.source.content_sha256 or "", self.test_source.content_sha256 or ""]
        return hashlib.sha256("|".join(both).encode()).hexdigest() if any(both) else ""

    @property
    def source_manifest(self) -> pd.DataFrame:
        """The manifest rows whose images are in `source` (all but a cross-dataset board's test)."""
        if self.test_source is None:
            return self.manifest
        return self.manifest[self.manifest["split"] != "test"].reset_index(drop=True)


def load_board_data(board: Board) -> BoardData:
    """Verify the frozen split, make sure the dataset is present, return the board's splits.

    Images that `xrbench data prepare` recorded as missing or unreadable are left out, and the
    board is run under the reduced manifest's hash (with a warning)."""
    verify_manifest(board.split_manifest, board.split_sha256)
    manifest = read_manifest(board.split_manifest, ids_only=board.labels_sha256 is not None)
    source = prepare_dataset(board.dataset)
    test_source = prepare_dataset(board.test_dataset) if board.test_dataset else None
    sources = [source] if test_source is None else [source, test_source]
    if board.labels_sha256 is not None:
        entries = pd.concat([s.entries for s in sources], ignore_index=True)
        manifest = attach_labels(manifest, entries, board.labels_sha256, f"board {board.name}")
    excluded = sorted(set().union(*(s.excluded for s in sources)) & set(manifest["image_id"]))
    if excluded:
        manifest = manifest[~manifest["image_id"].isin(excluded)].reset_index(drop=True)
        board = dataclasses.replace(board, split_sha256=excluded_split_sha256(board.split_sha256, excluded))
        logging.getLogger("xrbench").warning(
            "%d images of %s are excluded on this machine (see `xrbench data prepare`); results are stored under "
            "split hash %s and are not ranked with results on the full manifest",
            len(excluded),
            board.name,
            board.split_sha256[:12],
        )
    if test_source is None:
        return BoardData(board_splits(source, manifest, board.split_sha256, board.resolution), source, manifest, board)
    is_test = (manifest["split"] == "test").to_numpy()
    own, other = (
        board_splits(s, manifest[rows].reset_index(drop=True), board.split_sha256, board.resolution)
        for s, rows in ((source, ~is_test), (test_source, is_test))
    )
    splits = {"train": own["train"], "val": own["val"], "test": other["test"]}
    return BoardData(splits, source, manifest, board, test_source)


def fit_method(
    method: Method, board: Board, data: BoardData, seed: int, device: torch.device, track: Track
) -> tuple[float, int]:
    """Fit with the board's train and val splits; returns (wall seconds, peak memory bytes)."""
    torch.manual_seed(seed)
    name = method.card.name
    ctx = FitContext(
        seed=seed,
        device=device,
        cache_dir=cache_root() / "methods" / name,
        log=logging.getLogger(f"xrbench.method.{name}"),
        progress=track,
        resolution=board.resolution,
        task=board.task,
        data_fingerprint=data_fingerprint(board, data),
        targets=board.targets,
    )
    train, val = data.splits["train"], data.splits["val"]
    with peak_memory(device) as memory:
        start = time.perf_counter()
        method.fit(
            split_batches(train.images, train, board, device), split_batches(val.images, val, board, device), ctx
        )
        seconds = time.perf_counter() - start
    return seconds, memory["bytes"]


def data_fingerprint(board: Board, data: BoardData) -> str:
    parts = [board.name, board.split_sha256, data.dataset_sha256, str(board.resolution)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def split_batches(images: torch.Tensor, data: SplitData, board: Board, device: torch.device) -> ImageBatches:
    labels = torch.from_numpy(data.targets(board.targets)).float() if board.targets else torch.from_numpy(data.labels)
    return ImageBatches(images, labels, board.batch_size, device)


BENCH_LATENCY = (
    LatencyConfig(batch_size=1, warmup=3, iterations=20),
    LatencyConfig(batch_size=32, warmup=1, iterations=4),
)


def latency_rows(
    method: Method, board: Board, images: torch.Tensor, device: torch.device, configs: tuple[LatencyConfig, ...]
) -> pd.DataFrame:
    rows = [measure(method, images, device, c).row() for c in configs]
    return pd.DataFrame(rows).assign(
        board=board.name, method=method.card.name, params=json.dumps(method.params, sort_keys=True), measured_at=now()
    )


def pipeline_speed(data: BoardData, board: Board, sample: int = 64) -> dict[str, float]:
    rows = data.source_manifest
    ids = rows["image_id"].tolist()
    return data_pipeline_speed(
        decode=lambda: len(decode_images(data.source, ids[:sample], board.resolution)),
        read_cache=lambda: len(cached_images(data.source, rows, board.split_sha256, board.resolution)),
    )


def predict_scores(
    method: Method,
    name: str,
    batches: ImageBatches,
    meta: pd.DataFrame,
    what: str,
    track: Track,
    targets: tuple[str, ...] = (),
) -> np.ndarray:
    """Scores for every image, (N,) or (N, K) logits for K `targets`, checked for shape and
    finiteness."""
    scores = []
    for images in track(batches, f"predicting {what}"):
        s = method.predict(images).scores.detach().to("cpu", torch.float64)
        expected = (len(images), len(targets)) if targets else (len(images),)
        if s.shape != expected:
            raise MethodOutputError(
                f"method {name} returned scores of shape {tuple(s.shape)} for a batch of {len(images)} images; "
                f"expected {expected}"
            )
        scores.append(s.numpy())
    out = np.concatenate(scores)
    bad = np.flatnonzero(~np.isfinite(out).reshape(len(out), -1).all(axis=1))
    if len(bad):
        first = meta["image_id"].iloc[bad[0]]
        raise MethodOutputError(
            f"method {name} returned non-finite scores for {len(bad)} images on {what} (first image: {first})"
        )
    return out


def predictions_sha256(frame: pd.DataFrame) -> str:
    columns = ["image_id", "split", "condition", "severity", "score" if "scores" not in frame else "scores"]
    return hashlib.sha256(frame[columns].to_csv(index=False).encode()).hexdigest()


def _tracker(progress: Progress, label: str) -> Track:
    """`track(items, text)`: a progress bar for one long loop, labelled with the method."""

    def track(items: Iterable[T], description: str) -> Iterable[T]:
        total = len(items) if hasattr(items, "__len__") else None
        return progress.track(items, total=total, description=f"{label}: {description}")

    return track


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def prepare(
    method_name: str, board_name: str | Path, params: dict[str, Any] | None, device: str
) -> tuple[Board, Method, torch.device, BoardData]:
    """Load the board, create the method (checking it supports the board's task), pick the
    device and make the board's data ready: what every command that runs a method needs."""
    board = load_board(board_name)
    method = create_method(method_name, params)
    if board.task not in method.card.tasks:
        raise XRBenchError(f"method {method_name} supports {method.card.tasks}, board {board.name} is {board.task}")
    data = load_board_data(board)
    return data.board, method, resolve_device(device), data


def _prediction_rows(
    data: SplitData, split: str, condition: str, severity: int, scores: np.ndarray, targets: tuple[str, ...]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "image_id": data.meta["image_id"],
            "patient_id": data.meta["patient_id"],
            "split": split,
            "condition": condition,
            "severity": severity,
            "label": data.labels,
        }
    )
    if not targets:
        return frame.assign(score=scores)
    return frame.assign(scores=scores.tolist(), target_labels=data.targets(targets).tolist())


def score_anomaly(
    board: Board, splits: dict[str, SplitData], val_scores: np.ndarray, test_scores: dict, track: Track
) -> tuple[Evaluation, dict[str, Any]]:
    """Threshold and calibrators from validation scores only, then every test condition."""
    val_labels = splits["val"].labels
    threshold = best_f1_threshold(val_labels, val_scores)
    calibrators = {kind: fit_calibrator(kind, val_scores, val_labels) for kind in CALIBRATORS}
    evaluation = Evaluation()
    for (name, severity), scores in track(list(test_scores.items()), "scoring conditions"):
        evaluation.extend(
            evaluate_condition(
                board, splits["test"].meta, scores, threshold, calibrators, name, severity, detailed=name == "clean"
            )
        )
    return evaluation, {"threshold": threshold}


def score_multilabel(
    board: Board, splits: dict[str, SplitData], val_logits: np.ndarray, test_logits: dict, track: Track
) -> tuple[Evaluation, dict[str, Any]]:
    """Temperature from validation logits only, then every test condition."""
    calibrators, temperature = fit_calibrators(val_logits, splits["val"].targets(board.targets))
    test = splits["test"]
    targets = test.targets(board.targets)
    evaluation = Evaluation()
    for (name, severity), logits in track(list(test_logits.items()), "scoring conditions"):
        evaluation.extend(
            evaluate_multilabel_condition(
                board, test.meta, targets, logits, calibrators, name, severity, detailed=name == "clean"
            )
        )
    return evaluation, {"temperature": temperature}


def run_bench(
    method_name: str,
    board_name: str | Path,
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    db: Path | None = None,
    device: str = "auto",
    console: Console | None = None,
    corruptions: bool = True,
) -> BenchResult:
    console = console or Console(stderr=True)
    board, method, torch_device, data = prepare(method_name, board_name, params, device)
    seed = board.seed if seed is None else seed
    splits, dataset_sha256 = data.splits, data.dataset_sha256
    test = splits["test"]
    conditions = [Condition("clean", 0, None, test.images)]
    if corruptions and board.corruptions:
        conditions += corrupted_conditions(board, test.images, test.meta["image_id"].tolist(), dataset_sha256)
    db = db or default_db()
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{method_name}-{uuid.uuid4().hex[:6]}"

    def batches(images: torch.Tensor, split: SplitData) -> ImageBatches:
        return split_batches(images, split, board, torch_device)

    # The database is opened only to record the start and the outcome, so that other
    # processes (another bench, `xrbench runs`, the site) can use it while this one computes.
    with ResultStore(db) as store:
        store.start_run(
            {
                "run_id": run_id,
                "board": board.name,
                "board_version": board.version,
                "method": method_name,
                "params": json.dumps(method.params, sort_keys=True),
                "targets": json.dumps(list(board.targets)) if board.targets else None,
                "seed": seed,
                "split_sha256": board.split_sha256,
                "dataset_sha256": dataset_sha256,
                **environment(torch_device),
            }
        )
    with _progress(console) as progress:
        track = _tracker(progress, method_name)
        try:
            fit_seconds, fit_peak_memory = fit_method(method, board, data, seed, torch_device, track)

            start = time.perf_counter()
            val = splits["val"]
            val_scores = predict_scores(
                method, method_name, batches(val.images, val), val.meta, "val", track, board.targets
            )
            condition_scores = {
                (c.name, c.severity): predict_scores(
                    method,
                    method_name,
                    batches(c.images, test),
                    test.meta,
                    "test" if c.name == "clean" else f"{c.name} s{c.severity}",
                    track,
                    board.targets,
                )
                for c in conditions
            }
            predict_seconds = time.perf_counter() - start

            # Thresholds and calibrators see validation scores only, never test.
            score = score_multilabel if board.targets else score_anomaly
            evaluation, fitted_on_val = score(board, splits, val_scores, condition_scores, track)
            metrics, bins, risk = evaluation.frames()
            metrics = metrics.assign(board=board.name, method=method_name)

            aurocs = {
                (r.condition, int(r.severity)): float(r.value)
                for r in metrics[(metrics["slice"] == "all") & (metrics["metric"] == "auroc")].itertuples()
            }
            reference_run, reference = None, aurocs if board.reference_method == method_name else None
            if board.reference_method and board.reference_method != method_name:
                with ResultStore(db) as store:
                    reference_run = store.latest_run(
                        board.name, board.reference_method, board.split_sha256, dataset_sha256
                    )
                    reference = store.condition_aurocs(reference_run) if reference_run else None
            robustness = robustness_summary(aurocs, reference)

            predictions = pd.concat(
                [
                    _prediction_rows(val, "val", "clean", 0, val_scores, board.targets),
                    *[
                        _prediction_rows(test, "test", name, sev, sc, board.targets)
                        for (name, sev), sc in condition_scores.items()
                    ],
                ],
                ignore_index=True,
            )
            weights = method.weights()
            tables = {
                "predictions": predictions,
                "metrics": metrics,
                "calibration_bins": bins,
                "risk_coverage": risk,
                "latency": (latency := latency_rows(method, board, test.images, torch_device, BENCH_LATENCY)),
            }
            if len(aurocs) > 1:
                tables["robustness"] = pd.DataFrame([{**robustness, "reference_run_id": reference_run}])
            with ResultStore(db) as store:
                store.complete_run(
                    run_id,
                    tables,
                    {
                        "fit_seconds": fit_seconds,
                        "predict_seconds": predict_seconds,
                        **fitted_on_val,
                        "weights_id": weights.id,
                        "weights_sha256": weights.sha256,
                        "predictions_sha256": predictions_sha256(predictions),
                        "fit_peak_memory_bytes": fit_peak_memory,
                        **pipeline_speed(data, board),
                    },
                )
        except BaseException as exc:
            with ResultStore(db) as store:
                store.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
    notes = []
    if board.reference_method and robustness.get("mce") is None and len(aurocs) > 1:
        notes.append(
            f"mCE needs a run of the reference method: make bench METHOD={board.reference_method} BOARD={board.name}"
        )
    return BenchResult(
        run_id,
        board.name,
        method_name,
        metrics,
        robustness,
        fit_seconds,
        predict_seconds,
        weights.id,
        Path(db),
        latency,
        fit_peak_memory,
        notes,
    )


def run_latency(
    method_name: str,
    board_name: str | Path,
    configs: tuple[LatencyConfig, ...],
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    db: Path | None = None,
    device: str = "auto",
    console: Console | None = None,
) -> pd.DataFrame:
    """Fit a method on a board, then measure it under each configuration and store the rows."""
    console = console or Console(stderr=True)
    board, method, torch_device, data = prepare(method_name, board_name, params, device)
    with _progress(console) as progress:
        track = _tracker(progress, method_name)

        fit_method(method, board, data, board.seed if seed is None else seed, torch_device, track)
        task = progress.add_task(f"{method_name}: measuring", total=len(configs))
        rows = []
        for config in configs:
            rows.append(latency_rows(method, board, data.splits["test"].images, torch_device, (config,)))
            progress.advance(task)
    frame = pd.concat(rows, ignore_index=True)
    with ResultStore(db or default_db()) as store:
        store.add_latency(frame)
    return frame
