"""kNN: distance of an image's global embedding to its nearest normal training images."""

from __future__ import annotations

import numpy as np
import torch

from harness.backbones import FeatureExtractor
from harness.features import global_embedding
from harness.neighbors import NearestNeighbors
from harness.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction, WeightsInfo
from harness.registry import register


@register
class KNN(Method):
    card = MethodCard(
        name="knn",
        family="embedding distance",
        description="Mean distance of the pooled backbone embedding to its k nearest normal training embeddings",
        reference="Bergman, Cohen & Hoshen, Deep Nearest Neighbor Anomaly Detection, arXiv:2002.10445 (2020)",
        license="Apache-2.0",
        tasks=("anomaly",),
        defaults={"backbone": "resnet18", "weights": "none", "layers": "2,3", "k": 5},
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.extractor = FeatureExtractor(p["backbone"], p["weights"], ctx.seed, p["layers"], ctx.device)
        bank = [self._embed(x) for x in ctx.progress(train, "embedding normal images")]
        self.index = NearestNeighbors(np.concatenate(bank))

    def _embed(self, images: torch.Tensor) -> np.ndarray:
        return global_embedding(self.extractor(images)).cpu().numpy()

    def predict(self, batch: torch.Tensor) -> Prediction:
        distances = self.index.distances(self._embed(batch), k=self.params["k"])
        return Prediction(scores=torch.from_numpy(distances.mean(axis=1)))

    def weights(self) -> WeightsInfo:
        return self.extractor.weights

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.extractor.model]

    def memory_bank_bytes(self) -> int:
        return self.index.nbytes
