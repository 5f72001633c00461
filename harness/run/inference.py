"""Harness-owned inference: how every method's `predict` is called, checked and recorded.

The harness puts the method's torch modules in eval mode and calls `predict` under
`torch.inference_mode()` (or `torch.enable_grad()` for methods whose card `needs_grad`) and the
run's autocast precision. Every batch's scores are checked for shape and finiteness and its
maps, when the card `produces_maps`, for shape, consistency and finiteness; the first bad
image is named. Kept maps are area-averaged to at most 64x64 (`harness.core.maps`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from harness.api.protocol import ImageBatches, Method
from harness.core.errors import MethodFailure, MethodOutputError, XRBenchError
from harness.core.maps import stored_size
from harness.core.precision import autocast
from harness.run.saliency import Explainer
from harness.scoring.tasks import Task

if TYPE_CHECKING:
    from harness.boards.spec import Board

T = TypeVar("T")
Track = Callable[[Iterable[T], str], Iterable[T]]


@contextlib.contextmanager
def inference(method: Method, device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """The context every `predict` call runs in."""
    for module in method.torch_modules():
        module.eval()
    grad = torch.enable_grad() if method.card.needs_grad else torch.inference_mode()
    with grad, autocast(device, precision):
        yield


@dataclass
class SplitPrediction:
    scores: np.ndarray  # (N,) or (N, K) float64
    maps: np.ndarray | None  # (M, C, h, w) float32 at stored size, of the images whose maps are kept
    map_ids: list[str]  # those images
    variances: np.ndarray | None = None  # the scores' shape, when the method reports its uncertainty


class _Checker:
    """Checks one split's batches against what the task and the card promise."""

    def __init__(self, method: Method, task: Task, board: Board, image_ids: list[str], what: str):
        self.method, self.task, self.board, self.ids, self.what = method, task, board, image_ids, what
        self.map_size: tuple[int, ...] | None = None
        self.with_variance = False

    def fail(self, start: int, index: int, problem: str) -> MethodOutputError:
        image = self.ids[start + index] if start + index < len(self.ids) else "?"
        return MethodOutputError(f"method {self.method.card.name} {problem} on {self.what} (first image: {image})")

    def scores(self, scores: object, start: int, n: int) -> np.ndarray:
        if not isinstance(scores, torch.Tensor):
            raise self.fail(start, 0, f"returned scores of type {type(scores).__name__}; expected a torch.Tensor")
        expected = self.task.score_shape(n, self.board)
        if tuple(scores.shape) != expected:
            raise self.fail(
                start,
                0,
                f"returned scores of shape {tuple(scores.shape)} for a batch of {n} images; expected {expected}",
            )
        out = scores.detach().to("cpu", torch.float64).numpy()
        bad = np.flatnonzero(~np.isfinite(out).reshape(n, -1).all(axis=1))
        if len(bad):
            raise self.fail(start, int(bad[0]), f"returned non-finite scores for {len(bad)} images")
        return out

    def variance(self, variance: object, start: int, n: int) -> np.ndarray | None:
        """The batch's variances, or None for a method without them; a method reports them for
        every batch of a split or for none (the first batch decides)."""
        if start == 0:
            self.with_variance = variance is not None
        if not self.with_variance:
            if variance is not None:
                raise self.fail(start, 0, "returned a variance for this batch but none for the split's first")
            return None
        expected = self.task.score_shape(n, self.board)
        if not isinstance(variance, torch.Tensor) or tuple(variance.shape) != expected:
            shape = tuple(variance.shape) if isinstance(variance, torch.Tensor) else type(variance).__name__
            raise self.fail(start, 0, f"returned a variance of shape {shape}; expected {expected}, as its scores")
        out = variance.detach().to("cpu", torch.float64).numpy()
        bad = np.flatnonzero(~(np.isfinite(out) & (out >= 0)).reshape(n, -1).all(axis=1))
        if len(bad):
            raise self.fail(start, int(bad[0]), f"returned a negative or non-finite variance for {len(bad)} images")
        return out

    def explained(self, maps: torch.Tensor, start: int, keep: list[int]) -> torch.Tensor:
        bad = torch.nonzero(~torch.isfinite(maps.reshape(len(maps), -1)).all(dim=1)).flatten()
        if len(bad):
            raise self.fail(start, keep[int(bad[0])], "has a saliency map with non-finite values")
        return maps

    def maps(self, maps: object, start: int, n: int) -> torch.Tensor | None:
        """The batch's maps as (n, C, h, w) float32, or None for a method without maps."""
        if not self.method.card.produces_maps:
            if maps is not None:
                raise self.fail(start, 0, "returned maps, but its card does not declare produces_maps=True")
            return None
        if not isinstance(maps, torch.Tensor):
            raise self.fail(start, 0, "declares produces_maps but returned no maps for a batch")
        expected = self.task.map_shape(n, self.board)
        shape = tuple(maps.shape)
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape, strict=False)):
            wanted = (*(str(e) for e in expected[:-2]), "h", "w")
            raise self.fail(start, 0, f"returned maps of shape {shape}; expected ({', '.join(wanted)})")
        if self.map_size is None:
            self.map_size = shape[-2:]
        elif shape[-2:] != self.map_size:
            raise self.fail(start, 0, f"returned maps of size {shape[-2:]} after maps of size {self.map_size}")
        flat = maps.detach().float().reshape(n, -1)
        bad = torch.nonzero(~torch.isfinite(flat).all(dim=1)).flatten()
        if len(bad):
            raise self.fail(start, int(bad[0]), f"returned non-finite map values for {len(bad)} images")
        return flat.view(n, -1, *shape[-2:])


