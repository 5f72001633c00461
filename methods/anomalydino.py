"""AnomalyDINO-style few-shot detection: the patch tokens of a few normal reference images are
the memory; a test patch's anomaly is its cosine distance to the nearest remembered patch, the
image's score the mean of its most anomalous 1% of patches."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from harness.api.protocol import FitContext, ImageBatches, MethodCard, Prediction, param
from harness.api.registry import register
from harness.components.embedding import BackboneMethod, image_maps
from harness.components.features import ExtractorParams, build_extractor
from harness.components.fewshot import reference_images
from harness.components.neighbors import NearestNeighbors


@dataclass(frozen=True)
class AnomalyDINOParams(ExtractorParams):
    backbone: str = param("vit_small_patch14_dinov2", help="a DINOv2-family encoder: a timm dinov2 name or rad-dino")
    layers: str = param("-1", weights=False, help="ViT blocks whose patch tokens are compared (-1: the last)")
    shots: int = param(0, low=0, weights=False, help="normal reference images kept (0: every training image)")
    image_size: int = param(224, low=14, high=1022, smoke=56, help="input side of a timm ViT (rad-dino: 518)")
    top_share: float = param(
        0.01, low=1e-4, high=1.0, weights=False, help="share of the most anomalous patches averaged into the score"
    )
    smoothing_sigma: float = param(4.0, low=0.0, weights=False, help="Gaussian smoothing of the map, in pixels")


@register
class AnomalyDINO(BackboneMethod):
    card = MethodCard(
        name="anomalydino",
        family="memory bank",
        description="Patch tokens of a DINOv2 encoder; cosine distance of each test patch to the nearest patch of "
        "k normal reference images; score = mean of the top 1% of patch distances",
        reference="Damm et al., AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2, "
        "WACV 2025 (arXiv:2405.14529)",
        license="Apache-2.0",
        learning="few-shot",
        produces_maps=True,
        params=AnomalyDINOParams,
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        sized = replace(ctx, resolution=p["image_size"])  # an X-ray backbone keeps its card's input size
        self.extractor = build_extractor(p, train, sized)
        references = reference_images(train, p["shots"], ctx.seed)
        ctx.log.info("memory of %d normal reference images", len(references))
        tokens = torch.cat([self._tokens(x) for x in references.split(train.batch_size)])
        self.memory = NearestNeighbors(tokens.permute(0, 2, 3, 1).reshape(-1, tokens.shape[1]).numpy())

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) unit-length patch tokens (the deepest layer asked for)."""
        return F.normalize(self.extractor(images)[-1], dim=1).cpu()

    def predict(self, batch: torch.Tensor) -> Prediction:
        tokens = self._tokens(batch)
        b, c, h, w = tokens.shape
        euclidean = self.memory.distances(tokens.permute(0, 2, 3, 1).reshape(-1, c).numpy(), k=1)[:, 0]
        cosine = torch.from_numpy(euclidean**2 / 2).float().view(b, 1, h, w)  # 1 - cos for unit vectors
        top = max(1, math.ceil(self.params["top_share"] * h * w))
        scores = cosine.flatten(1).topk(top, dim=1).values.mean(dim=1)
        return Prediction(scores=scores, maps=image_maps(cosine, batch.shape[-2:], self.params["smoothing_sigma"]))

    def memory_bank_bytes(self) -> int:
        return self.memory.nbytes
