"""Feature pieces shared by embedding-based methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.api.protocol import FitContext, ImageBatches
from harness.components.backbones import FeatureExtractor
from harness.components.pretrain.pretraining import ALGORITHMS, default_config, pretrained_weights


def patch_features(maps: list[torch.Tensor], neighbourhood: int = 3) -> torch.Tensor:
    """PatchCore-style local features: each map average-pooled over a small neighbourhood,
    resized to the first (finest) map's grid and concatenated: (B, C, h, w)."""
    size = maps[0].shape[-2:]
    pooled = []
    for m in maps:
        m = F.avg_pool2d(m, neighbourhood, stride=1, padding=neighbourhood // 2)
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        pooled.append(m)
    return torch.cat(pooled, dim=1)


def global_embedding(maps: list[torch.Tensor]) -> torch.Tensor:
    """Global average pooling of every map, concatenated: (B, sum C)."""
    return torch.cat([m.mean(dim=(-2, -1)) for m in maps], dim=1)


EXTRACTOR_DEFAULTS = {
    "backbone": "resnet18",
    "weights": "none",
    "layers": "auto",
    "pretrain": "none",
    "pretrain_epochs": 0,
}
"""Parameters of every method built on `build_extractor`: `pretrain` is none or a
self-supervised algorithm (simclr, moco, mae, cutpaste) run on the board's normal training
images first, starting from `weights`; `pretrain_epochs` 0 means the algorithm's default."""
EXTRACTOR_SMOKE = {"pretrain_epochs": 1}
"""Smoke-test parameters of those methods (`MethodCard.smoke_params`): one pretraining epoch."""
EXTRACTOR_RANGES = {"pretrain_epochs": (0, None)}
EXTRACTOR_CHOICES = {"pretrain": ("none", *ALGORITHMS)}


def build_extractor(params: dict, train: ImageBatches, ctx: FitContext) -> FeatureExtractor:
    """The frozen feature extractor a method's parameters describe, pretraining it if asked."""
    weights = params["weights"]
    if params.get("pretrain", "none") != "none":
        config = default_config(params["pretrain"], params["backbone"], weights, params.get("pretrain_epochs", 0))
        weights = str(pretrained_weights(config, train, ctx))
    extractor = FeatureExtractor(params["backbone"], weights, ctx.seed, params["layers"], ctx.device, ctx.resolution)
    ctx.log.info("backbone %s, layers %s, weights %s", params["backbone"], extractor.layers, extractor.weights.id)
    return extractor
