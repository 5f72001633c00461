"""The stages of one run between loading and storing, each with explicit inputs and outputs:

    conditions -> fit -> predict (every condition) -> [score] -> gallery -> latency -> store

Every stage takes the run's `RunSpec` and the board's data as the run loaded them (with the
board as run: a machine's exclusions give it a reduced split hash). Scoring is the score
stage's (`harness.scoring.score`), called by the runner between predicting and the gallery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import torch

from harness.api.identity import method_origin
from harness.api.protocol import FitContext, Method
from harness.boards.maps import kept_map_ids
from harness.boards.spec import Board
from harness.core.errors import DatabaseLocked, DataIntegrityError, MethodFailure, XRBenchError, first_line
from harness.core.fingerprints import PREDICTIONS_HASH_SCHEME, predictions_sha256
from harness.core.ledger import stored_card
from harness.core.maps import map_rows, maps_sha256
from harness.core.paths import cache_root, under
from harness.data.cache import cached_images, decode_images
from harness.data.loading import BoardData
from harness.data.stress import Condition, corrupted_conditions
from harness.results.store import ResultStore, keep_pending, now, pending_folder
from harness.run.batches import data_fingerprint, split_batches
from harness.run.gallery import case_study, error_cases, gallery_rows
from harness.run.inference import Predicted, predict_split, prediction_rows
from harness.run.latency import LatencyConfig, data_pipeline_speed, measure, peak_memory
from harness.run.saliency import explainer_for
from harness.run.spec import RunSpec
from harness.scoring.score import SCORING_VERSION, Scored
from harness.scoring.tasks import task_for

T = TypeVar("T")
Track = Callable[[Iterable[T], str], Iterable[T]]


def test_conditions(spec: RunSpec, data: BoardData) -> list[Condition]:
    """The clean test split, then (unless the run skips the stress suite) every corruption and severity."""
    return board_conditions(data, spec.options.corruptions)


def board_conditions(data: BoardData, corruptions: bool) -> list[Condition]:
    """The clean test split, then (with `corruptions`) every corruption and severity of the board."""
    test = data.splits["test"]
    conditions = [Condition("clean", 0, None, test.images)]
    if corruptions and data.board.corruptions:
        ids = test.meta["image_id"].tolist()
        conditions += corrupted_conditions(data.board, test.images, ids, data.dataset_sha256)
    return conditions


# --- fit -----------------------------------------------------------------------------------------


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
    """Fit with the board's train and val splits, seeded, with time and peak memory measured.
    (Its inputs are explicit, not a spec: the conformance checks fit methods never registered.)"""
    torch.manual_seed(seed)
    name = method.card.name
    ctx = FitContext(
        seed=seed,
        device=device,
        cache_dir=under(cache_root(), "methods", name),
        log=logging.getLogger(f"xrbench.method.{name}"),
        progress=track,
        resolution=board.resolution,
        task=board.task,
        data_fingerprint=data_fingerprint(board, data.dataset_sha256),
        targets=board.targets,
        precision=precision,
        code=hashlib.sha256(json.dumps(method_origin(type(method)), sort_keys=True).encode()).hexdigest(),
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


def fit_run(spec: RunSpec, method: Method, data: BoardData, track: Track) -> FitResult:
    return fit_stage(method, data.board, data, spec.seed, spec.device, track, spec.options.precision)


def diagnostics_json(method: Method) -> str | None:
    """The fitted method's diagnostics as JSON (None when it reports none)."""
    try:
        report = method.diagnostics()
        return json.dumps(report, sort_keys=True) if report else None
    except (TypeError, ValueError) as exc:
        raise MethodFailure(f"method {method.card.name}: diagnostics() is not plain JSON: {exc}") from exc


# --- predict -------------------------------------------------------------------------------------


def predict_stage(
    spec: RunSpec, method: Method, data: BoardData, conditions: list[Condition], track: Track
) -> Predicted:
    """Scores for the validation split and every test condition; maps (the method's, or
    Grad-CAM's when the run explains) are kept for the board's map sample of the clean
    validation and test images (all of them unless the board samples), and for the case-study
    image (`case_image`) clean and under every corruption."""
    board, task, device = data.board, spec.task, spec.device
    explainer = explainer_for(spec.options.explain, method)
    val, test = data.splits["val"], data.splits["test"]
    jobs = [("val", "clean", 0, val.images, val)] + [("test", c.name, c.severity, c.images, test) for c in conditions]
    case = {case_image(test.meta)} - {None}
    truth = data.truth.image_ids if data.truth is not None else set()
    sample = {"val": kept_map_ids(board, val.meta, "val", truth), "test": kept_map_ids(board, test.meta, "test", truth)}
    frames, maps = [], []
    start = time.perf_counter()
    for split, condition, severity, images, part in jobs:
        ids = part.meta["image_id"].tolist()
        what = split if condition == "clean" else f"{condition} s{severity}"
        batches = split_batches(images, part, board, device)
        keep = sample[split] | (case if split == "test" else set()) if condition == "clean" else case
        out = predict_split(
            method, task, board, batches, ids, what, device, spec.options.precision, keep, track, explainer
        )
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
    spec: RunSpec, data: BoardData, conditions: list[Condition], predicted: Predicted, scored: Scored
) -> pd.DataFrame:
    """The errors and the case study the site shows, with their inputs and ground truth."""
    return gallery_of(data, conditions, predicted.frame, scored)


