"""Mahalanobis distance of the global embedding to a Gaussian of the normal training embeddings."""

from __future__ import annotations

from harness.api.protocol import MethodCard
from harness.api.registry import register, variant
from harness.components.embedding import EmbeddingMethod
from harness.components.features import ExtractorParams
from harness.components.scorers import GaussianScorer, Scorer


@register
class Mahalanobis(EmbeddingMethod):
    card = MethodCard(
        name="mahalanobis",
        family="embedding density",
        description="Mahalanobis distance of the pooled embedding to a Ledoit-Wolf Gaussian of normal embeddings",
        reference="Rippel, Mertens & Merhof, Modeling the Distribution of Normal Data in Pre-Trained Deep "
        "Features for Anomaly Detection, ICPR 2020",
        license="Apache-2.0",
        tasks=("anomaly",),
        params=ExtractorParams,
    )

    def make_scorer(self) -> Scorer:
        return GaussianScorer()


variant(
    Mahalanobis,
    "dinov2-mahalanobis",
    "Mahalanobis distance on DINOv2 ViT-S/14 embeddings (timm's DINOv2 weights from the local "
    "Hugging Face cache; weights=none for a random-init control)",
    "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024",
    smoke_params={"weights": "none"},
    backbone="vit_small_patch14_dinov2",
    weights="imagenet",
)
variant(
    Mahalanobis,
    "simclr-mahalanobis",
    "Mahalanobis distance on a ResNet-18 pretrained in-harness with SimCLR on the board's normal images",
    "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020",
    pretrain="simclr",
)
