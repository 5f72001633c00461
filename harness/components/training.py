"""The one training loop of methods that learn weights in the harness (autoencoders, diffusion
models, supervised classifiers).

A method describes what it trains as an `Objective` (its modules and one optimisation step);
`train_cached` runs the seeded loop (epochs of seeded shuffles, the run's precision as
autocast on a GPU, an optional exponential moving average of the weights, optional selection of
the best epoch on validation, a progress bar and the loss per epoch in the log), and caches the
result as a verified checkpoint keyed by everything that changes it: the method, its training
parameters, the seed, the board's data fingerprint, the device type and the precision. The
checkpoint's SHA-256 is the run's weights hash.
"""

from __future__ import annotations

import contextlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from harness.api.params import Params
from harness.api.protocol import FitContext, ImageBatches
from harness.components.checkpoints import cached_checkpoint
from harness.components.seeding import seeded
from harness.core.errors import MethodFailure
from harness.core.fingerprints import file_sha256
from harness.core.precision import autocast_dtype

TRAINING_VERSION = 1


class Precision:
    """The run's precision during training: autocast on a GPU (fp16 with a gradient scaler);
    full precision on the CPU, where it is deterministic."""

    def __init__(self, device: torch.device, precision: str):
        self.device = device
        self.dtype = autocast_dtype(precision) if device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def minimise(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        optimiser.zero_grad(set_to_none=True)
        self.backward(loss)
        self.update(optimiser)

    def backward(self, loss: torch.Tensor) -> None:
        """Add the loss's gradients to those already there (gradient accumulation)."""
        self.scaler.scale(loss).backward()

    def update(self, optimiser: torch.optim.Optimizer) -> None:
        """One optimiser step on the gradients gathered so far, then clear them."""
        self.scaler.step(optimiser)
        self.scaler.update()
        optimiser.zero_grad(set_to_none=True)


class Objective(ABC):
    """What a method trains: `modules` (all of it is saved in the checkpoint) and one step.
    The loop sets `precision` before the first step."""

    modules: nn.Module
    precision: Precision

    @abstractmethod
    def step(self, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, progress: float) -> float:
        """One optimisation step on a batch; returns the loss. `progress` runs from 0 to 1 over
        training (for curricula); `gen` is the loop's seeded generator (noise, masks)."""

    def end_epoch(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Called after each epoch's last batch (to apply gradients still being accumulated)."""


class SingleLoss(Objective):
    """The common case: AdamW on all the modules' parameters against one loss (with a cosine
    learning-rate decay over `cosine_steps` optimiser steps when given). With `accumulate` = N,
    the gradients of N batches (each loss divided by N) make one optimiser step, as one batch
    N times larger would; an epoch's last, smaller group is applied at the epoch's end."""

    def __init__(
        self,
        modules: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor, torch.Generator, float], torch.Tensor],
        lr: float,
        weight_decay: float = 0.0,
        cosine_steps: int = 0,
        accumulate: int = 1,
    ):
        self.modules, self.loss, self.accumulate = modules, loss, accumulate
        params = [p for p in modules.parameters() if p.requires_grad]
        self.optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, cosine_steps) if cosine_steps else None
        )
        self.pending = 0  # batches whose gradients wait for the optimiser step

    def step(self, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, progress: float) -> float:
        with self.precision.autocast():
            loss = self.loss(images, labels, gen, progress)
        self.precision.backward(loss / self.accumulate)  # dividing by 1 changes no bit
        self.pending += 1
        if self.pending == self.accumulate:
            self.end_epoch()
        return float(loss.item())

    def end_epoch(self) -> None:
        if self.pending:
            self.precision.update(self.optimiser)
            self.pending = 0
            if self.schedule is not None:
                self.schedule.step()


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, kept instead of the last ones (0: off)."""
    min_batch: int = 2
    """Smaller last batches are skipped (batch normalisation cannot train on one image)."""


@dataclass
class Trained:
    """A trained objective's modules (loaded, eval mode), its checkpoint hash and record."""

    modules: nn.Module
    sha256: str
    record: dict[str, Any] = field(default_factory=dict)


