"""PatchCore: nearest-neighbour distance of local patch features to a coreset of normal patches."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from harness.backbones import FeatureExtractor
from harness.features import patch_features
from harness.neighbors import NearestNeighbors, greedy_coreset
from harness.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction, WeightsInfo
from harness.registry import register


@register
class PatchCore(Method):
    card = MethodCard(
        name="patchcore",
        family="memory bank",
        description="Locally pooled patch features scored by distance to a greedy coreset of normal patches",
        reference="Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022",
        license="Apache-2.0",
        tasks=("anomaly",),
        defaults={
            "backbone": "resnet18",
            "weights": "none",
            "layers": "2,3",
            "neighbourhood": 3,
            "coreset_ratio": 0.05,
            "projection_dim": 64,
            "smoothing_sigma": 4.0,
        },
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.extractor = FeatureExtractor(p["backbone"], p["weights"], ctx.seed, p["layers"], ctx.device)
        patches = torch.cat([self._patches(x) for x in ctx.progress(train, "extracting patch features")])
        flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
        n_keep = max(1, math.ceil(p["coreset_ratio"] * len(flat)))
        ctx.log.info("coreset: keeping %d of %d patches", n_keep, len(flat))
        keep = greedy_coreset(flat, n_keep, projection_dim=p["projection_dim"], seed=ctx.seed)
        self.bank = NearestNeighbors(flat[keep].numpy())

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        return patch_features(self.extractor(images), self.params["neighbourhood"]).cpu()

    def predict(self, batch: torch.Tensor) -> Prediction:
        patches = self._patches(batch)
        b, c, h, w = patches.shape
        flat = patches.permute(0, 2, 3, 1).reshape(-1, c).numpy()
        distances = torch.from_numpy(self.bank.distances(flat, k=1)[:, 0].astype(np.float32)).view(b, 1, h, w)
        maps = F.interpolate(distances, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        sigma = self.params["smoothing_sigma"]
        if sigma > 0:
            maps = gaussian_blur(maps, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)
        maps = maps[:, 0]
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)

    def weights(self) -> WeightsInfo:
        return self.extractor.weights

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.extractor.model]

    def memory_bank_bytes(self) -> int:
        return self.bank.nbytes
