"""FastFlow: a 2D normalizing flow per feature layer maps the frozen backbone's normal patch
features to a standard Gaussian; positions the flow finds unlikely are anomalous.

The invertible blocks are FrEIA's `AllInOneBlock` (affine coupling, soft-clamped, with a fixed
channel permutation), whose subnetworks alternate 3x3 and 1x1 convolutions, as in the paper.
The map is one minus the mean over layers of each position's likelihood ratio
exp(-|z|^2 / 2C), upsampled.

FastFlow rather than CS-Flow: CS-Flow's cross-scale blocks are built for EfficientNet-B5
features at three input scales, several times the compute of a ResNet-18 pyramid on two CPU
cores; FastFlow runs on any backbone's pyramid and was, with CS-Flow, among the best flows on
the medical boards that report both."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api.protocol import FitContext, MethodCard, param
from harness.api.registry import register
from harness.components.feature_training import FeatureTrainingMethod, FeatureTrainingParams, feature_loss_objective
from harness.components.seeding import host_seeded
from harness.components.training import Objective


def subnet(kernel: int, hidden_ratio: float):
    """FrEIA calls this with the channel counts of one coupling's two halves."""

    def build(c_in: int, c_out: int) -> nn.Module:
        hidden = max(1, int(c_in * hidden_ratio))
        pad = kernel // 2
        return nn.Sequential(
            nn.Conv2d(c_in, hidden, kernel, padding=pad), nn.ReLU(), nn.Conv2d(hidden, c_out, kernel, padding=pad)
        )

    return build


def layer_flow(shape: torch.Size, steps: int, hidden_ratio: float, clamp: float, seed: int) -> nn.Module:
    """A LayerNorm and `steps` affine coupling blocks for maps of `shape` (C, h, w).

    FrEIA draws each block's channel permutation from numpy's global generator: it is seeded
    here and restored after, so that the flow is a function of `seed` alone."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    with host_seeded(seed):
        flow = Ff.SequenceINN(*shape)
        for i in range(steps):
            kernel = 3 if i % 2 == 0 else 1
            flow.append(Fm.AllInOneBlock, subnet_constructor=subnet(kernel, hidden_ratio), affine_clamping=clamp,
                        permute_soft=False)  # fmt: skip
    return nn.ModuleDict({"norm": nn.LayerNorm(list(shape)), "flow": flow})


def flow_forward(layer: nn.Module, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z, log_jac = layer["flow"](layer["norm"](features))
    return z, log_jac


def negative_log_likelihood(z: torch.Tensor, log_jac: torch.Tensor) -> torch.Tensor:
    """Per image, up to a constant: |z|^2 / 2 minus the log-determinant of the flow's Jacobian."""
    return 0.5 * z.pow(2).flatten(1).sum(dim=1) - log_jac


@dataclass(frozen=True)
class FastFlowParams(FeatureTrainingParams):
    lr: float = FeatureTrainingParams.redefault("lr", 1e-3)
    flow_steps: int = param(8, low=1, high=64, smoke=2, help="affine coupling blocks per layer")
    hidden_ratio: float = param(1.0, low=0.01, high=16.0, help="subnetwork width as a multiple of its input channels")
    clamp: float = param(2.0, low=0.1, high=10.0, help="soft clamp of the coupling's log-scales")


@register
class FastFlow(FeatureTrainingMethod):
    card = MethodCard(
        name="fastflow",
        family="normalizing flow",
        description="2D normalizing flow (FrEIA affine couplings, alternating 3x3/1x1 subnets) per backbone layer, "
        "trained by maximum likelihood on normal patch features; map = 1 - mean likelihood ratio over layers, "
        "score = its maximum",
        reference="Yu et al., FastFlow: Unsupervised Anomaly Detection and Localization via 2D Normalizing Flows, "
        "arXiv:2111.07677 (2021)",
        license="Apache-2.0",
        tasks=("anomaly",),
        produces_maps=True,
        params=FastFlowParams,
    )
    combine = "mean"

    def objective(self, shapes: list[torch.Size], ctx: FitContext) -> Objective:
        p = self.params
        flows = nn.ModuleList(
            layer_flow(shape, p["flow_steps"], p["hidden_ratio"], p["clamp"], ctx.seed + i)
            for i, shape in enumerate(shapes)
        )

        def loss(images: torch.Tensor) -> torch.Tensor:
            pairs = zip(flows, self.teacher(images), strict=True)
            return sum(negative_log_likelihood(*flow_forward(flow, f)).mean() for flow, f in pairs)

        return feature_loss_objective(flows, loss, p["lr"])

    def position_scores(self, images: torch.Tensor, teacher_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        scores = []
        for flow, features in zip(self.model, teacher_maps, strict=True):
            z, _ = flow_forward(flow, features)
            scores.append(1 - torch.exp(-0.5 * z.float().pow(2).mean(dim=1)))
        return scores