def run_epochs(
    objective: Objective,
    batches: ImageBatches,
    config: TrainConfig,
    ctx: FitContext,
    description: str,
    validate: Callable[[nn.Module], float] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """The loop: returns the state to keep (the best validated epoch's, else the EMA's or the
    last) and the history (mean loss, and validation score, per epoch)."""
    objective.precision = Precision(ctx.device, ctx.precision)
    modules = objective.modules.to(ctx.device)
    ema = None
    if config.ema > 0:
        ema = AveragedModel(modules, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
    gen = torch.Generator().manual_seed(ctx.seed)
    total_steps = max(1, config.epochs * len(batches))
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor] | None] = (-float("inf"), None)
    done = 0
    with seeded(ctx.seed + 1):
        for epoch in ctx.progress(range(config.epochs), f"{description} ({config.epochs} epochs)"):
            modules.train()
            losses = []
            order = torch.randperm(batches.num_images, generator=gen)
            for batch, (images, labels) in enumerate(batches.with_labels(order), start=1):
                if len(images) < config.min_batch:
                    continue
                losses.append(objective.step(images, labels.to(ctx.device), gen, done / total_steps))
                if not math.isfinite(losses[-1]):
                    raise MethodFailure(
                        f"{description}: the training loss is {losses[-1]} at epoch {epoch + 1}, batch {batch}; "
                        "nothing was stored (try a lower lr)"
                    )
                done += 1
                if ema is not None:
                    ema.update_parameters(modules)
            objective.end_epoch()
            kept = ema.module if ema is not None else modules
            entry = {"epoch": epoch + 1, "loss": sum(losses) / max(len(losses), 1)}
            if validate is not None:
                kept.eval()
                with torch.no_grad():
                    entry["validation"] = float(validate(kept))
                if entry["validation"] > best[0]:
                    best = (entry["validation"], _copy_state(kept))
            history.append(entry)
            ctx.log.info("%s epoch %d: %s", description, epoch + 1, _entry_text(entry))
    kept = ema.module if ema is not None else modules
    return best[1] if best[1] is not None else _copy_state(kept), history


def train_cached(
    name: str,
    params: Params,
    objective: Objective,
    batches: ImageBatches,
    config: TrainConfig,
    ctx: FitContext,
    validate: Callable[[nn.Module], float] | None = None,
    derived: dict[str, Any] | None = None,
) -> Trained:
    """Train `objective` (or load the verified checkpoint of an identical earlier training).
    The checkpoint key holds every parameter that changes the weights (`Params.weight_key`),
    what the method `derived` from its parameters and the data (the initial weights' hash, the
    targets), and what the harness adds here (the method's code identity among it)."""
    full_key = {  # the method's own parts apart: a parameter named like a harness part cannot shadow it
        "version": TRAINING_VERSION,
        "method": name,
        "params": params.weight_key(),
        "derived": derived or {},
        "epochs": config.epochs,
        "ema": config.ema,
        "batch_size": batches.batch_size,
        "seed": ctx.seed,
        "data": ctx.data_fingerprint,
        "resolution": ctx.resolution,
        "device": ctx.device.type,
        "precision": ctx.precision if ctx.device.type == "cuda" else "fp32",
        "code": ctx.code,
    }

    def fit() -> tuple[dict, dict]:
        state, history = run_epochs(objective, batches, config, ctx, name, validate)
        return state, {"history": history}

    path = cached_checkpoint("train", name, full_key, fit, ctx.log)
    objective.modules.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    modules = objective.modules.to(ctx.device).eval()
    return Trained(modules, file_sha256(path), _record(path))


def _record(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _entry_text(entry: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch")