def predict_split(
    method: Method,
    task: Task,
    board: Board,
    batches: ImageBatches,
    image_ids: list[str],
    what: str,
    device: torch.device,
    precision: str,
    keep_maps: set[str],
    track: Track,
    explainer: Explainer | None = None,
) -> SplitPrediction:
    """Scores for every image of one split and condition, and the maps of the images in
    `keep_maps`: the method's own, or the `explainer`'s (Grad-CAM of its score)."""
    check = _Checker(method, task, board, image_ids, what)
    scores, variances, maps, kept, start = [], [], [], [], 0
    with inference(method, device, precision):
        for images in track(batches, f"predicting {what}"):
            n = len(images)
            try:
                prediction = method.predict(images)
            except XRBenchError:
                raise
            except Exception as exc:
                problem = f"failed while predicting {what}, batch from image {image_ids[start]}"
                raise MethodFailure(f"method {method.card.name} {problem}: {type(exc).__name__}: {exc}") from exc
            scores.append(check.scores(prediction.scores, start, n))
            variance = check.variance(prediction.variance, start, n)
            if variance is not None:
                variances.append(variance)
            batch_maps = check.maps(prediction.maps, start, n) if explainer is None else None
            keep = [k for k in range(n) if image_ids[start + k] in keep_maps]
            if keep and explainer is not None:
                batch_maps = check.explained(explainer(images[keep]), start, keep)
                keep = list(range(len(keep)))
            if keep and batch_maps is not None:
                small = F.adaptive_avg_pool2d(batch_maps[keep], stored_size(*batch_maps.shape[-2:]))
                maps.append(small.cpu().numpy())
                kept += [image_ids[start + k] for k in keep]
            start += n
    return SplitPrediction(
        np.concatenate(scores),
        np.concatenate(maps) if maps else None,
        kept,
        np.concatenate(variances) if variances else None,
    )


@dataclass
class Predicted:
    """The predict stage's output: prediction rows, kept map rows, and the time it took."""

    frame: pd.DataFrame
    maps: pd.DataFrame
    seconds: float


def prediction_rows(
    task: Task,
    meta: pd.DataFrame,
    truth: np.ndarray,
    split: str,
    condition: str,
    severity: int,
    scores: np.ndarray,
    variances: np.ndarray | None = None,
) -> pd.DataFrame:
    """A split's stored prediction rows; `variances` (the scores' shape) become the `variances`
    column, a list per image (one value on anomaly boards)."""
    frame = pd.DataFrame(
        {
            "image_id": meta["image_id"].to_numpy(),
            "patient_id": meta["patient_id"].to_numpy(),
            "split": split,
            "condition": condition,
            "severity": severity,
            "label": meta["label"].to_numpy(dtype=np.int64),
        }
    )
    frame = frame.assign(**task.prediction_columns(truth, scores))
    if variances is not None:
        frame["variances"] = variances.reshape(len(frame), -1).tolist()
    return frame
