"""One benchmark run: a `RunSpec` through its stages (`harness.run.stages`):

    load (the board's data) -> fit -> predict (every condition) -> score -> gallery -> latency -> store

Scoring is a pure function of the predictions about to be stored (`harness.scoring.score`), so
`xrbench score` can recompute every stored number from the database. A run never reads the
results of other runs: what needs several runs (ranks, ties, corruption errors relative to a
reference method) is computed where the leaderboard is assembled (`harness.results.leaderboard`).
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.api.protocol import Method
from harness.api.registry import get_method
from harness.boards.ledger import check_ledger
from harness.boards.spec import Board, board_edition
from harness.core.errors import DatabaseLocked, noted
from harness.core.paths import default_db
from harness.core.provenance import environment
from harness.data.loading import BoardData, load_board_data
from harness.data.stress import Condition, stress_sha256
from harness.results.store import ResultStore
from harness.run.inference import Predicted
from harness.run.latency import LatencyConfig
from harness.run.spec import RunOptions, RunSpec
from harness.run.stages import (
    BENCH_LATENCY,
    FitResult,
    RunPending,
    Track,
    fit_run,
    gallery_stage,
    latency_rows,
    pipeline_speed,
    predict_stage,
    store_stage,
    test_conditions,
)
from harness.scoring.score import Scored, score_predictions

T = TypeVar("T")


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
    stages: dict[str, float] = field(default_factory=dict)  # seconds of each stage of the run


def run_record(run_id: str, spec: RunSpec, data: BoardData, conditions: list[Condition]) -> dict[str, Any]:
    """The `runs` row written when a run starts: everything that identifies what is run, the
    corrupted test set's hash included."""
    board, card = data.board, get_method(spec.method).card
    return {
        "run_id": run_id,
        "board": board.name,
        "board_version": board.version,
        "task": board.task,
        "method": spec.method,
        "params": json.dumps(spec.params, sort_keys=True),
        "targets": json.dumps(list(board.targets)) if board.targets else None,
        "seed": spec.seed,
        "split_sha256": board.split_sha256,
        "excluded_images": json.dumps(list(data.excluded)) if data.excluded else None,
        "dataset_sha256": data.dataset_sha256,
        "precision": spec.options.precision,
        "explain": spec.options.explain,
        "method_card": json.dumps(card.summary()),
        "method_code": json.dumps(spec.code),
        "cell_key": spec.key,
        "stress_sha256": stress_sha256(conditions) if len(conditions) > 1 else None,
        **environment(spec.device),
    }


def run_bench(spec: RunSpec, db: Path | None = None, console: Console | None = None) -> BenchResult:
    """Run one method on one board as `spec` says and store the results (see the module
    docstring); a failure is stored as the run's error, and nothing else of it."""
    console = console or Console(stderr=True)
    clock = Stopwatch()
    with clock("load"):
        check_ledger()  # the run stores its backbone card: a broken ledger fails now, not after the work
        data = load_board_data(spec.board)
        method = spec.create_method()
        conditions = test_conditions(spec, data)
    db = db or default_db()
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{spec.method}-{uuid.uuid4().hex[:6]}"
    # The database is opened only to record the start and the outcome, so that other
    # processes (another bench, `xrbench runs`, the site) can use it while this one computes.
    with ResultStore(db) as store:
        store.record_board(board_edition(spec.board))
        store.start_run(run_record(run_id, spec, data, conditions))
    with progress_bars(console) as progress:
        try:
            fit, predicted, scored, latency = _stages(spec, method, data, conditions, db, run_id, progress, clock)
        except RunPending:
            raise
        except BaseException as exc:
            _record_failure(db, run_id, exc)
            raise
    maps_bytes = int(predicted.maps["data"].map(len).sum()) if not predicted.maps.empty else 0
    metrics = scored.metrics.assign(board=data.board.name, method=spec.method)
    return BenchResult(
        run_id,
        data.board.name,
        spec.method,
        metrics,
        scored.robustness,
        fit.seconds,
        predicted.seconds,
        method.weights().id,
        Path(db),
        latency,
        fit.peak_memory_bytes,
        maps_bytes,
        clock.seconds,
    )


def _stages(
    spec: RunSpec,
    method: Method,
    data: BoardData,
    conditions: list[Condition],
    db: Path,
    run_id: str,
    progress: Progress,
    clock: Stopwatch,
) -> tuple[FitResult, Predicted, Scored, pd.DataFrame]:
    """Fit, predict, score, the gallery, latency and storing, each timed on `clock`."""
    track = _tracker(progress, spec.method)
    with clock("fit"):
        fit = fit_run(spec, method, data, track)
    with clock("predict"):
        predicted = predict_stage(spec, method, data, conditions, track)
    with clock("score"):
        scored = score_predictions(data.board, data.manifest, predicted.frame, track, predicted.maps, data.truth)
    with clock("gallery"):
        gallery = gallery_stage(spec, data, conditions, predicted, scored)
    with clock("latency"):  # the method's latency, and the data pipeline's speed
        latency = latency_rows(spec, method, data.splits["test"].images, BENCH_LATENCY)
        speed = pipeline_speed(data)
    updates = {"fit_seconds": fit.seconds, "fit_peak_memory_bytes": fit.peak_memory_bytes,
               "diagnostics": fit.diagnostics, **speed}  # fmt: skip
    with clock("store"):
        store_stage(db, run_id, spec, method, predicted, scored, {"latency": latency, "gallery": gallery}, updates)
    return fit, predicted, scored, latency


class Stopwatch:
    """Seconds of each named stage: `with clock("fit"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            with noted(f"in the {stage} stage"):
                yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def bench(
    method: str,
    board: str | Path | Board = "synth-cxr-ad",
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    db: Path | None = None,
    console: Console | None = None,
    **options: Any,
) -> BenchResult:
    """`run_bench` of the spec these arguments build (`options`: those of `RunOptions`)."""
    return run_bench(RunSpec.build(method, board, seed, params, RunOptions(**options)), db, console)


def _record_failure(db: Path, run_id: str, exc: BaseException) -> None:
    exc.add_note(f"run {run_id} is marked failed; nothing else of it was stored")
    try:
        with ResultStore(db) as store:
            store.fail_run(run_id, failure_text(exc))
    except DatabaseLocked:
        exc.add_note(f"run {run_id} could not be marked failed: the database stayed locked")


def run_latency(
    spec: RunSpec, configs: tuple[LatencyConfig, ...], db: Path | None = None, console: Console | None = None
) -> pd.DataFrame:
    """Fit a method on a board, then measure it under each configuration and store the rows."""
    console = console or Console(stderr=True)
    data = load_board_data(spec.board)
    method = spec.create_method()
    with progress_bars(console) as progress:
        fit_run(spec, method, data, _tracker(progress, spec.method))
        task = progress.add_task(f"{spec.method}: measuring", total=len(configs))
        rows = []
        for config in configs:
            rows.append(latency_rows(spec, method, data.splits["test"].images, (config,)))
            progress.advance(task)
    frame = pd.concat(rows, ignore_index=True)
    with ResultStore(db or default_db()) as store:
        store.add_latency(frame)
    return frame


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


def progress_bars(console: Console, transient: bool = True) -> Progress:
    """Bars for long loops (in Jupyter, rich shows them as a widget); `transient`: gone when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )
