"""Chance baseline: seeded random scores (expected AUROC 0.5), one per image or, on multi-label
boards, one per finding."""

from __future__ import annotations

import torch

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register


@register
class RandomScores(Method):
    card = MethodCard(
        name="random",
        family="baseline",
        description="Uniform random scores from a generator seeded by the run seed",
        reference="chance baseline",
        license="Apache-2.0",
        tasks=("anomaly", "multilabel"),
        learning="none",
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.shape = (len(ctx.targets),) if ctx.targets else ()

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=torch.rand(len(batch), *self.shape, generator=self.generator, dtype=torch.float64))
