"""U-Net autoencoder: the convolutional autoencoder with skip connections at every scale.

The baseline of the U-Net vs reversed-autoencoder study: skips let it copy fine detail,
anomalies included, so its residuals are small everywhere; it shows what the reversed
autoencoder's pseudo-healthy reconstruction gains."""

from __future__ import annotations

import torch
from torch import nn

from harness.api.protocol import MethodCard
from harness.api.registry import register
from harness.components.reconstruction import WIDTHS, ReconstructionMethod, ReconstructionParams, down_path, up


class UNetAE(nn.Module):
    """Four stride-2 convolutions down; up again, each level concatenated with the encoder's
    features of the same size before its transposed convolution."""

    def __init__(self):
        super().__init__()
        self.downs = nn.ModuleList(down_path(WIDTHS))
        self.ups = nn.ModuleList(
            [up(WIDTHS[-1], WIDTHS[-2])] + [up(2 * WIDTHS[k], WIDTHS[k - 1]) for k in range(len(WIDTHS) - 2, 0, -1)]
        )
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * WIDTHS[0], 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.downs:
            x = layer(x)
            skips.append(x)
        x = self.ups[0](skips.pop())
        for layer in self.ups[1:]:
            x = layer(torch.cat([x, skips.pop()], dim=1))
        return self.out(torch.cat([x, skips.pop()], dim=1))


@register
class UNetAutoencoder(ReconstructionMethod):
    card = MethodCard(
        name="unet-ae",
        family="reconstruction",
        description="U-Net autoencoder (skip connections at every scale) trained on normal images; map = residual, "
        "score = its mean; trained and scored at 64 px, maps upsampled",
        reference="Ronneberger et al., U-Net, MICCAI 2015; the U-Net baseline of Bercea et al., Generalizing "
        "Unsupervised Anomaly Detection: Towards Unbiased Pathology Screening, MIDL 2023",
        license="Apache-2.0",
        produces_maps=True,
        params=ReconstructionParams,
    )

    halvings = len(WIDTHS)

    def network(self) -> nn.Module:
        return UNetAE()
