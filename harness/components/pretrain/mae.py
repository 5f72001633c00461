"""Masked autoencoder (He et al., CVPR 2022) for timm ViTs with a class token.

The encoder sees a random 25% of the patches; a small transformer decoder reconstructs the
per-patch normalised pixels of the masked ones. Small default decoder (2 blocks, width 128).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from harness.components.backbones import to_backbone_input
from harness.components.pretrain.common import PretrainConfig, Trainer


class MAEDecoder(nn.Module):
    def __init__(self, dim: int, tokens: int, patch: int, width: int = 128, depth: int = 2):
        super().__init__()
        self.embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        self.blocks = nn.Sequential(*[Block(width, num_heads=4) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch * patch)

    def forward(self, encoded: torch.Tensor, keep: torch.Tensor, tokens: int) -> torch.Tensor:
        x = self.embed(encoded)
        b, width = x.shape[0], x.shape[-1]
        full = self.mask_token.expand(b, tokens, width).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, width), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x)))[:, 1:]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, N, patch*patch), row-major patches."""
    b, _, h, w = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch)


def check_mae_model(model: nn.Module) -> None:
    tokens = model.patch_embed.num_patches
    if getattr(model, "cls_token", None) is None or model.pos_embed.shape[1] != tokens + 1:
        raise ValueError(
            "MAE pretraining needs a ViT with one class token and no register tokens, "
            "for example vit_tiny_patch16_224 or vit_small_patch16_224"
        )


def normalised_patches(images: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each patch's pixels normalised by its own mean and spread (the MAE target), with them."""
    target = patchify(images, patch)
    mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6).sqrt()
    return (target - mean) / std, mean, std


def masked_prediction(model: nn.Module, decoder: MAEDecoder, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The decoder's normalised pixels of every patch (B, N, patch*patch), the encoder seeing
    only the patches `keep` (B, n_keep) of `images` (B, 1, H, W) at the model's input size."""
    tokens = model.patch_embed.num_patches
    x = model.patch_embed(to_backbone_input(images)) + model.pos_embed[:, 1:]
    x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(len(x), -1, -1)
    encoded = model.norm(model.blocks(torch.cat([cls, x], dim=1)))
    return decoder(encoded, keep, tokens)


def mae(model: nn.Module, config: PretrainConfig) -> Trainer:
    check_mae_model(model)
    tokens = model.patch_embed.num_patches
    patch = model.patch_embed.patch_size[0]
    decoder = MAEDecoder(model.embed_dim, tokens, patch)
    mask_ratio = config.options.get("mask_ratio", 0.75)
    side = model.patch_embed.img_size[0]

    def loss(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device = model.pos_embed.device
        images = nn.functional.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
        n_keep = max(1, round(tokens * (1 - mask_ratio)))
        order = torch.rand(len(images), tokens, generator=gen).argsort(dim=1)
        keep, masked = order[:, :n_keep].to(device), order[:, n_keep:].to(device)
        images = images.to(device)
        predicted = masked_prediction(model, decoder, images, keep)
        target = normalised_patches(images, patch)[0]
        pick = masked[..., None].expand(-1, -1, target.shape[-1])
        return ((torch.gather(predicted, 1, pick) - torch.gather(target, 1, pick)) ** 2).mean()

    return Trainer([model, decoder], loss)
