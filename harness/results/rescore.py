"""`xrbench score RUN_ID`: recompute a stored run's metrics from its stored predictions with
the current metric code, and say whether every stored number comes out the same."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.files import load_board
from harness.boards.spec import Board
from harness.boards.splits import excluded_split_sha256
from harness.core.errors import XRBenchError
from harness.data.loading import frozen_manifest, load_manifest, test_ground_truth
from harness.results import queries
from harness.results.store import ResultStore
from harness.scoring.score import Scored, score_predictions

# table -> (key columns, value columns)
COMPARED = {
    "metrics": (["condition", "severity", "slice", "metric"], ["value", "ci_low", "ci_high", "n", "n_pos", "flag"]),
    "calibration_bins": (
        ["condition", "severity", "calibrator", "index"],
        ["lower", "upper", "mean_confidence", "accuracy", "count"],
    ),
    "risk_coverage": (["condition", "severity", "abstain_by", "coverage"], ["risk"]),
    "robustness": ([], ["clean_auroc", "mean_corrupted_auroc", "worst_condition", "worst_severity", "worst_auroc"]),
}
RUN_VALUES = ("threshold", "temperature", "map_level")


@dataclass
class Rescore:
    run_id: str
    compared: dict[str, int] = field(default_factory=dict)  # table -> values compared
    differences: list[dict] = field(default_factory=list)  # table, key, column, stored, recomputed

    @property
    def identical(self) -> bool:
        return not self.differences


def run_manifest(board: Board, run: dict) -> pd.DataFrame:
    """The labelled manifest a stored run was scored on: the board file's, less the images the
    run's machine had excluded (checked against the run's split hash)."""
    if board.version != run["board_version"]:
        raise XRBenchError(
            f"run {run['run_id']} was made on version {run['board_version']} of board {board.name}; "
            f"the board file here is version {board.version}"
        )
    manifest = frozen_manifest(board) if board.labels_sha256 is None else load_manifest(board).manifest
    excluded = json.loads(run.get("excluded_images") or "[]")
    split = excluded_split_sha256(board.split_sha256, excluded) if excluded else board.split_sha256
    if split != run["split_sha256"]:
        raise XRBenchError(
            f"run {run['run_id']} was made on split {run['split_sha256'][:12]}, which is not board "
            f"{board.name}'s frozen manifest ({board.split_sha256[:12]}) less the images the run excluded"
        )
    return manifest[~manifest["image_id"].isin(excluded)].reset_index(drop=True)


def _missing(x: object) -> bool:
    return x is None or (pd.api.types.is_scalar(x) and bool(pd.isna(x)))


def _equal(a: object, b: object) -> bool:
    """Exact equality, with every kind of missing value equal to every other."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _with_abstain_by(frame: pd.DataFrame) -> pd.DataFrame:
    """Risk-coverage rows with `abstain_by` filled in: missing means by confidence."""
    values = frame["abstain_by"].astype(object) if "abstain_by" in frame else pd.Series(None, frame.index, object)
    return frame.assign(abstain_by=values.where(values.notna(), "confidence"))


def _compare(report: Rescore, table: str, stored: pd.DataFrame, recomputed: pd.DataFrame) -> None:
    keys, values = COMPARED[table]
    if stored.empty and recomputed.empty:
        return
    if table == "risk_coverage":  # the confidence curve is stored without abstain_by
        stored, recomputed = _with_abstain_by(stored), _with_abstain_by(recomputed)
    if keys:
        stored, recomputed = stored.set_index(keys), recomputed.set_index(keys)
    else:
        stored, recomputed = stored.reset_index(drop=True), recomputed.reset_index(drop=True)
    for key in stored.index.union(recomputed.index):
        for column in values:
            old = stored.at[key, column] if key in stored.index else "(absent)"
            new = recomputed.at[key, column] if key in recomputed.index else "(absent)"
            old, new = (x.item() if isinstance(x, np.generic) else x for x in (old, new))
            report.compared[table] = report.compared.get(table, 0) + 1
            if not _equal(old, new):
                report.differences.append({"table": table, "key": key, "column": column, "stored": old, "now": new})


def rescore_run(store: ResultStore, run_id: str, board_file: str | Path | None = None) -> Rescore:
    """Score a stored run's predictions again and compare with every number it stored. The
    board is the run's board by name in `leaderboards/`, or the board file given."""
    run = store.run(run_id)
    if run["status"] != "ok":
        raise XRBenchError(f"run {run_id} has status {run['status']}; only completed runs have results to score")
    predictions = store.predictions(run_id)
    board = load_board(board_file or run["board"])
    if board.name != run["board"]:
        raise XRBenchError(f"run {run_id} is a run on board {run['board']}, not on {board.name} ({board_file})")
    manifest = run_manifest(board, run)
    maps = store.maps(run_id) if run.get("maps_sha256") else None
    truth = None
    if maps is not None and board.ground_truth:
        found = load_manifest(board)
        truth = test_ground_truth(board, manifest, found.test_source or found.source)
    scored: Scored = score_predictions(board, manifest, predictions, maps=maps, ground_truth=truth)
    report = Rescore(run_id)
    recomputed = scored.tables()
    for table in COMPARED:
        stored = queries.run_table(store, table, run_id)
        fresh = recomputed.get(table, pd.DataFrame())
        _compare(report, table, stored, fresh.reindex(columns=stored.columns) if not fresh.empty else fresh)
    for name in RUN_VALUES:
        if name in scored.run_values or not _missing(run.get(name)):
            old, new = run.get(name), scored.run_values.get(name)
            report.compared["runs"] = report.compared.get("runs", 0) + 1
            if not _equal(old, new):
                report.differences.append({"table": "runs", "key": run_id, "column": name, "stored": old, "now": new})
    return report
