"""Variational autoencoder trained on normal images (the VAE baseline of the MedIAnomaly
benchmark): the encoder gives a Gaussian posterior over `latent` units, training decodes a
sample of it, prediction decodes its mean; the residual is the anomaly map.

The loss is the mean residual plus `kl_weight` times the posterior's KL divergence from the
prior per pixel: with the squared error and `kl_weight = 1`, the negative ELBO of a Gaussian
decoder divided by the number of pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api.protocol import FitContext, MethodCard, param
from harness.api.registry import register
from harness.components.reconstruction import WIDTHS, ReconstructionMethod, ReconstructionParams, reconstruction_loss
from harness.components.training import Objective, SingleLoss
from methods.reversed_ae import Decoder, Encoder, kl


class VAENet(nn.Module):
    def __init__(self, size: int, latent: int):
        super().__init__()
        self.encoder, self.decoder = Encoder(size, latent), Decoder(size, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction from the posterior mean (no sampling)."""
        return self.decoder(self.encoder(x)[0])


def vae_loss(model: VAENet, x: torch.Tensor, gen: torch.Generator, residual: str, kl_weight: float) -> torch.Tensor:
    """Mean residual of the decoded sample + kl_weight x KL per pixel, averaged over the batch."""
    mu, logvar, _ = model.encoder(x)
    noise = torch.randn(mu.shape, generator=gen).to(mu.device)
    z = mu + noise * (0.5 * logvar).exp()
    return reconstruction_loss(x, model.decoder(z), residual) + kl_weight * kl(mu, logvar).mean() / x[0].numel()


@dataclass(frozen=True)
class VAEParams(ReconstructionParams):
    latent: int = param(16, low=1, help="units of the Gaussian latent")
    kl_weight: float = param(1.0, low=0.0, high=1e6, help="weight of the KL term (1: the ELBO per pixel)")


@register
class VAE(ReconstructionMethod):
    card = MethodCard(
        name="vae",
        family="reconstruction",
        description="variational autoencoder trained on normal images; the posterior mean decoded, map = residual "
        "(squared error by default), score = its mean; trained and scored at 64 px, maps upsampled",
        reference="Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014; the VAE baseline of Cai et al., "
        "MedIAnomaly, Medical Image Analysis 2025",
        license="Apache-2.0",
        produces_maps=True,
        params=VAEParams,
    )
    halvings = len(WIDTHS)

    def objective(self, ctx: FitContext) -> Objective:
        p = self.params
        model = VAENet(p["size"], p["latent"])
        loss = lambda x, _labels, gen, _progress: vae_loss(model, x, gen, p["residual"], p["kl_weight"])  # noqa: E731
        return SingleLoss(model, loss, p["lr"])
