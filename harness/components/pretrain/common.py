"""What the pretraining algorithms share: their configuration, the trainer they return, and
small model pieces (pooled features, projection heads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class PretrainConfig:
    """Defaults are the small CPU configurations; raise `epochs` (and `batch_size`) on a GPU."""

    algorithm: str
    arch: str
    init_weights: str = "none"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    resolution: int = 0
    """Training resolution (0: the board's). CNNs trained at a lower one still extract well at
    the board's, at a quarter of the cost per halving."""
    options: dict = field(default_factory=dict)


@dataclass
class Trainer:
    """What one algorithm contributes: trainable modules and a loss over a batch of images.
    `after_step` runs after each optimiser step (MoCo's momentum update)."""

    modules: list[nn.Module]
    loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    after_step: Callable[[], None] = lambda: None


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Global embedding of a timm model's final features (mean over positions or tokens)."""
    features = model.forward_features(x)
    return features.mean(dim=1) if features.ndim == 3 else features.mean(dim=(-2, -1))


def feature_dim(model: nn.Module) -> int:
    return model.num_features


def projection_head(dim: int, out: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))