def gallery_of(data: BoardData, conditions: list[Condition], predictions: pd.DataFrame, scored: Scored) -> pd.DataFrame:
    """The gallery of a run's predictions: a function of the predictions, their scoring (the
    threshold, the worst corruption) and the board alone, so that an imported bundle's gallery
    is the one its local run stored."""
    test = data.splits["test"]
    truth = data.truth.image_ids if data.truth is not None else set()
    candidates = kept_map_ids(data.board, test.meta, "test", truth)  # errors are shown with their maps
    cases = error_cases(task_for(data.board), data.board, predictions, scored.run_values.get("threshold"), candidates)
    cases += case_study(predictions, case_image(test.meta), scored.robustness)
    ids = test.meta["image_id"].tolist()
    images = {(c.name, c.severity): (ids, c.images) for c in conditions}
    return gallery_rows(cases, images, data.truth)


# --- latency -------------------------------------------------------------------------------------

BENCH_LATENCY = (
    LatencyConfig(batch_size=1, warmup=3, iterations=20),
    LatencyConfig(batch_size=32, warmup=1, iterations=4),
)


def latency_rows(
    spec: RunSpec, method: Method, images: torch.Tensor, configs: tuple[LatencyConfig, ...]
) -> pd.DataFrame:
    rows = [measure(method, images, spec.device, c).row() for c in configs]
    return pd.DataFrame(rows).assign(
        board=spec.board.name, method=spec.method, params=json.dumps(spec.params, sort_keys=True), measured_at=now()
    )


def pipeline_speed(data: BoardData, sample: int = 64) -> dict[str, float]:
    """Decode and cache-read speed of the board's data (a measurement: it never fails a run;
    an image that no longer decodes gives NaN and a warning)."""
    rows, board = data.source_manifest, data.board
    ids = rows["image_id"].tolist()
    try:
        return data_pipeline_speed(
            decode=lambda: len(decode_images(data.source, ids[:sample], board.resolution, resample=board.resample)),
            read_cache=lambda: len(
                cached_images(data.source, rows, board.split_sha256, board.resolution, board.resample)
            ),
        )
    except DataIntegrityError as exc:
        logging.getLogger("xrbench").warning("data pipeline speed not measured: %s", exc)
        return {"decode_ips": float("nan"), "cache_read_ips": float("nan")}


# --- store ---------------------------------------------------------------------------------------


class RunPending(XRBenchError):
    """A finished run whose results wait beside a locked database."""


def store_stage(
    db: Path,
    run_id: str,
    spec: RunSpec,
    method: Method,
    predicted: Predicted,
    scored: Scored,
    extra: dict[str, pd.DataFrame],
    updates: dict[str, Any],
) -> None:
    """Write everything the run produced, and mark it ok, in one transaction."""
    tables = {"predictions": predicted.frame, "maps": predicted.maps, **scored.tables(), **extra}
    tables["metrics"] = tables["metrics"].assign(board=spec.board.name, method=spec.method)
    weights = method.weights()
    updates = {
        **updates,
        **scored.run_values,
        "predict_seconds": predicted.seconds,
        "weights_id": weights.id,
        "weights_sha256": weights.sha256,
        "weights_card": json.dumps(stored_card(weights.card, weights.id), sort_keys=True),
        "predictions_sha256": predictions_sha256(predicted.frame),
        "predictions_hash_scheme": PREDICTIONS_HASH_SCHEME,
        "scoring_version": SCORING_VERSION,
        "maps_sha256": maps_sha256(predicted.maps) if not predicted.maps.empty else None,
    }
    try:
        with ResultStore(db) as store:
            store.complete_run(run_id, tables, updates)
    except (DatabaseLocked, OSError, duckdb.Error) as exc:  # locked, or a full disk: keep the work
        why = first_line(exc) or type(exc).__name__
        kept = keep_safe(db, run_id, tables, updates, exc)
        where = "" if kept.parent == pending_folder(db) else f" (move it into {pending_folder(db)} first)"
        raise RunPending(
            f"{why}; the finished run {run_id} is kept in {kept}: load it with `xrbench runs --load-pending`"
            f"{where} once the database can be written"
        ) from exc


def keep_safe(db: Path, run_id: str, tables: dict[str, pd.DataFrame], updates: dict[str, Any], exc: Exception) -> Path:
    """Keep a finished run beside the database, or, when that fails too (the same full disk),
    in the temporary folder; re-raises `exc` with a note when neither can be written."""
    try:
        return keep_pending(db, run_id, tables, updates)
    except (OSError, duckdb.Error):
        pass
    try:
        return keep_pending(Path(tempfile.gettempdir()) / "xrbench-pending" / db.name, run_id, tables, updates)
    except (OSError, duckdb.Error):
        exc.add_note(f"the finished run {run_id} could not be kept anywhere: free some disk space and run it again")
        raise exc from None
