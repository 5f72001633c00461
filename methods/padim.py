"""PaDiM: a Gaussian per patch position over the normal training images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.api.protocol import FitContext, ImageBatches, MethodCard, Prediction, param
from harness.api.registry import register
from harness.components.embedding import BackboneMethod, PatchParams, image_maps
from harness.components.features import ExtractorParams, build_extractor, patch_features


@dataclass(frozen=True)
class PaDiMParams(ExtractorParams):
    layers: str = ExtractorParams.redefault("layers", "1,2,3")
    channels: int = param(100, low=1, weights=False, help="channels kept, a seeded random subset of the stages' ones")
    epsilon: float = param(0.01, low=1e-12, weights=False, help="added to each covariance's diagonal before inverting")
    smoothing_sigma: float = PatchParams.redefault("smoothing_sigma", 4.0)


@register
class PaDiM(BackboneMethod):
    card = MethodCard(
        name="padim",
        family="patch density",
        description="Mahalanobis distance of each patch to a Gaussian fitted at its position over normal images "
        "(random subset of the concatenated layer-1 to layer-3 channels)",
        reference="Defard et al., PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and "
        "Localization, ICPR 2021 Workshops",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=PaDiMParams,
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.extractor = build_extractor(self.params, train, ctx)
        count, total, outer = 0, None, None
        for images in ctx.progress(train, "accumulating patch statistics"):
            x = self._patches(images, ctx.seed).double()  # (B, P, d)
            if total is None:
                total, outer = x.sum(0), torch.einsum("bpi,bpj->pij", x, x)
            else:
                total += x.sum(0)
                outer += torch.einsum("bpi,bpj->pij", x, x)
            count += len(x)
        mean = total / count
        cov = (outer - count * torch.einsum("pi,pj->pij", mean, mean)) / max(count - 1, 1)
        cov += self.params["epsilon"] * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        self.mean, self.precision = mean.float(), torch.linalg.inv(cov).float()

    def _patches(self, images: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """(B, positions, channels) features at the finest selected stage, on a fixed channel
        subset, on the run's device (the Gaussians live there too)."""
        features = patch_features(self.extractor(images), neighbourhood=1)
        if seed is not None and not hasattr(self, "channel_index"):
            gen = torch.Generator().manual_seed(seed)
            n = min(self.params["channels"], features.shape[1])
            self.channel_index = torch.randperm(features.shape[1], generator=gen)[:n].sort().values
            self.grid = features.shape[-2:]
        features = features[:, self.channel_index.to(features.device)]
        return features.flatten(2).transpose(1, 2)

    def predict(self, batch: torch.Tensor) -> Prediction:
        diff = self._patches(batch).float() - self.mean
        with torch.autocast(diff.device.type, enabled=False):  # Mahalanobis distances in float32
            squared = torch.einsum("bpi,pij,bpj->bp", diff, self.precision, diff).clamp_min(0)
        grid = squared.sqrt().view(len(batch), 1, *self.grid)
        maps = image_maps(grid, batch.shape[-2:], self.params["smoothing_sigma"])
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)

    def memory_bank_bytes(self) -> int:
        return (self.mean.numel() + self.precision.numel()) * 4
