"""Saliency maps for methods without maps of their own: Grad-CAM and Grad-CAM++ of the method's
differentiable score, through the `grad-cam` package (`pytorch_grad_cam`).

A method that can be explained returns a `harness.api.protocol.SaliencyTarget` from
`Method.saliency_target()`: a torch module mapping images (B, 1, H, W) in [0, 1] to scores
(B, K) (one column per map channel: the anomaly score, or each finding's logit) and the layer
whose activations the map is made of. `pytorch_grad_cam` scales each map to [0, 1] on its own, as the saliency
literature does: pixel metrics across images then reflect where each map points, not how
anomalous the image is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.api.protocol import Method, SaliencyTarget
from harness.core.errors import XRBenchError
from harness.run.explainers import EXPLAINERS


class _Column(nn.Module):
    """The target's scores, with the input made to require gradients (the backbone's own
    parameters are frozen, so activations would otherwise carry none)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.requires_grad_(True))


class Explainer:
    """Maps (B, K, H, W) of a method's saliency target for a batch of images."""

    def __init__(self, kind: str, target: SaliencyTarget):
        if kind not in EXPLAINERS:
            raise XRBenchError(f"--explain takes {', '.join(EXPLAINERS)}, not {kind!r}")
        cam = EXPLAINERS.get(kind).load()
        self.target = target
        self.cam = cam(model=_Column(target.model), target_layers=[target.layer])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        maps = []
        with torch.inference_mode(False), torch.enable_grad():
            batch = images.detach().clone()
            for k in range(self.target.channels):
                cams = self.cam(input_tensor=batch, targets=[ClassifierOutputTarget(k)] * len(batch))
                maps.append(np.nan_to_num(cams, nan=0.0))
        return torch.from_numpy(np.stack(maps, axis=1)).float()


def _unexplainable(kind: str, name: str) -> XRBenchError:
    return XRBenchError(
        f"method {name} has no differentiable score to explain with {kind}; it gets no maps (n/a on the leaderboard)"
    )


def refuse_unexplainable(kind: str | None, method: Method) -> None:
    """Before fitting: refuse to explain a method that will offer no saliency target."""
    if kind is not None and not method.explainable():
        raise _unexplainable(kind, method.card.name)


def explainer_for(kind: str | None, method: Method) -> Explainer | None:
    """The explainer a run asked for, refusing a fitted method that offers no saliency target
    (an embedding method on a ViT or CLIP backbone, say)."""
    if kind is None:
        return None
    target = method.saliency_target()
    if target is None:
        raise _unexplainable(kind, method.card.name)
    return Explainer(kind, target)
