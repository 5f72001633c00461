"""CutPaste: a backbone trained in-harness to spot pasted patches, then Gaussian densities on
its features (the augmentation lives in harness.components.augment for other methods to reuse).

The image score is the Mahalanobis distance of the pooled embedding, as in the paper's
image-level model. The map is the paper's patch-level idea on the same features: a second
Gaussian fitted on the normal images' feature vectors at every position of the last stage,
each position of a new image scored against it, upsampled and smoothed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from harness.api.protocol import FitContext, ImageBatches, Prediction
from harness.api.registry import register
from harness.components.embedding import PatchParams, image_maps
from harness.components.features import ExtractorParams, build_extractor, global_embedding
from harness.components.scorers import GaussianScorer
from methods.mahalanobis import Mahalanobis


@dataclass(frozen=True)
class CutPasteParams(ExtractorParams):
    layers: str = ExtractorParams.redefault("layers", "4")
    pretrain: str = ExtractorParams.redefault("pretrain", "cutpaste")
    smoothing_sigma: float = PatchParams.redefault("smoothing_sigma", 4.0)


@register
class CutPaste(Mahalanobis):
    card = replace(
        Mahalanobis.card,
        name="cutpaste",
        description="ResNet-18 trained to tell normal images from CutPaste-augmented ones, scored by a Gaussian "
        "density on its final pooled embedding; maps from a Gaussian on its per-position features",
        reference="Li et al., CutPaste: Self-Supervised Learning for Anomaly Detection and Localization, CVPR 2021",
        produces_maps=True,
        params=CutPasteParams,
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.extractor = build_extractor(self.params, train, ctx)
        pooled, local = [], []
        for images in ctx.progress(train, "embedding normal images"):
            features = [m.float() for m in self.extractor(images)]
            pooled.append(global_embedding(features).cpu().numpy())
            local.append(_positions(features[-1]).cpu().numpy())
        self.scorer = GaussianScorer().fit(np.concatenate(pooled))
        self.patch_scorer = GaussianScorer().fit(np.concatenate(local))

    def predict(self, batch: torch.Tensor) -> Prediction:
        features = [m.float() for m in self.extractor(batch)]
        scores = self.scorer.score(global_embedding(features).cpu().numpy())
        last = features[-1]
        distances = self.patch_scorer.score(_positions(last).cpu().numpy()).astype(np.float32)
        grid = torch.from_numpy(distances).view(len(batch), 1, *last.shape[-2:])
        maps = image_maps(grid, batch.shape[-2:], self.params["smoothing_sigma"])
        return Prediction(scores=torch.from_numpy(scores.astype(np.float32)), maps=maps)

    def memory_bank_bytes(self) -> int:
        return self.scorer.nbytes + self.patch_scorer.nbytes


def _positions(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B*h*w, C): one feature vector per position, image by image, row-major."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
