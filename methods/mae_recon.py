"""Masked-autoencoder reconstruction: a ViT masked autoencoder (the harness's MAE pretraining)
trained on normal images; each test image is reconstructed from K deterministic mask draws that
together mask every patch (draw k shows the k-th of K equal groups of a fixed shuffle of the
patches and masks the rest), each patch's prediction averaged over the draws that masked it.

MAE predicts each patch's pixels normalised by the patch's own mean and spread; they are put
back with the real patch's mean and spread (as MAE shows its reconstructions), so the map
measures structure, not brightness. Map: the squared residual averaged within each patch
(a patch-level map); score: its mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api.protocol import FitContext, MethodCard, ParameterError, Params, param
from harness.api.registry import register
from harness.components.backbones import create_timm_model
from harness.components.pretrain.common import PretrainConfig
from harness.components.pretrain.mae import mae, masked_prediction, normalised_patches
from harness.components.reconstruction import ReconstructionMethod, ReconstructionParams
from harness.components.training import Objective, SingleLoss

MASK_SEED = 0


def unpatchify(patches: torch.Tensor, patch: int, side: int) -> torch.Tensor:
    """(B, N, patch*patch) row-major patches -> (B, 1, side, side)."""
    b = patches.shape[0]
    grid = side // patch
    x = patches.reshape(b, grid, grid, patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, 1, side, side)


def mask_groups(tokens: int, draws: int) -> list[torch.Tensor]:
    """`draws` disjoint groups of patch indices covering all of them (a fixed shuffle, split)."""
    order = torch.randperm(tokens, generator=torch.Generator().manual_seed(MASK_SEED))
    return list(order.tensor_split(draws))


@dataclass(frozen=True)
class MAEReconParams(ReconstructionParams):
    epochs: int = ReconstructionParams.redefault("epochs", 30)
    lr: float = ReconstructionParams.redefault("lr", 1.5e-4 * 4)
    arch: str = param(
        "vit_tiny_patch16_224", choices=("vit_tiny_patch16_224", "vit_small_patch16_224"), help="timm ViT"
    )
    patch: int = param(8, low=2, help="patch size in pixels at the internal resolution")
    draws: int = param(4, low=2, smoke=2, help="mask draws per image; each masks 1 - 1/draws of the patches")


@register
class MAEReconstruction(ReconstructionMethod):
    card = MethodCard(
        name="mae-recon",
        family="reconstruction",
        description="masked-autoencoder reconstruction error (ViT-Tiny MAE trained on normal images, 8-pixel patches "
        "at 64 px), averaged over K mask draws that mask every patch; patch-level map, score = its mean",
        reference="He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022",
        license="Apache-2.0",
        produces_maps=True,
        params=MAEReconParams,
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        if params["size"] % params["patch"]:
            raise ParameterError(f"size ({params['size']}) must be a multiple of patch ({params['patch']})")

    def objective(self, ctx: FitContext) -> Objective:
        p = self.params
        model, _ = create_timm_model(p["arch"], "none", ctx.seed, p["size"], patch_size=p["patch"], num_classes=0)
        ratio = 1 - 1 / p["draws"]  # training masks as many patches as a test draw does
        trainer = mae(model, PretrainConfig("mae", p["arch"], options={"mask_ratio": ratio}))
        self.encoder, self.decoder = trainer.modules
        return SingleLoss(nn.ModuleList(trainer.modules), lambda x, _l, gen, _t: trainer.loss(x, gen), p["lr"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        patch, tokens = self.params["patch"], self.encoder.patch_embed.num_patches
        target, mean, std = normalised_patches(x, patch)
        total = torch.zeros_like(target)
        for group in mask_groups(tokens, self.params["draws"]):
            shown = group.to(x.device).expand(len(x), -1)
            masked = torch.ones(tokens, dtype=torch.bool, device=x.device)
            masked[group] = False
            total[:, masked] += masked_prediction(self.encoder, self.decoder, x, shown)[:, masked].float()
        predicted = total / (self.params["draws"] - 1)  # every patch is masked in all draws but one
        return unpatchify(predicted * std + mean, patch, x.shape[-1])

    def anomaly_map(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d((x - x_hat) ** 2, self.params["patch"])[:, 0]
