"""Convolutional autoencoder trained on normal images; the residual is the anomaly map (the
AE baseline of the MedIAnomaly benchmark, with its L2, L1 and SSIM variants)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api.protocol import MethodCard, param
from harness.api.registry import register, variant
from harness.components.reconstruction import (
    WIDTHS,
    ReconstructionMethod,
    ReconstructionParams,
    bottleneck_side,
    down_path,
    up_path,
)


class ConvAE(nn.Module):
    """Four stride-2 convolutions down to (size/16)^2 x 256, a dense bottleneck of `latent`
    units, and the mirror image up."""

    def __init__(self, size: int, latent: int):
        super().__init__()
        self.side = bottleneck_side(size)
        flat = WIDTHS[-1] * self.side**2
        self.encoder = nn.Sequential(*down_path(WIDTHS))
        self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent), nn.Linear(latent, flat))
        self.decoder = up_path(WIDTHS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(self.encoder(x)).view(len(x), WIDTHS[-1], self.side, self.side)
        return self.decoder(z)


@dataclass(frozen=True)
class AEParams(ReconstructionParams):
    latent: int = param(128, low=1, help="units of the dense bottleneck")


@register
class AE(ReconstructionMethod):
    card = MethodCard(
        name="ae",
        family="reconstruction",
        description="convolutional autoencoder with a dense bottleneck trained on normal images; map = residual "
        "(squared error by default), score = its mean; trained and scored at 64 px, maps upsampled",
        reference="Cai et al., MedIAnomaly: A comparative study of anomaly detection in medical images, "
        "Medical Image Analysis 2025 (AE baseline)",
        license="Apache-2.0",
        produces_maps=True,
        params=AEParams,
    )
    halvings = len(WIDTHS)

    def network(self) -> nn.Module:
        return ConvAE(self.params["size"], self.params["latent"])


variant(AE, "ae-l1", "convolutional autoencoder trained and scored with the absolute error", residual="l1")
variant(AE, "ae-ssim", "convolutional autoencoder trained and scored with SSIM (map = 1 - local SSIM)", residual="ssim")
