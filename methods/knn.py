"""kNN: distance of an image's global embedding to its nearest normal training images, on a
frozen backbone or one pretrained in-harness by a self-supervised algorithm."""

from __future__ import annotations

from dataclasses import dataclass

from harness.api.protocol import MethodCard, param
from harness.api.registry import register, variant
from harness.components.embedding import EmbeddingMethod
from harness.components.features import ExtractorParams
from harness.components.scorers import KNNScorer, Scorer


@dataclass(frozen=True)
class KNNParams(ExtractorParams):
    k: int = param(5, low=1, weights=False, help="nearest normal training embeddings averaged")


@register
class KNN(EmbeddingMethod):
    card = MethodCard(
        name="knn",
        family="embedding distance",
        description="Mean distance of the pooled backbone embedding to its k nearest normal training embeddings",
        reference="Bergman, Cohen & Hoshen, Deep Nearest Neighbor Anomaly Detection, arXiv:2002.10445 (2020)",
        license="Apache-2.0",
        tasks=("anomaly",),
        params=KNNParams,
    )

    def make_scorer(self) -> Scorer:
        return KNNScorer(k=self.params["k"])


variant(
    KNN,
    "simclr-knn",
    "kNN distance on a ResNet-18 pretrained in-harness with SimCLR on the board's normal images",
    "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020",
    pretrain="simclr",
)
variant(
    KNN,
    "moco-knn",
    "kNN distance on a ResNet-18 pretrained in-harness with MoCo v2 on the board's normal images",
    "Chen et al., Improved Baselines with Momentum Contrastive Learning, arXiv:2003.04297 (2020)",
    pretrain="moco",
)
variant(
    KNN,
    "mae-knn",
    "kNN distance on a ViT-Tiny encoder pretrained in-harness as a masked autoencoder on the board's normal images",
    "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022",
    backbone="vit_tiny_patch16_224",
    pretrain="mae",
)
