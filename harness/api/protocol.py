"""The contract between the harness and a method.

The harness owns data loading, preprocessing, corruption, inference mode and precision, and
scoring; a method sees tensors only. `docs/adding-a-method.md` walks through a complete
example; `harness.conformance.checks.check_method` checks a method against this contract.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from harness.api.params import Params, param
from harness.core.errors import MethodFailure, ParameterError, WeightsUnavailable, XRBenchError
from harness.core.fingerprints import file_sha256, state_sha256

__all__ = [
    "LEARNING",
    "FitContext",
    "ImageBatches",
    "Method",
    "MethodCard",
    "MethodFailure",
    "ParameterError",
    "Params",
    "Prediction",
    "SaliencyTarget",
    "WeightsInfo",
    "WeightsUnavailable",
    "XRBenchError",
    "file_sha256",
    "param",
    "state_sha256",
]
"""The contract, with the errors a method raises and the hashes its `WeightsInfo` carries."""

T = TypeVar("T")


LEARNING = ("one-class", "few-shot", "supervised", "zero-shot", "none")


@dataclass(frozen=True)
class MethodCard:
    """What the leaderboard shows about a method, and what the harness needs to know to run it.

    `params`: the method's parameters, a frozen dataclass of `harness.api.params.Params` whose
    fields give each default, range or choices, smoke-test value and meaning.
    `learning`: what it learns from (`one-class`: normal training images only; `few-shot`: a
    handful of normal reference images, as the few-shot track's board variants give; `supervised`:
    labelled training images; `zero-shot`: nothing from the board; `none`: a fixed rule).
    `produces_maps`: `predict` returns a map per image, which the harness keeps.
    `needs_grad`: `predict` needs autograd (saliency methods): the harness runs it under
    `torch.enable_grad()` instead of `torch.inference_mode()`.
    `exceptions`: conformance checks (`harness.conformance.checks.CHECKS`) that cannot run on a
    tiny board for this method, each with the reason (and where it is checked instead).
    """

    name: str
    family: str
    description: str
    reference: str
    license: str
    tasks: tuple[str, ...] = ("anomaly",)
    params: type[Params] = Params
    learning: str = "one-class"
    produces_maps: bool = False
    needs_grad: bool = False
    exceptions: dict[str, str] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return self.params.defaults()

    @property
    def smoke_params(self) -> dict[str, Any]:
        """Parameters that make it fit and predict in seconds on a tiny board (the test suite
        and `harness.conformance.checks.check_method` use them)."""
        return self.params.smoke()

    def summary(self) -> dict[str, Any]:
        """What a run stores about the method, for the site and for submissions."""
        keys = ("name", "family", "description", "reference", "license", "learning", "produces_maps")
        return {**{k: getattr(self, k) for k in keys}, "tasks": list(self.tasks)}


@dataclass
class Prediction:
    """`scores`: (B,) anomaly scores, higher is more anomalous, or (B, K) logits for multi-label.
    `maps`: (B, h, w) anomaly maps, or (B, K, h, w) one map per finding on multi-label boards;
    any size (the harness stores them at most 64x64); None unless the card `produces_maps`.
    `variance`: optional, the scores' shape: each score's variance over stochastic passes
    (MC-dropout, test-time augmentation; on the scale the method documents, such as the
    probabilities), stored and evaluated as the method's uncertainty."""

    scores: torch.Tensor
    maps: torch.Tensor | None = None
    variance: torch.Tensor | None = None


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

    def rebatched(self, batch_size: int) -> ImageBatches:
        """The same images in batches of another size (a method's own training batch size)."""
        return ImageBatches(self._images, self._labels, batch_size, self.device)

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
    precision: str = "fp32"
    """The run's precision (fp32, bf16 or fp16): `harness.components.training` trains under it on a GPU."""
    code: str = ""
    """SHA-256 of the method's code identity (its files and the harness modules they import):
    part of every checkpoint key, so that an edit to the code a method trains with trains again."""


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a run used: `none` for seeded random init, else a name and file hash."""

    id: str = "none"
    sha256: str | None = None
    card: str | None = None  # its card in datasets/backbones.toml (None: decided from `id`)


@dataclass
class SaliencyTarget:
    """What `--explain gradcam|gradcam++` explains (see `harness.run.saliency`): `model` maps
    images (B, 1, H, W) in [0, 1] to scores (B, `channels`) that equal what `predict` returns
    (the anomaly score, or each finding's logit); the map is made of `layer`'s activations."""

    model: torch.nn.Module
    layer: torch.nn.Module
    channels: int


class Method(ABC):
    """Base class. Subclasses set `card` and implement `fit` and `predict`.

    Parameters arrive as keyword arguments, are merged with the defaults and checked (see
    `harness.api.params`); read them from `self.params` (`self.params.k` or
    `self.params["k"]`). The harness calls `predict` with the modules of
    `torch_modules()` in eval mode, under `torch.inference_mode()` (or `enable_grad()` when the
    card `needs_grad`) and the run's autocast precision.
    """

    card: ClassVar[MethodCard]

    def __init__(self, **params: Any):
        self.params: Params = self.card.params.parse(params, self.card.name)

    @classmethod
    def check_params(cls, params: Any) -> None:
        """Refuse parameters that cannot work together or on this machine (raise
        `ParameterError` naming the parameter and what it allows), before any data is loaded.
        Types, ranges and choices are checked already; override for anything else."""
        return None

    @classmethod
    def libraries(cls) -> dict[str, str]:
        """Versions of third-party libraries whose code computes the results (a bridged model
        library): part of the method's code identity, as its own source files are."""
        return {}

    @abstractmethod
    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        """Learn from the board's training split (and, for model selection, its validation split)."""

    @abstractmethod
    def predict(self, batch: torch.Tensor) -> Prediction:
        """Scores (and maps) for a batch (B, 1, H, W) of float32 images in [0, 1]."""

    def weights(self) -> WeightsInfo:
        return WeightsInfo()

    def torch_modules(self) -> list[torch.nn.Module]:
        """The fitted torch modules used by `predict`: put in eval mode before predicting, and
        used for parameter counts, FLOPs, channels_last and torch.compile in latency measurements."""
        return []

    def diagnostics(self) -> dict[str, Any]:
        """What the fitted method reports about itself (JSON-serialisable), stored with the run:
        for example the loss per epoch, or how well a reconstruction model keeps normal images."""
        return {}

    def memory_bank_bytes(self) -> int:
        """Bytes held by a fitted memory bank or index (0 if none)."""
        return 0

    def saliency_target(self) -> SaliencyTarget | None:
        """What `--explain gradcam|gradcam++` explains: a differentiable version of the score
        (see `SaliencyTarget`); None when the method cannot be explained."""
        return None

    def explainable(self) -> bool:
        """Before fitting: will `saliency_target()` give a target? (A run asked to explain a
        method that cannot be is refused before it starts.)"""
        return type(self).saliency_target is not Method.saliency_target
