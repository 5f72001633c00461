"""AE-U: an autoencoder that predicts, with each pixel's reconstruction, the log-variance of
its error (the MedIAnomaly benchmark's AE-U baseline). Trained on normal images with the
Gaussian negative log-likelihood, it learns where normal images are hard to rebuild (edges,
ribs, devices) and discounts them: the map is the squared error divided by the predicted
variance, the score its mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api.protocol import FitContext, MethodCard, ParameterError, Prediction, param
from harness.api.registry import register
from harness.components.reconstruction import WIDTHS, ReconstructionMethod, ReconstructionParams, resize
from harness.components.training import Objective, SingleLoss
from methods.ae import ConvAE

LOGVAR_RANGE = (-10.0, 10.0)
"""Predicted log-variances are clamped here, so that a pixel cannot claim zero or infinite error."""


class UncertaintyAE(ConvAE):
    """`ConvAE` whose last layer gives two channels: the reconstruction and its log-variance."""

    def __init__(self, size: int, latent: int):
        super().__init__(size, latent)
        self.decoder[-2] = nn.ConvTranspose2d(WIDTHS[0], 2, 4, 2, 1)
        del self.decoder[-1]  # the sigmoid now applies to the reconstruction channel only

    def mean_and_logvar(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(x)
        return torch.sigmoid(out[:, :1]), out[:, 1:].clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_and_logvar(x)[0]


def normalised_error(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per pixel: squared error divided by the predicted variance."""
    return (x - mean).pow(2) * torch.exp(-logvar)


def uncertainty_loss(model: UncertaintyAE, x: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood per pixel (up to constants and a factor 2)."""
    mean, logvar = model.mean_and_logvar(x)
    return (normalised_error(x, mean, logvar) + logvar).mean()


@dataclass(frozen=True)
class AEUParams(ReconstructionParams):
    latent: int = param(16, low=1, help="units of the dense bottleneck")


@register
class AEU(ReconstructionMethod):
    card = MethodCard(
        name="ae-u",
        family="reconstruction",
        description="autoencoder that also predicts each pixel's error variance, trained with the Gaussian "
        "likelihood on normal images; map = squared error / predicted variance, score = its mean; trained and "
        "scored at 64 px, maps upsampled",
        reference="Mao et al., Abnormality Detection in Chest X-ray Images Using Uncertainty Prediction "
        "Autoencoders, MICCAI 2020; the AE-U baseline of Cai et al., MedIAnomaly, Medical Image Analysis 2025",
        license="Apache-2.0",
        produces_maps=True,
        params=AEUParams,
    )
    halvings = len(WIDTHS)

    @classmethod
    def check_params(cls, params: AEUParams) -> None:
        super().check_params(params)
        if params["residual"] != "l2":
            raise ParameterError("method ae-u: residual must be l2 (its map is the squared error over the variance)")

    def objective(self, ctx: FitContext) -> Objective:
        model = UncertaintyAE(self.params["size"], self.params["latent"])
        return SingleLoss(model, lambda x, *_: uncertainty_loss(model, x), self.params["lr"])

    def predict(self, batch: torch.Tensor) -> Prediction:
        x = resize(batch, self.params["size"])
        maps = normalised_error(x, *self.model.mean_and_logvar(x))[:, 0].float()
        return Prediction(scores=self.score(maps).cpu(), maps=maps.cpu())
