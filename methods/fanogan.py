"""f-AnoGAN: a Wasserstein GAN (gradient penalty) learns to generate normal images; an
encoder is then trained to map each image to the latent code whose generated image matches it,
in pixels and in the critic's features (izi_f training). An anomaly cannot be generated: its
reconstruction G(E(x)) differs from it. Score = pixel residual + kappa x critic-feature
residual, map = pixel residual.

Training runs in one loop: the first `gan_share` of the steps train the GAN (the critic every
batch, the generator every `critic_steps` batches), the rest train the encoder with the GAN
frozen. Training is in full precision on every device: the gradient penalty's double backward
is unstable in half precision."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from harness.api.protocol import FitContext, MethodCard, Prediction, param
from harness.api.registry import register
from harness.components.reconstruction import (
    WIDTHS,
    ReconstructionMethod,
    ReconstructionParams,
    bottleneck_side,
    down_path,
    resize,
)
from harness.components.training import Objective
from methods.reversed_ae import Decoder as Generator  # latent -> image: the same network


class Critic(nn.Module):
    """Stride-2 convolutions without batch normalisation (the gradient penalty is per image)."""

    def __init__(self, size: int):
        super().__init__()
        channels = (1, *WIDTHS)
        self.features = nn.Sequential(
            *(layer for a, b in itertools.pairwise(channels)
              for layer in (nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)))
        )  # fmt: skip
        self.head = nn.Linear(WIDTHS[-1] * bottleneck_side(size) ** 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic's value and its last features, per image."""
        features = self.features(x).flatten(1)
        return self.head(features)[:, 0], features


class Encoder(nn.Module):
    def __init__(self, size: int, latent: int):
        super().__init__()
        self.body = nn.Sequential(*down_path(WIDTHS), nn.Flatten())
        self.head = nn.Linear(WIDTHS[-1] * bottleneck_side(size) ** 2, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.body(x)))


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (|grad critic| - 1)^2 at random points between real and generated images."""
    alpha = torch.rand(len(real), 1, 1, 1, generator=gen).to(real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed)[0].sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def izif_residuals(nets: nn.ModuleDict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the reconstruction G(E(x)), its pixel residual map and its critic-feature residual."""
    x_hat = nets["generator"](nets["encoder"](x))
    features, features_hat = nets["critic"](x)[1], nets["critic"](x_hat)[1]
    return x_hat, (x - x_hat).pow(2)[:, 0], (features - features_hat).pow(2).mean(dim=1)


class FAnoGANObjective(Objective):
    def __init__(self, size: int, latent: int, lr: float, critic_steps: int, gan_share: float, kappa: float):
        self.modules = nn.ModuleDict(
            {"generator": Generator(size, latent), "critic": Critic(size), "encoder": Encoder(size, latent)}
        )
        self.latent, self.critic_steps, self.gan_share, self.kappa = latent, critic_steps, gan_share, kappa
        adam = lambda name: torch.optim.Adam(self.modules[name].parameters(), lr=lr, betas=(0.5, 0.9))  # noqa: E731
        self.optimisers = {name: adam(name) for name in self.modules}
        self.batches = 0

    def step(self, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, progress: float) -> float:
        self.batches += 1
        if progress < self.gan_share:
            return self.gan_step(images, gen)
        return self.encoder_step(images)

    def minimise(self, name: str, loss: torch.Tensor) -> None:
        optimiser = self.optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def gan_step(self, real: torch.Tensor, gen: torch.Generator) -> float:
        g, d = self.modules["generator"], self.modules["critic"]
        z = torch.randn(len(real), self.latent, generator=gen).to(real.device)
        fake = g(z).detach()
        loss = d(fake)[0].mean() - d(real)[0].mean() + 10.0 * gradient_penalty(d, real, fake, gen)
        self.minimise("critic", loss)
        if self.batches % self.critic_steps == 0:
            self.minimise("generator", -d(g(z))[0].mean())
        return float(loss.item())

    def encoder_step(self, x: torch.Tensor) -> float:
        self.modules["generator"].eval().requires_grad_(False)
        self.modules["critic"].eval().requires_grad_(False)
        _, pixels, features = izif_residuals(self.modules, x)
        loss = pixels.flatten(1).mean(dim=1).mean() + self.kappa * features.mean()
        self.minimise("encoder", loss)
        return float(loss.item())


@dataclass(frozen=True)
class FAnoGANParams(ReconstructionParams):
    epochs: int = ReconstructionParams.redefault("epochs", 16)
    lr: float = ReconstructionParams.redefault("lr", 1e-4)
    residual: str = ReconstructionParams.redefault("residual", "l2")
    latent: int = param(128, low=1, help="units of the generator's latent code")
    critic_steps: int = param(5, low=1, high=100, help="critic updates per generator update")
    gan_share: float = param(0.75, low=0.01, high=0.99, help="share of the training steps spent on the GAN")
    kappa: float = param(1.0, low=0.0, high=1e6, help="weight of the critic-feature residual in loss and score")


@register
class FAnoGAN(ReconstructionMethod):
    card = MethodCard(
        name="f-anogan",
        family="generative (GAN)",
        description="WGAN-GP trained on normal images, then an encoder into its latent space (izi_f); score = pixel "
        "+ kappa x critic-feature residual of G(E(x)), map = pixel residual; trained and scored at 64 px",
        reference="Schlegl et al., f-AnoGAN: Fast unsupervised anomaly detection with generative adversarial "
        "networks, Medical Image Analysis 54 (2019)",
        license="Apache-2.0",
        produces_maps=True,
        params=FAnoGANParams,
    )
    halvings = len(WIDTHS)

    def objective(self, ctx: FitContext) -> Objective:
        p = self.params
        return FAnoGANObjective(p["size"], p["latent"], p["lr"], p["critic_steps"], p["gan_share"], p["kappa"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.model["generator"](self.model["encoder"](x))

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> Prediction:
        x = resize(batch, self.params["size"])
        _, pixels, features = izif_residuals(self.model, x)
        scores = pixels.flatten(1).mean(dim=1) + self.params["kappa"] * features
        return Prediction(scores=scores.float().cpu(), maps=pixels.float().cpu())
