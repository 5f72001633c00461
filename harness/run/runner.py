"""One benchmark run, as a sequence of stages with explicit inputs and outputs:

    load (board, method, data) -> fit -> predict (every condition) -> score -> latency -> store

Scoring is a pure function of the predictions about to be stored (`harness.scoring.score`), so
`xrbench score` can recompute every stored number from the database. A run never reads the
results of other runs: what needs several runs (ranks, ties, corruption errors relative to a
reference method) is computed where the leaderboard is assembled (`harness.results.leaderboard`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.api.protocol import FitContext, Method
from harness.api.registry import create_method, method_origin
from harness.boards.files import load_board
from harness.boards.spec import Board, board_edition
from harness.core.errors import DatabaseLocked, DataIntegrityError, MethodFailure, XRBenchError
from harness.core.fingerprints import PREDICTIONS_HASH_SCHEME, predictions_sha256
from harness.core.maps import map_rows, maps_sha256
from harness.core.paths import cache_root, default_db
from harness.core.precision import PRECISIONS
from harness.core.provenance import environment
from harness.data.cache import cached_images, decode_images
from harness.data.corruptions import CORRUPTIONS
from harness.data.loading import BoardData, load_board_data
from harness.data.stress import Condition, corrupted_conditions
from harness.results.store import ResultStore, keep_pending, now
from harness.run.batches import data_fingerprint, split_batches
from harness.run.gallery import case_study, error_cases, gallery_rows
from harness.run.inference import Predicted, predict_split, prediction_rows
from harness.run.latency import LatencyConfig, data_pipeline_speed, measure, peak_memory
from harness.run.saliency import EXPLAINERS, explainer_for, refuse_unexplainable
from harness.scoring.score import SCORING_VERSION, Scored, score_predictions
from harness.scoring.tasks import task_for

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
    maps_bytes: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise XRBenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


# --- stage 1: load ------------------------------------------------------------------------


def prepare(
    method_name: str, board_name: str | Path, params: dict[str, Any] | None, device: str
) -> tuple[Board, Method, torch.device, BoardData]:
    """Load the board, create the method (checking it supports the board's task), pick the
    device and make the board's data ready: what every command that runs a method needs."""
    board = load_board(board_name)
    unknown = sorted(set(board.corruptions) - set(CORRUPTIONS))
    if unknown:
        known = ", ".join(sorted(CORRUPTIONS))
        raise XRBenchError(f"board {board.name}: unknown corruption {unknown[0]!r} in [corruptions]; known: {known}")
    method = create_method(method_name, params)
    if board.task not in method.card.tasks:
        raise XRBenchError(f"method {method_name} supports {method.card.tasks}, board {board.name} is {board.task}")
    torch_device = resolve_device(device)
    data = load_board_data(board)
    return data.board, method, torch_device, data


def test_conditions(board: Board, data: BoardData, corruptions: bool) -> list[Condition]:
    """The clean test split, then (unless `corruptions` is off) every corruption and severity."""
    test = data.splits["test"]
    conditions = [Condition("clean", 0, None, test.images)]
    if corruptions and board.corruptions:
        conditions += corrupted_conditions(board, test.images, test.meta["image_id"].tolist(), data.dataset_sha256)
    return conditions


# --- stage 2: fit -------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    seconds: float
    peak_memory_bytes: int
    diagnostics: str | None  # JSON of Method.diagnostics(), checked right after fitting


def fit_stage(
    method: Method,
    board: Board,
    data: BoardData,
    seed: int,
    device: torch.device,
    track: Track,
    precision: str = "fp32",
) -> FitResult:
    """Fit with the board's train and val splits, seeded, with time and peak memory measured."""
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
        data_fingerprint=data_fingerprint(board, data.dataset_sha256),
        targets=board.targets,
        precision=precision,
    )
    train, val = data.splits["train"], data.splits["val"]
    with peak_memory(device) as memory:
        start = time.perf_counter()
        try:
            method.fit(
                split_batches(train.images, train, board, device), split_batches(val.images, val, board, device), ctx
            )
        except XRBenchError:
            raise
        except Exception as exc:
            raise MethodFailure(f"method {name} failed while fitting: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - start
    return FitResult(seconds, memory["bytes"], diagnostics_json(method))


def diagnostics_json(method: Method) -> str | None:
    """The fitted method's diagnostics as JSON (None when it reports none)."""
    try:
        report = method.diagnostics()
        return json.dumps(report, sort_keys=True) if report else None
    except (TypeError, ValueError) as exc:
        raise MethodFailure(f"method {method.card.name}: diagnostics() is not plain JSON: {exc}") from exc


# --- stage 3: predict ---------------------------------------------------------------------


def predict_stage(
    method: Method,
    board: Board,
    data: BoardData,
    conditions: list[Condition],
    device: torch.device,
    precision: str,
    track: Track,
    explain: str | None = None,
) -> Predicted:
    """Scores for the validation split and every test condition; maps (the method's, or
    Grad-CAM's when `explain` names it) are kept for the clean validation and test images, and
    for the case-study image (`case_image`) under every corruption."""
    task = task_for(board)
    explainer = explainer_for(explain, method)
    val, test = data.splits["val"], data.splits["test"]
    jobs = [("val", "clean", 0, val.images, val)] + [("test", c.name, c.severity, c.images, test) for c in conditions]
    case = {case_image(test.meta)} - {None}
    frames, maps = [], []
    start = time.perf_counter()
    for split, condition, severity, images, part in jobs:
        ids = part.meta["image_id"].tolist()
        what = split if condition == "clean" else f"{condition} s{severity}"
        batches = split_batches(images, part, board, device)
        keep = set(ids) if condition == "clean" else case
        out = predict_split(method, task, board, batches, ids, what, device, precision, keep, track, explainer)
        truth = task.truth(part.meta, board)
        frames.append(prediction_rows(task, part.meta, truth, split, condition, severity, out.scores, out.variances))
        if out.maps is not None:
            maps.append(map_rows(split, condition, severity, out.map_ids, out.maps))
    seconds = time.perf_counter() - start
    return Predicted(
        pd.concat(frames, ignore_index=True), pd.concat(maps, ignore_index=True) if maps else pd.DataFrame(), seconds
    )


def case_image(test_meta: pd.DataFrame) -> str | None:
    """The test image every method's gallery follows through the stress suite: the first
    abnormal one in manifest order (the same study for every method)."""
    abnormal = test_meta[test_meta["label"] == 1]["image_id"]
    return None if abnormal.empty else str(abnormal.iloc[0])


def gallery_stage(
    board: Board, data: BoardData, conditions: list[Condition], predicted: Predicted, scored: Scored
) -> pd.DataFrame:
    """The errors and the case study the site shows, with their inputs and ground truth."""
    test = data.splits["test"]
    cases = error_cases(task_for(board), board, predicted.frame, scored.run_values.get("threshold"))
    cases += case_study(predicted.frame, case_image(test.meta), scored.robustness)
    ids = test.meta["image_id"].tolist()
    images = {(c.name, c.severity): (ids, c.images) for c in conditions}
    return gallery_rows(cases, images, data.truth)


# --- stage 5: latency ---------------------------------------------------------------------

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
    """Decode and cache-read speed of the board's data (a measurement: it never fails a run;
    an image that no longer decodes gives NaN and a warning)."""
    rows = data.source_manifest
    ids = rows["image_id"].tolist()
    try:
        return data_pipeline_speed(
            decode=lambda: len(decode_images(data.source, ids[:sample], board.resolution)),
            read_cache=lambda: len(cached_images(data.source, rows, board.split_sha256, board.resolution)),
        )
    except DataIntegrityError as exc:
        logging.getLogger("xrbench").warning("data pipeline speed not measured: %s", exc)
        return {"decode_ips": float("nan"), "cache_read_ips": float("nan")}


# --- stage 6: store -----------------------------------------------------------------------


def cell_key(
    board: Board, method: Method, seed: int, device: str, corruptions: bool, precision: str, explain: str | None
) -> str:
    """What identifies a run's result, for `xrbench grid` to tell a cell already done: the
    method, its parameters (defaults merged) and code, the board edition (version, split and
    dataset hashes), the seed, the device type and the run options."""
    parts = {
        "method": method.card.name,
        "params": method.params,
        "code": method_origin(type(method)),
        "board": [board.name, board.version, board.split_sha256, board.dataset_sha256],
        "seed": seed,
        "device": device.split(":")[0],
        "corruptions": corruptions,
        "precision": precision,
        "explain": explain,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def run_record(
    run_id: str, board: Board, method: Method, seed: int, data: BoardData, device: torch.device, precision: str
) -> dict[str, Any]:
    """The `runs` row written when a run starts: everything that identifies what is run."""
    return {
        "run_id": run_id,
        "board": board.name,
        "board_version": board.version,
        "task": board.task,
        "method": method.card.name,
        "params": json.dumps(method.params, sort_keys=True),
        "targets": json.dumps(list(board.targets)) if board.targets else None,
        "seed": seed,
        "split_sha256": board.split_sha256,
        "excluded_images": json.dumps(list(data.excluded)) if data.excluded else None,
        "dataset_sha256": data.dataset_sha256,
        "precision": precision,
        "method_card": json.dumps(method.card.summary()),
        "method_code": json.dumps(method_origin(type(method))),
        **environment(device),
    }


def store_stage(
    db: Path,
    run_id: str,
    board: Board,
    method: Method,
    predicted: Predicted,
    scored: Scored,
    extra: dict[str, pd.DataFrame],
    updates: dict[str, Any],
) -> None:
    """Write everything the run produced, and mark it ok, in one transaction."""
    tables = {"predictions": predicted.frame, "maps": predicted.maps, **scored.tables(), **extra}
    tables["metrics"] = tables["metrics"].assign(board=board.name, method=method.card.name)
    weights = method.weights()
    updates = {
        **updates,
        **scored.run_values,
        "predict_seconds": predicted.seconds,
        "weights_id": weights.id,
        "weights_sha256": weights.sha256,
        "predictions_sha256": predictions_sha256(predicted.frame),
        "predictions_hash_scheme": PREDICTIONS_HASH_SCHEME,
        "scoring_version": SCORING_VERSION,
        "maps_sha256": maps_sha256(predicted.maps) if not predicted.maps.empty else None,
    }
    try:
        with ResultStore(db) as store:
            store.complete_run(run_id, tables, updates)
    except DatabaseLocked as exc:
        kept = keep_pending(db, run_id, tables, updates)
        raise RunPending(
            f"{exc}; the finished run {run_id} is kept in {kept}: load it with `xrbench runs --load-pending` "
            "once the database is free"
        ) from exc


# --- the whole run --------------------------------------------------------------------------


class RunPending(XRBenchError):
    """A finished run whose results wait beside a locked database."""


def failure_text(exc: BaseException) -> str:
    """What `runs.error` keeps: the one-line message, then the traceback."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    return f"{type(exc).__name__}: {exc}\n\n{trace}"


def _tracker(progress: Progress, label: str) -> Track:
    """`track(items, text)`: a progress bar for one long loop, labelled with the method."""

    def track(items: Iterable[T], description: str) -> Iterable[T]:
        total = len(items) if hasattr(items, "__len__") else None
        return progress.track(items, total=total, description=escape(f"{label}: {description}"))

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


def run_bench(
    method_name: str,
    board_name: str | Path,
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    db: Path | None = None,
    device: str = "auto",
    console: Console | None = None,
    corruptions: bool = True,
    precision: str = "fp32",
    explain: str | None = None,
) -> BenchResult:
    """Run one method on one board and store the results (see the module docstring). `explain`
    (gradcam or gradcam++) keeps Grad-CAM maps of the method's score instead of its own."""
    if precision not in PRECISIONS:
        raise XRBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if explain is not None and explain not in EXPLAINERS:
        raise XRBenchError(f"explain must be one of {', '.join(EXPLAINERS)}, not {explain!r}")
    console = console or Console(stderr=True)
    board, method, torch_device, data = prepare(method_name, board_name, params, device)
    refuse_unexplainable(explain, method)
    seed = board.seed if seed is None else seed
    conditions = test_conditions(board, data, corruptions)
    db = db or default_db()
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{method_name}-{uuid.uuid4().hex[:6]}"
    # The database is opened only to record the start and the outcome, so that other
    # processes (another bench, `xrbench runs`, the site) can use it while this one computes.
    edition = load_board(board_name)  # the board file's hashes, not those of the run's (reduced) manifest
    key = cell_key(edition, method, seed, torch_device.type, corruptions, precision, explain)
    with ResultStore(db) as store:
        store.record_board(board_edition(edition))
        record = run_record(run_id, board, method, seed, data, torch_device, precision)
        store.start_run({**record, "explain": explain, "cell_key": key})
    with _progress(console) as progress:
        track = _tracker(progress, method_name)
        try:
            fit = fit_stage(method, board, data, seed, torch_device, track, precision)
            predicted = predict_stage(method, board, data, conditions, torch_device, precision, track, explain)
            scored = score_predictions(board, data.manifest, predicted.frame, track, predicted.maps, data.truth)
            gallery = gallery_stage(board, data, conditions, predicted, scored)
            latency = latency_rows(method, board, data.splits["test"].images, torch_device, BENCH_LATENCY)
            updates = {
                "fit_seconds": fit.seconds,
                "fit_peak_memory_bytes": fit.peak_memory_bytes,
                "diagnostics": fit.diagnostics,
                **pipeline_speed(data, board),
            }
            store_stage(db, run_id, board, method, predicted, scored, {"latency": latency, "gallery": gallery}, updates)
        except RunPending:
            raise
        except BaseException as exc:
            exc.add_note(f"run {run_id} is marked failed; nothing else of it was stored")
            try:
                with ResultStore(db) as store:
                    store.fail_run(run_id, failure_text(exc))
            except DatabaseLocked:
                exc.add_note(f"run {run_id} could not be marked failed: the database stayed locked")
            raise
    maps_bytes = int(predicted.maps["data"].map(len).sum()) if not predicted.maps.empty else 0
    metrics = scored.metrics.assign(board=board.name, method=method_name)
    return BenchResult(
        run_id,
        board.name,
        method_name,
        metrics,
        scored.robustness,
        fit.seconds,
        predicted.seconds,
        method.weights().id,
        Path(db),
        latency,
        fit.peak_memory_bytes,
        maps_bytes,
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
        fit_stage(method, board, data, board.seed if seed is None else seed, torch_device, track)
        task = progress.add_task(f"{method_name}: measuring", total=len(configs))
        rows = []
        for config in configs:
            rows.append(latency_rows(method, board, data.splits["test"].images, torch_device, (config,)))
            progress.advance(task)
    frame = pd.concat(rows, ignore_index=True)
    with ResultStore(db or default_db()) as store:
        store.add_latency(frame)
    return frame
