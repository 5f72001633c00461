"""Self-supervised pretraining inside the harness, on a board's normal training images.

`pretrained_weights()` trains a timm backbone with one of the `ALGORITHMS` (or finds the
checkpoint from an identical earlier training) and returns the checkpoint path, which the
feature extractor then loads like any weights file. The cache key holds everything that
changes the weights: algorithm, architecture, initial weights, hyperparameters, seed, and the
board's data fingerprint (name, split hash, dataset hash, resolution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from harness.api.protocol import FitContext, ImageBatches
from harness.components.backbones import create_timm_model, is_vit
from harness.components.checkpoints import cached_checkpoint
from harness.components.pretrain import contrastive, cutpaste, mae
from harness.components.pretrain.common import PretrainConfig, Trainer
from harness.core.code import closure, files_sha256

PRETRAIN_VERSION = 1


ALGORITHM_TRAINERS: dict[str, Callable[[nn.Module, PretrainConfig], Trainer]] = {
    "simclr": contrastive.simclr,
    "moco": contrastive.moco,
    "mae": mae.mae,
    "cutpaste": cutpaste.cutpaste,
}
DEFAULT_EPOCHS = {"simclr": 15, "moco": 20, "mae": 40, "cutpaste": 10}
ALGORITHMS = tuple(DEFAULT_EPOCHS)
DEFAULT_RESOLUTION = {"simclr": 64, "moco": 64, "mae": 0, "cutpaste": 64}


def default_config(algorithm: str, arch: str, init_weights: str = "none", epochs: int = 0) -> PretrainConfig:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown pretraining {algorithm!r}; choose one of none, {', '.join(ALGORITHMS)}")
    config = PretrainConfig(
        algorithm,
        arch,
        init_weights,
        epochs=epochs or DEFAULT_EPOCHS[algorithm],
        resolution=0 if is_vit(arch) else DEFAULT_RESOLUTION[algorithm],
    )
    return replace(config, lr=1.5e-4 * config.batch_size / 64 * 4) if algorithm == "mae" else config


def create_trainable(arch: str, init_weights: str, seed: int, resolution: int) -> nn.Module:
    """The full timm model (classifier head kept, so its state dict loads like timm's own)."""
    return create_timm_model(arch, init_weights, seed, resolution)[0]


def cache_key(config: PretrainConfig, seed: int, data_fingerprint: str, resolution: int, device: str) -> dict:
    """Everything that changes the trained weights; the device type too, since CPU and CUDA
    kernels do not produce bit-identical training runs."""
    return {
        "version": PRETRAIN_VERSION,
        **asdict(config),
        "seed": seed,
        "data": data_fingerprint,
        "resolution": resolution,
        "device": device,
    }


def pretrained_weights(config: PretrainConfig, train: ImageBatches, ctx: FitContext) -> Path:
    """Path of the verified checkpoint for `config` on this board, training it when needed."""

    def fit() -> tuple[dict, dict]:
        model, history = train_model(config, train, ctx)
        return model.state_dict(), {"loss_per_epoch": history}

    key = cache_key(config, ctx.seed, ctx.data_fingerprint, ctx.resolution, ctx.device.type)
    key["code"] = files_sha256(closure([__name__]))  # the pretraining code and what it imports: an edit trains again
    return cached_checkpoint("pretrain", f"{config.algorithm}-{config.arch}", key, fit, ctx.log)


def train_model(config: PretrainConfig, train: ImageBatches, ctx: FitContext) -> tuple[nn.Module, list[float]]:
    """Train on the normal training images; returns the model and the mean loss per epoch."""
    gen = torch.Generator().manual_seed(ctx.seed)
    model = create_trainable(config.arch, config.init_weights, ctx.seed, ctx.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed + 1)
        trainer = ALGORITHM_TRAINERS[config.algorithm](model, config)
    modules = nn.ModuleList(trainer.modules).to(ctx.device).train()
    params = [p for p in modules.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    images = torch.cat([batch.cpu() for batch in train])
    if config.resolution and config.resolution != images.shape[-1]:
        size = (config.resolution, config.resolution)
        images = nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
    history = []
    for _ in ctx.progress(range(config.epochs), f"{config.algorithm} pretraining ({config.epochs} epochs)"):
        order = torch.randperm(len(images), generator=gen)
        total, steps = 0.0, 0
        for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
            batch = images[order[start : start + config.batch_size]]
            loss = trainer.loss(batch, gen)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            trainer.after_step()
            total, steps = total + loss.item(), steps + 1
        history.append(total / max(steps, 1))
        ctx.log.info("%s epoch %d: loss %.4f", config.algorithm, len(history), history[-1])
    return model.eval().cpu(), history
