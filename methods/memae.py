"""Memory-augmented autoencoder (MemAE, Gong et al., ICCV 2019), trained on normal images: the
encoder's code is replaced by a sparse mixture of `memory` learned prototypes before it is
decoded, so that an anomaly is rebuilt from normal patterns and leaves a residual; the residual
is the anomaly map (the MemAE baseline of the MedIAnomaly benchmark).

Addressing: weights w = softmax(z M^T) over the memory items; hard shrinkage keeps those above
`shrink` (w' = relu(w - shrink) w / (|w - shrink| + 1e-12)), renormalised to sum to one; the
code is w' M. The loss adds `entropy_weight` times the mean entropy of w', which keeps the
addressing sparse."""

from __future__ import annotations

from dataclasses import dataclass

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
    reconstruction_loss,
    up_path,
)
from harness.components.training import Objective, SingleLoss

EPSILON = 1e-12


def address(z: torch.Tensor, memory: torch.Tensor, shrink: float) -> torch.Tensor:
    """(B, latent) codes -> (B, items) sparse addressing weights, as the module docstring says."""
    w = F.softmax(z @ memory.T, dim=1)
    w = F.relu(w - shrink) * w / ((w - shrink).abs() + EPSILON)
    return w / w.sum(dim=1, keepdim=True).clamp_min(EPSILON)


class MemAENet(nn.Module):
    def __init__(self, size: int, latent: int, items: int, shrink: float):
        super().__init__()
        self.side, self.shrink = bottleneck_side(size), shrink
        flat = WIDTHS[-1] * self.side**2
        self.encoder = nn.Sequential(*down_path(WIDTHS), nn.Flatten(), nn.Linear(flat, latent))
        bound = 1.0 / latent**0.5
        self.memory = nn.Parameter(torch.empty(items, latent).uniform_(-bound, bound))
        self.head = nn.Linear(latent, flat)
        self.decoder = up_path(WIDTHS)

    def rebuild(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction and the addressing weights."""
        w = address(self.encoder(x), self.memory, self.shrink)
        code = self.head(w @ self.memory).view(len(x), WIDTHS[-1], self.side, self.side)
        return self.decoder(code), w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rebuild(x)[0]


def memae_loss(model: MemAENet, x: torch.Tensor, residual: str, entropy_weight: float) -> torch.Tensor:
    x_hat, w = model.rebuild(x)
    entropy = -(w * (w + EPSILON).log()).sum(dim=1).mean()
    return reconstruction_loss(x, x_hat, residual) + entropy_weight * entropy


@dataclass(frozen=True)
class MemAEParams(ReconstructionParams):
    latent: int = param(16, low=1, help="units of the code the memory items share")
    memory: int = param(100, low=2, help="memory items (prototypes of normal codes)")
    shrink: float = param(0.0025, low=0.0, high=0.999, help="hard-shrinkage threshold of the addressing weights")
    entropy_weight: float = param(0.0002, low=0.0, high=1e6, help="weight of the addressing entropy in the loss")


@register
class MemAE(ReconstructionMethod):
    card = MethodCard(
        name="memae",
        family="reconstruction",
        description="memory-augmented autoencoder: codes rebuilt from learned prototypes of normal codes; "
        "map = residual (squared error by default), score = its mean; trained and scored at 64 px, maps upsampled",
        reference="Gong et al., Memorizing Normality to Detect Anomaly: Memory-augmented Deep Autoencoder for "
        "Unsupervised Anomaly Detection, ICCV 2019; the MemAE baseline of Cai et al., MedIAnomaly, 2025",
        license="Apache-2.0",
        produces_maps=True,
        params=MemAEParams,
    )
    halvings = len(WIDTHS)

    def objective(self, ctx: FitContext) -> Objective:
        p = self.params
        model = MemAENet(p["size"], p["latent"], p["memory"], p["shrink"])
        loss = lambda x, *_: memae_loss(model, x, p["residual"], p["entropy_weight"])  # noqa: E731
        return SingleLoss(model, loss, p["lr"])
