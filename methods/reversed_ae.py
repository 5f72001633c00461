"""Reversed autoencoder (RA): a Soft-IntroVAE without skip connections whose encoder is also
trained to embed the reconstruction like the input at every scale (the multi-scale reversed
embedding similarity), so that the decoder learns to produce pseudo-healthy images; the
residual between an image and its pseudo-healthy version is the anomaly map.

Training alternates an encoder step and a decoder step per batch (Soft-IntroVAE): the encoder
maximises the ELBO of real images and pushes the exponentiated ELBO of reconstructions and of
samples from the prior down, plus 0.005 x the embedding similarity loss (per encoder scale:
half the mean squared difference plus 1 - cosine similarity between the features of the input
and of its reconstruction); the decoder reconstructs real images and makes reconstructions and
samples look real to the encoder. Prediction decodes the posterior mean (no sampling). Left
out: the reference implementation weighs its residual by an LPIPS saliency computed with
ImageNet VGG weights, which a run without downloads cannot have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api.protocol import FitContext, MethodCard, param
from harness.api.registry import register
from harness.components.reconstruction import (
    WIDTHS,
    ReconstructionMethod,
    ReconstructionParams,
    bottleneck_side,
    down_path,
    up_path,
)
from harness.components.training import Objective


class Encoder(nn.Module):
    def __init__(self, size: int, latent: int):
        super().__init__()
        self.stages = nn.ModuleList(down_path(WIDTHS))
        self.head = nn.Linear(WIDTHS[-1] * bottleneck_side(size) ** 2, 2 * latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Posterior mean, log-variance and the features of every stage."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        mu, logvar = self.head(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar, features


class Decoder(nn.Module):
    def __init__(self, size: int, latent: int):
        super().__init__()
        self.side = bottleneck_side(size)
        self.head = nn.Linear(latent, WIDTHS[-1] * self.side**2)
        self.stages = up_path(WIDTHS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.stages(self.head(z).view(len(z), WIDTHS[-1], self.side, self.side))


class ReversedAE(nn.Module):
    def __init__(self, size: int, latent: int):
        super().__init__()
        self.latent = latent
        self.encoder, self.decoder = Encoder(size, latent), Decoder(size, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pseudo-healthy reconstruction: the decoded posterior mean."""
        return self.decoder(self.encoder(x)[0])


def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per image: KL(N(mu, exp(logvar)) || N(0, I))."""
    return -0.5 * (1 + logvar - logvar.exp() - mu**2).sum(dim=1)


def squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image: the summed squared error."""
    return ((x - y) ** 2).flatten(1).sum(dim=1)


