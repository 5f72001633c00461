"""Reverse distillation (RD4AD): the teacher's multi-scale maps are fused into one compact
embedding (the one-class bottleneck), and a decoder trained on normal images must rebuild the
teacher's maps from it, deepest first; where its maps point elsewhere than the teacher's
(1 - cosine similarity per position) is anomalous. The bottleneck drops what normal images do
not need, so the decoder cannot rebuild an anomaly's features."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api.protocol import FitContext, MethodCard, param
from harness.api.registry import register
from harness.components.feature_training import FeatureTrainingMethod, FeatureTrainingParams, feature_loss_objective
from harness.components.training import Objective


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def up_block(c_in: int, c_out: int, size: tuple[int, int]) -> nn.Sequential:
    """Upsample to `size`, then two 3x3 convolutions."""
    return nn.Sequential(nn.Upsample(size=size, mode="bilinear", align_corners=False),
                         conv_block(c_in, c_out), conv_block(c_out, c_out))  # fmt: skip


class ReverseDistillation(nn.Module):
    """One-class bottleneck + decoder for teacher maps of `shapes` (C, h, w), finest first."""

    def __init__(self, shapes: list[torch.Size], width: int):
        super().__init__()
        deepest = shapes[-1][1]
        # each map is brought to the deepest grid by stride-2 convolutions, all are fused, and one
        # more stride-2 block makes the compact embedding
        self.align = nn.ModuleList(
            nn.Sequential(*(conv_block(c, c, 2) for _ in range(halvings(h, deepest)))) for c, h, _ in shapes
        )
        fused = sum(c for c, _, _ in shapes)
        self.bottleneck = nn.Sequential(conv_block(fused, width, 2), conv_block(width, width))
        channels = [width, *(c for c, _, _ in reversed(shapes))]
        self.decoder = nn.ModuleList(
            up_block(a, b, (h, w))
            for (a, b), (_, h, w) in zip(itertools.pairwise(channels), reversed(shapes), strict=True)
        )

    def forward(self, teacher_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's maps, finest first like the teacher's."""
        fused = torch.cat([align(m) for align, m in zip(self.align, teacher_maps, strict=True)], dim=1)
        x, out = self.bottleneck(fused), []
        for block in self.decoder:
            x = block(x)
            out.append(x)
        return out[::-1]


def halvings(side: int, target: int) -> int:
    """How many stride-2 convolutions take a map of `side` down to `target` (rounding up)."""
    count = 0
    while side > target:
        side, count = (side + 1) // 2, count + 1
    return count


def cosine_distance(teacher: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) pair -> (B, h, w): 1 - cosine similarity along channels."""
    return 1 - F.cosine_similarity(teacher, decoded, dim=1)


@dataclass(frozen=True)
class RD4ADParams(FeatureTrainingParams):
    lr: float = FeatureTrainingParams.redefault("lr", 5e-3)
    width: int = param(256, low=8, high=4096, help="channels of the one-class bottleneck embedding")


@register
class RD4AD(FeatureTrainingMethod):
    card = MethodCard(
        name="rd4ad",
        family="knowledge distillation",
        description="reverse distillation: a decoder rebuilds the frozen teacher's layer-1 to layer-3 maps from a "
        "fused one-class bottleneck; map = sum over layers of 1 - cosine similarity, score = its maximum. With "
        "weights=none the teacher is random: a control, not the published method (give imagenet weights)",
        reference="Deng and Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, CVPR 2022",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=RD4ADParams,
    )

    def objective(self, shapes: list[torch.Size], ctx: FitContext) -> Objective:
        model = ReverseDistillation(shapes, self.params["width"])

        def loss(images: torch.Tensor) -> torch.Tensor:
            teacher = self.teacher(images)
            return sum(cosine_distance(t, d).mean() for t, d in zip(teacher, model(teacher), strict=True))

        return feature_loss_objective(model, loss, self.params["lr"])

    def position_scores(self, images: torch.Tensor, teacher_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        decoded = self.model(teacher_maps)
        return [cosine_distance(t, d.float()) for t, d in zip(teacher_maps, decoded, strict=True)]
