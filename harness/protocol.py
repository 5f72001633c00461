"""The contract between the harness and a method.

The harness owns data loading, preprocessing, corruption and scoring; a method sees tensors
only. See the README section "Adding a method" for a complete, short example.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class MethodCard:
    """What the leaderboard shows about a method."""

    name: str
    family: str
    description: str
    reference: str
    license: str
    tasks: tuple[str, ...] = ("anomaly",)
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """`scores`: (B,) anomaly scores, higher is more anomalous, or (B, K) logits for multi-label.
    `maps`: optional (B, h, w) anomaly or saliency maps."""

    scores: torch.Tensor
    maps: torch.Tensor | None = None


class ImageBatches:
    """Re-iterable batches of float32 images (B, 1, H, W) in [0, 1].

    Iterating yields image batches; `with_labels()` yields (images, labels) pairs, where
    labels are int64 (B,) for anomaly boards (1 = abnormal) and float32 (B, K) multi-hot
    for multi-label boards (column k = `FitContext.targets[k]`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
        self._images, self._labels = images, labels
        self.batch_size, self.device = batch_size, device

    def __len__(self) -> int:
        return -(-len(self._images) // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self._images)

    def with_labels(self, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches, in `order` (a permutation of image indices, for example
        a seeded shuffle for training) or in split order. Images stay uint8 until batched."""
        for start in range(0, len(self._images), self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            yield self._images[index].to(self.device, torch.float32) / 255.0, self._labels[index]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for images, _ in self.with_labels():
            yield images


@dataclass
class FitContext:
    seed: int
    device: torch.device
    cache_dir: Path
    log: logging.Logger
    progress: Callable[[Iterable[T], str], Iterable[T]] = field(default=lambda it, desc: it)
    resolution: int = 128
    task: str = "anomaly"
    data_fingerprint: str = ""
    """Identifies the training data (board, split hash, dataset hash, resolution): part of
    every cache key of things a method learns from it."""
    targets: tuple[str, ...] = ()
    """Multi-label boards: the findings, in the order of the logit columns `predict` returns."""


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a run used: `none` for seeded random init, else a name and file hash."""

    id: str = "none"
    sha256: str | None = None


class Method:
    """Base class. Subclasses set `card` and implement `fit` and `predict`.

    Parameters arrive as keyword arguments already merged with `card.defaults` and
    type-checked; read them from `self.params`.
    """

    card: ClassVar[MethodCard]

    def __init__(self, **params: Any):
        self.params: dict[str, Any] = {**self.card.defaults, **params}

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        raise NotImplementedError

    def predict(self, batch: torch.Tensor) -> Prediction:
        raise NotImplementedError

    def weights(self) -> WeightsInfo:
        return WeightsInfo()

    def torch_modules(self) -> list[torch.nn.Module]:
        """The fitted torch modules used by `predict`: for parameter counts, FLOPs,
        channels_last and torch.compile in latency measurements."""
        return []

    def memory_bank_bytes(self) -> int:
        """Bytes held by a fitted memory bank or index (0 if none)."""
        return 0
