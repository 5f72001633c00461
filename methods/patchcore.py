"""PatchCore: nearest-neighbour distance of local patch features to a coreset of normal patches."""

from __future__ import annotations

import torch

from harness.api.protocol import FitContext, ImageBatches, MethodCard, Prediction
from harness.api.registry import register
from harness.components.embedding import BackboneMethod, PatchBank, PatchParams, patch_prediction
from harness.components.features import build_extractor, patch_features


@register
class PatchCore(BackboneMethod):
    card = MethodCard(
        name="patchcore",
        family="memory bank",
        description="Locally pooled patch features scored by distance to a greedy coreset of normal patches",
        reference="Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=PatchParams,
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.extractor = build_extractor(p, train, ctx)
        patches = torch.cat([self._patches(x).cpu() for x in ctx.progress(train, "extracting patch features")])
        self.bank = PatchBank(p["coreset_ratio"], p["projection_dim"], ctx.seed).fit(patches, ctx)

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        return patch_features(self.extractor(images), self.params["neighbourhood"])

    def predict(self, batch: torch.Tensor) -> Prediction:
        return patch_prediction(self.bank, self._patches(batch), batch.shape[-2:], self.params["smoothing_sigma"])

    def memory_bank_bytes(self) -> int:
        return self.bank.nbytes
