"""STFPM: a student network of the teacher's architecture, from random initialisation, learns
to reproduce the frozen teacher's feature pyramid on normal images; where the two disagree is
anomalous.

Loss and map follow the paper: at each layer both maps are L2-normalised along channels and
half their squared distance is taken per position; the loss averages it over positions and sums
the layers; the map multiplies the upsampled layer maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api.protocol import FitContext, MethodCard
from harness.api.registry import register
from harness.components.backbones import create_backbone, to_backbone_input
from harness.components.feature_training import FeatureTrainingMethod, FeatureTrainingParams, feature_loss_objective
from harness.components.training import Objective


def normalised_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) pair -> (B, h, w): half the squared distance of the channel-normalised vectors."""
    return 0.5 * (F.normalize(teacher, dim=1) - F.normalize(student, dim=1)).pow(2).sum(dim=1)


@dataclass(frozen=True)
class STFPMParams(FeatureTrainingParams):
    lr: float = FeatureTrainingParams.redefault("lr", 1e-3)


@register
class STFPM(FeatureTrainingMethod):
    card = MethodCard(
        name="stfpm",
        family="knowledge distillation",
        description="student of the teacher's architecture trained to match its layer-1 to layer-3 maps on normal "
        "images; map = product over layers of the normalised feature distance, score = its maximum. With "
        "weights=none the teacher is random: a control, not the published method (give imagenet weights)",
        reference="Wang et al., Student-Teacher Feature Pyramid Matching for Anomaly Detection, BMVC 2021",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=STFPMParams,
    )
    combine = "product"

    def objective(self, shapes: list[torch.Size], ctx: FitContext) -> Objective:
        p, extractor = self.params, self.extractor
        student, _ = create_backbone(p["backbone"], "none", ctx.seed + 1, extractor.layers, ctx.resolution)
        student.train().requires_grad_(True)

        def loss(images: torch.Tensor) -> torch.Tensor:
            maps = student(to_backbone_input(images, extractor.mean, extractor.std))
            return sum(normalised_distance(t, s).mean() for t, s in zip(self.teacher(images), maps, strict=True))

        return feature_loss_objective(student, loss, p["lr"])

    def position_scores(self, images: torch.Tensor, teacher_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        student = self.model(
            to_backbone_input(images.to(self.extractor.device), self.extractor.mean, self.extractor.std)
        )
        return [normalised_distance(t, s.float()) for t, s in zip(teacher_maps, student, strict=True)]
