"""`xrbench compare`: a paired test of two stored runs over the same test images, with the
test their board's task defines (`Task.compare`), on predictions checked against their hash."""

from __future__ import annotations

import json

from harness.core.errors import XRBenchError
from harness.results import queries
from harness.results.store import ResultStore
from harness.scoring.significance import Comparison
from harness.scoring.tasks import get_task


def evaluated_findings(store: ResultStore, run_id: str) -> list[int]:
    """Columns of a multi-label run's logits that its macro AUROC averaged: the findings with a
    clean-test AUROC (the others had too few cases), in the order of the run's `targets`."""
    targets = json.loads(store.run(run_id)["targets"] or "[]")
    names = {s.removeprefix("finding=") for s in queries.evaluated_finding_slices(store, run_id)}
    return [k for k, name in enumerate(targets) if name in names]


def comparable_runs(store: ResultStore, run_a: str, run_b: str) -> tuple[dict, dict]:
    """Both runs, refusing unfinished runs and runs on different boards, splits or data."""
    a, b = store.run(run_a), store.run(run_b)
    for run in (a, b):
        if run["status"] != "ok":
            raise XRBenchError(f"run {run['run_id']} has status {run['status']}; only completed runs compare")
    for key in ("board", "split_sha256", "dataset_sha256", "task"):
        if a[key] != b[key]:
            raise XRBenchError(f"runs differ in {key} ({a[key]} vs {b[key]}): their results are not comparable")
    return a, b


def compare_runs(
    store: ResultStore,
    run_a: str,
    run_b: str,
    condition: str = "clean",
    severity: int = 0,
    n_resamples: int = 2000,
    metric: str = "auroc",
    seed: int = 0,
) -> Comparison:
    """Compare two stored runs on the same board, split and test images."""
    a, _ = comparable_runs(store, run_a, run_b)
    task = get_task(a["task"])
    rows = []
    for run_id in (run_a, run_b):
        frame = store.predictions(run_id)
        rows.append(
            frame[
                (frame["split"] == "test") & (frame["condition"] == condition) & (frame["severity"] == severity)
            ].reset_index(drop=True)
        )
    if rows[0].empty or not rows[0]["image_id"].equals(rows[1]["image_id"]):
        raise XRBenchError(f"the runs do not share test predictions for condition {condition} severity {severity}")
    truth, scores_a = task.stored_scores(rows[0])
    _, scores_b = task.stored_scores(rows[1])
    groups = rows[0]["patient_id"].to_numpy()
    columns = evaluated_findings(store, run_a) if truth.ndim == 2 else None
    return task.compare(truth, scores_a, scores_b, groups, metric, n_resamples, seed, columns)


def tie_p_values(store: ResultStore, task_name: str, run_ids: list[str], metric: str) -> list[float]:
    """p-value of each run against the first (the leader) on the clean test split, by the
    task's tie test; NaN for a run that does not share the leader's test images. The leader
    gets 1."""
    task = get_task(task_name)
    frames = {}
    for run_id in run_ids:
        frame = store.predictions(run_id)
        frames[run_id] = frame[(frame["split"] == "test") & (frame["condition"] == "clean")].reset_index(drop=True)
    leader = frames[run_ids[0]]
    truth, leader_scores = task.stored_scores(leader)
    groups = leader["patient_id"].to_numpy()
    columns = evaluated_findings(store, run_ids[0]) if truth.ndim == 2 else None
    out = [1.0]
    for run_id in run_ids[1:]:
        other = frames[run_id]
        if not other["image_id"].equals(leader["image_id"]):
            out.append(float("nan"))
            continue
        out.append(task.tie_p(truth, leader_scores, task.stored_scores(other)[1], groups, metric, columns))
    return out
