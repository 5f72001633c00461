"""The score stage: every metric of a run, as a pure function of its prediction rows, the
board's frozen manifest (labels, patients, slice columns) and the board's settings.

A run calls it on the predictions it is about to store; `xrbench score` calls it on the same
rows read back from the database, and must get every number again exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from harness.boards.maps import kept_map_ids
from harness.core.errors import DataIntegrityError
from harness.data.groundtruth import GroundTruth
from harness.scoring.evaluation import Evaluation, Task, metric_row
from harness.scoring.localization import Localizer, decoded_maps, localization_metrics, normal_level
from harness.scoring.metrics import MetricValue
from harness.scoring.robustness import robustness_summary
from harness.scoring.tasks import task_for
from harness.scoring.uncertainty import uncertainty_rows

if TYPE_CHECKING:
    from harness.boards.spec import Board

T = TypeVar("T")
SCORING_VERSION = 6
"""Recorded with every run. 1: up to release 0.1.0. 2: the multi-label temperature is fitted
to convergence (strong Wolfe line search; version 1 stopped up to 1e-4 short of it).
3: localization metrics of kept maps against the board's ground truth. 4: IoBB leaves out map
regions under 1% of the map (speckle). 5: multi-label clean test sets add sensitivity at 95%
specificity, F1 at 0.5, F1, precision and recall at validation thresholds (stored as
`threshold` rows), the micro AUROC and the micro risk-coverage curve with its AURC.
6: anomaly clean test sets add specificity at 95% sensitivity and F1-max, and maps against
masks AUPIMO (`METRICS_ADDED`)."""
METRICS_ADDED = {"spec@95sens": 6, "f1max": 6, "aupimo": 6}
"""Metrics that a scoring version added, with that version: a bundle reported under an older
version lacks them, which is not a difference (`harness.submissions.verify`)."""
AUPIMO_FLAG = "fewer than 100,000 normal pixels: no false-positive rate as low as 1e-5"


def _untracked(items: Iterable[T], description: str) -> Iterable[T]:
    return items


@dataclass
class Scored:
    metrics: pd.DataFrame
    calibration_bins: pd.DataFrame
    risk_coverage: pd.DataFrame
    robustness: dict[str, Any]
    run_values: dict[str, Any]  # fitted on validation and stored in `runs` (threshold, temperature)

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {
            "metrics": self.metrics,
            "calibration_bins": self.calibration_bins,
            "risk_coverage": self.risk_coverage,
        }
        if "mean_corrupted_auroc" in self.robustness:
            tables["robustness"] = pd.DataFrame([self.robustness])
        return tables


def aligned_rows(
    predictions: pd.DataFrame, meta: pd.DataFrame, split: str, condition: str, severity: int
) -> pd.DataFrame:
    """The prediction rows of one split and condition in the manifest's image order; refuses
    missing, extra or repeated images."""
    rows = predictions[
        (predictions["split"] == split)
        & (predictions["condition"] == condition)
        & (predictions["severity"] == severity)
    ]
    where = f"predictions for {split} {condition} s{severity}"
    repeated = rows["image_id"][rows["image_id"].duplicated()]
    if len(repeated):
        raise DataIntegrityError(
            f"{where}: image {repeated.iloc[0]} appears {int((rows['image_id'] == repeated.iloc[0]).sum())} times"
        )
    expected = meta["image_id"]
    missing = expected[~expected.isin(rows["image_id"])]
    extra = rows["image_id"][~rows["image_id"].isin(expected)]
    if len(missing) or len(extra):
        detail = [f"{len(missing)} missing (first: {missing.iloc[0]})"] if len(missing) else []
        detail += [f"{len(extra)} not in the manifest (first: {extra.iloc[0]})"] if len(extra) else []
        raise DataIntegrityError(f"{where}: images differ from the frozen manifest: {'; '.join(detail)}")
    return rows.set_index("image_id").loc[expected.to_numpy()].reset_index()


def checked_scores(task: Task, board: Board, rows: pd.DataFrame, meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(truth from the manifest, scores) of aligned rows; refuses rows whose stored truth differs."""
    truth = task.truth(meta, board)
    stored, scores = task.stored_scores(rows)
    differ = np.flatnonzero((stored.reshape(len(rows), -1) != truth.reshape(len(rows), -1)).any(axis=1))
    if len(differ):
        raise DataIntegrityError(
            f"{len(differ)} stored predictions carry other labels than the frozen manifest "
            f"(first: {meta['image_id'].iloc[differ[0]]})"
        )
    return truth, scores


