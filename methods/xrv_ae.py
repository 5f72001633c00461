"""torchxrayvision's ResNet-101 autoencoder, pretrained on chest X-rays, as a reconstruction
anomaly detector: the residual between an image and its reconstruction is the map, its mean the
score. Nothing is trained on the board; the weights come from a local file."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    Params,
    Prediction,
    WeightsInfo,
    WeightsUnavailable,
    param,
)
from harness.api.registry import register
from harness.components.residuals import RESIDUALS, residual_map
from harness.components.xray_backbones import (
    load_checked,
    read_state,
    torchxrayvision,
    weights_info,
    xray_card,
    xray_weights_file,
)

CARD = "xrv-resnet-ae-101-elastic"
XRV_RANGE = 1024.0  # torchxrayvision's models read pixels in [-1024, 1024]


@dataclass(frozen=True)
class XrvAEParams(Params):
    weights: str = param(
        "pretrained",
        weights=False,
        help=f"pretrained (the {CARD} file in ~/.torchxrayvision/models_data) or a weights file",
    )
    residual: str = param("l2", choices=RESIDUALS, help="map: squared error, absolute error or 1 - SSIM")


@register
class XrvAE(Method):
    card = MethodCard(
        name="xrv-ae",
        family="reconstruction",
        description="torchxrayvision's ResNet-101 autoencoder pretrained on chest X-rays (NIH, PadChest, RSNA, "
        "MIMIC-CXR), frozen; map = residual at 224 px, score = its mean",
        reference="Cohen et al., TorchXRayVision: A library of chest X-ray datasets and models, MIDL 2022 "
        "(arXiv:2111.00595)",
        license="Apache-2.0",
        learning="zero-shot",
        produces_maps=True,
        params=XrvAEParams,
        exceptions={
            "fits": "needs the published autoencoder weights, which no test can download; tests/test_xray_backbones.py "
            "runs it on a locally saved autoencoder of the same architecture",
        },
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        if params["weights"] == "none":
            raise WeightsUnavailable(
                "xrv-ae reconstructs with a pretrained autoencoder and trains nothing, so random weights are "
                f"meaningless; pass weights=pretrained (the {CARD} file) or a weights file"
            )
        xray_weights_file(xray_card(CARD), params["weights"])

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        xrv = torchxrayvision()
        card = xray_card(CARD)
        path = xray_weights_file(card, self.params["weights"])
        model = xrv.autoencoders.ResNetAE101()
        load_checked(model, read_state(path, trusted_pickle=path.name == card.get("file")), path, CARD)
        self.model = model.eval().requires_grad_(False).to(ctx.device)
        self.size = int(card.get("input_size", 224))
        self.info = weights_info(card, path)
        ctx.log.info("autoencoder %s ready (%s)", CARD, self.info.id)

    def predict(self, batch: torch.Tensor) -> Prediction:
        x = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        x = x.to(next(self.model.parameters()).device)
        reconstruction = self.model(x * 2 * XRV_RANGE - XRV_RANGE)["out"]
        back = ((reconstruction + XRV_RANGE) / (2 * XRV_RANGE)).clamp(0, 1)
        maps = residual_map(x, back, self.params["residual"])
        return Prediction(scores=maps.mean(dim=(1, 2)).cpu(), maps=maps.cpu())

    def weights(self) -> WeightsInfo:
        return self.info

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model]
