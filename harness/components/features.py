"""Feature pieces shared by embedding-based methods."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api.params import Params, param
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


@dataclass(frozen=True)
class ExtractorParams(Params):
    """Parameters of every method built on `build_extractor`."""

    backbone: str = param("resnet18", help="timm model name, or clip:<open_clip model> for a CLIP image encoder")
    weights: str = param(
        "none",
        help="none (seeded random initialisation), imagenet (timm's or open_clip's weights from the local "
        "Hugging Face cache), or a weights file",
    )
    layers: str = param(
        "auto", weights=False, help="feature stages, comma-separated as timm numbers them (auto: the usual ones)"
    )
    pretrain: str = param(
        "none",
        choices=("none", *ALGORITHMS),
        help="self-supervised pretraining on the board's normal training images first, from `weights`",
    )
    pretrain_epochs: int = param(0, low=0, smoke=1, help="pretraining epochs (0: the algorithm's default)")


def build_extractor(params: ExtractorParams, train: ImageBatches, ctx: FitContext) -> FeatureExtractor:
    """The frozen feature extractor a method's parameters describe, pretraining it if asked."""
    weights = params["weights"]
    if params["pretrain"] != "none":
        config = default_config(params["pretrain"], params["backbone"], weights, params["pretrain_epochs"])
        weights = str(pretrained_weights(config, train, ctx))
    extractor = FeatureExtractor(params["backbone"], weights, ctx.seed, params["layers"], ctx.device, ctx.resolution)
    ctx.log.info("backbone %s, layers %s, weights %s", params["backbone"], extractor.layers, extractor.weights.id)
    return extractor