def embedding_loss(real: list[torch.Tensor], healthy: list[torch.Tensor]) -> torch.Tensor:
    """The multi-scale reversed embedding similarity: per scale, half the mean squared
    difference plus the mean of 1 - cosine similarity of the flattened features."""
    total = torch.zeros(())
    for a, b in zip(real, healthy, strict=True):
        total = total + 0.5 * F.mse_loss(a, b) + (1 - F.cosine_similarity(a.flatten(1), b.flatten(1))).mean()
    return total


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """`module`'s parameters receive no gradient in the block (gradients still flow through it)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class IntrospectiveObjective(Objective):
    """One Soft-IntroVAE encoder step and one decoder step per batch, with the RA embedding loss."""

    def __init__(self, model: ReversedAE, size: int, params: dict[str, Any]):
        self.modules, self.p = model, params
        self.scale = 1.0 / size**2
        self.opt_e = torch.optim.Adam(model.encoder.parameters(), lr=params["lr"])
        self.opt_d = torch.optim.Adam(model.decoder.parameters(), lr=params["lr"])

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn(mu.shape, generator=gen).to(mu.device)
        return mu + noise * (0.5 * logvar).exp()

    def step(self, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, progress: float) -> float:
        model = self.modules
        prior = torch.randn(len(x), model.latent, generator=gen).to(x.device)
        with self.precision.autocast():
            loss_e = self.encoder_loss(x, prior, gen)
        self.precision.minimise(loss_e, self.opt_e)
        with self.precision.autocast():
            loss_d = self.decoder_loss(x, prior, gen)
        self.precision.minimise(loss_d, self.opt_d)
        return float(loss_e.item() + loss_d.item())

    def encoder_loss(self, x: torch.Tensor, prior: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        model, p = self.modules, self.p
        with frozen(model.decoder):
            with torch.no_grad():
                fake = model.decoder(prior)
            mu, logvar, features = model.encoder(x)
            rec = model.decoder(self.sample(mu, logvar, gen))
            healthy = model.encoder(rec.detach())[2]
            real = p["beta_rec"] * squared_error(x, rec).mean() + p["beta_kl"] * kl(mu, logvar).mean()
            expelbo = []
            for other in (rec.detach(), fake):
                o_mu, o_logvar, _ = model.encoder(other)
                again = model.decoder(self.sample(o_mu, o_logvar, gen))
                elbo = p["beta_rec"] * squared_error(other, again) + p["beta_neg"] * kl(o_mu, o_logvar)
                expelbo.append((-2 * self.scale * elbo).exp().mean())
        return self.scale * real + 0.25 * sum(expelbo) + p["embedding_weight"] * embedding_loss(features, healthy)

    def decoder_loss(self, x: torch.Tensor, prior: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        model, p = self.modules, self.p
        with frozen(model.encoder):
            with torch.no_grad():
                mu, logvar, _ = model.encoder(x)
                z = self.sample(mu, logvar, gen)
            rec, fake = model.decoder(z), model.decoder(prior)
            loss = p["beta_rec"] * squared_error(x, rec).mean()
            for other in (rec, fake):
                o_mu, o_logvar, _ = model.encoder(other)
                again = model.decoder(self.sample(o_mu, o_logvar, gen).detach())
                loss = loss + 0.5 * p["beta_kl"] * kl(o_mu, o_logvar).mean()
                loss = loss + p["gamma_r"] * 0.5 * p["beta_rec"] * squared_error(other.detach(), again).mean()
        return self.scale * loss


@dataclass(frozen=True)
class ReversedAEParams(ReconstructionParams):
    epochs: int = ReconstructionParams.redefault("epochs", 16)
    lr: float = ReconstructionParams.redefault("lr", 2e-4)
    latent: int = param(128, low=1, help="latent dimensions of the VAE")
    beta_rec: float = param(1.0, low=0.0, help="weight of the reconstruction loss")
    beta_kl: float = param(1.0, low=0.0, help="weight of the KL divergence of real images")
    beta_neg: float = param(256.0, low=0.0, help="weight of the KL divergence of reconstructions (introspection)")
    gamma_r: float = param(1e-8, low=0.0, help="weight of the reconstructions' reconstruction loss")
    embedding_weight: float = param(0.005, low=0.0, help="weight of the multi-scale reversed embedding similarity")


@register
class ReversedAutoencoder(ReconstructionMethod):
    card = MethodCard(
        name="reversed-ae",
        family="reconstruction",
        description="reversed autoencoder: a Soft-IntroVAE (no skip connections) trained with the multi-scale "
        "reversed embedding similarity to reconstruct pseudo-healthy images; map = residual, score = its mean; "
        "trained and scored at 64 px, maps upsampled",
        reference="Bercea et al., Generalizing Unsupervised Anomaly Detection: Towards Unbiased Pathology "
        "Screening, MIDL 2023; Daniel and Tamar, Soft-IntroVAE, CVPR 2021",
        license="Apache-2.0",
        produces_maps=True,
        params=ReversedAEParams,
    )
    halvings = len(WIDTHS)

    def objective(self, ctx: FitContext) -> Objective:
        size = self.params["size"]
        return IntrospectiveObjective(ReversedAE(size, self.params["latent"]), size, self.params)