def scored_conditions(board: Board, predictions: pd.DataFrame) -> list[tuple[str, int]]:
    """The test conditions present, in the board's order: clean, then each corruption's
    severities as the board file lists them (the order summaries are computed in)."""
    test = predictions[predictions["split"] == "test"]
    found = {(str(c), int(s)) for c, s in zip(test["condition"], test["severity"], strict=True)}
    order = [("clean", 0)] + [(n, k + 1) for n, levels in board.corruptions.items() for k in range(len(levels))]
    return [c for c in order if c in found] + sorted(found - set(order))


def score_predictions(
    board: Board,
    manifest: pd.DataFrame,
    predictions: pd.DataFrame,
    track: Callable[[Iterable[T], str], Iterable[T]] = _untracked,
    maps: pd.DataFrame | None = None,
    ground_truth: GroundTruth | None = None,
) -> Scored:
    """Threshold and calibrators from validation predictions only, then every test condition;
    then, when the run kept maps and the board has ground truth, localization."""
    task = task_for(board)
    val_meta = manifest[manifest["split"] == "val"].reset_index(drop=True)
    test_meta = manifest[manifest["split"] == "test"].reset_index(drop=True)
    val_truth, val_scores = checked_scores(
        task, board, aligned_rows(predictions, val_meta, "val", "clean", 0), val_meta
    )
    fitted = task.fit_on_validation(board, val_truth, val_scores)
    conditions = scored_conditions(board, predictions)
    if ("clean", 0) not in conditions:
        raise DataIntegrityError("there are no predictions for the clean test split")
    evaluation = Evaluation()
    for condition, severity in track(conditions, "scoring conditions"):
        rows = aligned_rows(predictions, test_meta, "test", condition, severity)
        truth, scores = checked_scores(task, board, rows, test_meta)
        detailed = condition == "clean"
        evaluation.extend(task.evaluate(board, test_meta, truth, scores, fitted, condition, severity, detailed))
        if "variances" in rows and rows["variances"].notna().all():
            variances = np.stack(rows["variances"].to_numpy()).astype(np.float64)
            evaluation.extend(uncertainty_rows(truth, scores, variances, fitted, condition, severity))
    run_values = dict(fitted.run_values)
    if maps is not None and not maps.empty and ground_truth is not None:
        rows, run_values["map_level"] = localization_rows(board, task, val_meta, test_meta, maps, ground_truth)
        evaluation.metrics += rows
    metrics, bins, risk = evaluation.frames()
    overall = metrics[(metrics["slice"] == "all") & (metrics["metric"] == "auroc")]
    aurocs = {(r.condition, int(r.severity)): float(r.value) for r in overall.itertuples()}
    return Scored(metrics, bins, risk, robustness_summary(aurocs), run_values)


def localization_rows(
    board: Board, task: Task, val_meta: pd.DataFrame, test_meta: pd.DataFrame, maps: pd.DataFrame, truth: GroundTruth
) -> tuple[list[dict], float]:
    """Metric rows of the clean test maps against the ground truth, and the map level (from
    the validation normals) the box metrics threshold at."""
    val_meta, test_meta = (
        meta[meta["image_id"].isin(kept_map_ids(board, meta, split, truth.image_ids))].reset_index(drop=True)
        for meta, split in ((val_meta, "val"), (test_meta, "test"))
    )  # the board's map sample: every image unless it samples
    level = normal_level(decoded_maps(maps, val_meta, "val"), val_meta["label"].to_numpy())
    localizer = Localizer(decoded_maps(maps, test_meta, "test"), test_meta, truth, task.map_channels(board))
    rows = []
    for m in localization_metrics(localizer, level, board.bootstrap, board.seed):
        if m.slice != "all" and m.n_pos < board.min_slice_class:
            flag = f"too few cases: {m.n_pos} with ground truth (minimum {board.min_slice_class})"
            m = MetricValue(m.metric, float("nan"), float("nan"), float("nan"), m.n, m.n_pos, m.slice)
        elif m.n_pos == 0:
            flag = "no ground truth here"
        else:
            flag = AUPIMO_FLAG if m.metric == "aupimo" and np.isnan(m.value) else None
        rows.append(metric_row("clean", 0, m, flag))
    return rows, level
