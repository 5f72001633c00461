"""The errors a run makes, shown: which test images its gallery holds, and what the results
database keeps of them (the input at the board's resolution, its ground truth) so that the
site can draw them from the database alone.

- false positives and false negatives at the validation threshold, the largest margins first
  (multi-label boards: per finding, at probability 0.5);
- a case study: the same abnormal study (the first in manifest order, for every method) clean
  and under the run's worst corruption at its highest severity.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from PIL import Image

from harness.data.groundtruth import GroundTruth, truth_of
from harness.scoring.tasks import Task

if TYPE_CHECKING:
    from harness.boards.spec import Board

PER_KIND = 4  # images of each kind (per finding on multi-label boards: half as many)


def _ranked(frame: pd.DataFrame, mask: np.ndarray, margin: np.ndarray, kind: str, finding: str, k: int) -> list[dict]:
    chosen = frame[mask].assign(margin=margin[mask]).sort_values(["margin", "image_id"], ascending=[False, True])
    return [
        {"kind": kind, "finding": finding, "rank": r + 1, "image_id": row.image_id, "condition": "clean",
         "severity": 0, "score": float(row.value), "margin": float(row.margin)}
        for r, row in enumerate(chosen.head(k).itertuples())
    ]  # fmt: skip


def error_cases(
    task: Task, board: Board, predictions: pd.DataFrame, threshold: float | None, candidates: set[str] | None = None
) -> list[dict]:
    """The gallery's false positives and negatives on the clean test split (among the
    `candidates` images, where given: the board's map sample)."""
    test = predictions[(predictions["split"] == "test") & (predictions["condition"] == "clean")]
    if candidates is not None:
        test = test[test["image_id"].isin(candidates)]
    truth, scores = task.stored_scores(test)
    cases = []
    if scores.ndim == 1:
        frame = test.assign(value=scores)
        margin = scores - threshold
        cases += _ranked(frame, (truth == 0) & (margin >= 0), margin, "false positive", "", PER_KIND)
        cases += _ranked(frame, (truth == 1) & (margin < 0), -margin, "false negative", "", PER_KIND)
        return cases
    for k, finding in enumerate(board.targets):
        frame = test.assign(value=scores[:, k])
        logit = scores[:, k]  # probability 0.5 at logit 0, whatever the temperature
        cases += _ranked(frame, (truth[:, k] == 0) & (logit >= 0), logit, "false positive", finding, PER_KIND // 2)
        cases += _ranked(frame, (truth[:, k] == 1) & (logit < 0), -logit, "false negative", finding, PER_KIND // 2)
    return cases


def case_study(predictions: pd.DataFrame, image_id: str | None, robustness: dict) -> list[dict]:
    """The case image clean and under the worst corruption at its highest severity."""
    if image_id is None:
        return []
    rows = predictions[(predictions["split"] == "test") & (predictions["image_id"] == image_id)]
    worst = robustness.get("worst_condition")
    chosen = [("clean", 0)]
    if worst:
        chosen.append((worst, int(rows[rows["condition"] == worst]["severity"].max())))
    score = {(r.condition, int(r.severity)): r.score for r in rows.itertuples()} if "score" in rows else {}
    return [
        {"kind": "case study", "finding": "", "rank": k + 1, "image_id": image_id, "condition": c, "severity": s,
         "score": float(score.get((c, s), float("nan"))), "margin": float("nan")}
        for k, (c, s) in enumerate(chosen)
    ]  # fmt: skip


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def gallery_rows(
    cases: list[dict], images: dict[tuple[str, int], tuple[list[str], torch.Tensor]], truth: GroundTruth | None
) -> pd.DataFrame:
    """The gallery table: each case with its input image (PNG), its ground-truth mask (PNG, the
    finding's, or all the image's findings) and boxes (JSON, board pixels)."""
    rows = []
    for case in cases:
        ids, array = images[(case["condition"], case["severity"])]
        mask, boxes = truth_of(truth, case["image_id"], case["finding"])
        image = png(array[ids.index(case["image_id"]), 0].numpy())
        mask_png = png((mask * 255).astype(np.uint8)) if mask is not None else None
        rows.append({**case, "image": image, "mask": mask_png, "boxes": json.dumps(boxes)})
    return pd.DataFrame(rows)
