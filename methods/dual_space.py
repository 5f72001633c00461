"""Dual-space fusion: a global (image-level) and a local (patch-level) anomaly score from the
same backbone, each standardised on the validation normals, then mixed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.api.protocol import FitContext, ImageBatches, MethodCard, Prediction, param
from harness.api.registry import register
from harness.components.embedding import BackboneMethod, PatchBank, PatchParams, patch_prediction
from harness.components.features import build_extractor, global_embedding, patch_features
from harness.components.scorers import KNNScorer, Standardiser


@dataclass(frozen=True)
class DualSpaceParams(PatchParams):
    k: int = param(5, low=1, weights=False, help="nearest normal embeddings of the global kNN score")
    global_weight: float = param(0.5, low=0.0, high=1.0, weights=False, help="weight of the global score in the mix")


@register
class DualSpace(BackboneMethod):
    card = MethodCard(
        name="dual-space",
        family="fusion",
        description="global_weight x z(kNN distance of the pooled embedding) + (1 - global_weight) x "
        "z(PatchCore patch score); z standardises each score by the mean and standard deviation of the "
        "validation normals' scores. global_weight = 0.5 weighs the two equally.",
        reference="Global kNN (Bergman et al. 2020) and PatchCore (Roth et al., CVPR 2022), fused after "
        "per-space standardisation",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=DualSpaceParams,
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.extractor = build_extractor(p, train, ctx)
        embeddings, patches = zip(*(self._features(x) for x in ctx.progress(train, "extracting features")), strict=True)
        self.global_scorer = KNNScorer(k=p["k"]).fit(np.concatenate(embeddings))
        patches = torch.cat([x.cpu() for x in patches])
        self.bank = PatchBank(p["coreset_ratio"], p["projection_dim"], ctx.seed).fit(patches, ctx)
        global_scores, local_scores = [], []
        for images, labels in ctx.progress(val.with_labels(), "standardising on validation normals"):
            normal = images[labels == 0]
            if len(normal):
                g, local = self._raw_scores(normal)
                global_scores.append(g)
                local_scores.append(local.scores.cpu().numpy())
        if not global_scores:
            raise ValueError("dual-space needs normal validation images to standardise its two scores")
        self.standardise_global = Standardiser().fit(np.concatenate(global_scores))
        self.standardise_local = Standardiser().fit(np.concatenate(local_scores))

    def _features(self, images: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        maps = self.extractor(images)
        return global_embedding(maps).cpu().numpy(), patch_features(maps, self.params["neighbourhood"])

    def _raw_scores(self, images: torch.Tensor) -> tuple[np.ndarray, Prediction]:
        embedding, patches = self._features(images)
        local = patch_prediction(self.bank, patches, images.shape[-2:], self.params["smoothing_sigma"])
        return self.global_scorer.score(embedding), local

    def predict(self, batch: torch.Tensor) -> Prediction:
        global_score, local = self._raw_scores(batch)
        w = self.params["global_weight"]
        fused = w * self.standardise_global(global_score) + (1 - w) * self.standardise_local(local.scores.cpu().numpy())
        return Prediction(scores=torch.from_numpy(fused.astype(np.float32)), maps=local.maps)

    def memory_bank_bytes(self) -> int:
        return self.global_scorer.nbytes + self.bank.nbytes
