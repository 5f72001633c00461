"""Floor baseline: mean pixel intensity. Most findings add opacity, so abnormal images are
slightly brighter on average; a good method must beat this by a wide margin."""

from __future__ import annotations

import torch

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register


@register
class Intensity(Method):
    card = MethodCard(
        name="intensity",
        family="baseline",
        description="Mean pixel intensity of the image (brighter = more anomalous)",
        reference="floor baseline",
        license="Apache-2.0",
        tasks=("anomaly",),
        learning="none",
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))
