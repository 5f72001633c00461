"""Feature extractors with explicit, recorded weights.

A backbone is a timm architecture name (`resnet18`, `convnext_tiny`, `vit_small_patch14_dinov2`,
...), an open_clip image encoder written `clip:ViT-B-32`, or an X-ray backbone with a card in
`datasets/backbones.toml` (`xrv-densenet121-nih`, `rad-dino`, ...; see
`harness.components.xray_backbones`); `weights` are resolved by
`harness.components.weights` (none, a pretrained name from the local Hugging Face cache, or a file).
"""

from __future__ import annotations

import difflib

import timm
import torch
import torch.nn.functional as F
from torch import nn

from harness.api.protocol import WeightsInfo
from harness.components.clip import ClipImageEncoder, create_clip_visual
from harness.components.weights import CLIP_PREFIX, pretrained_kwargs, resolve_weights
from harness.components.xray_backbones import create_xray_backbone, is_xray_backbone, load_xray_clip, xray_card
from harness.core.errors import ParameterError, XRBenchError
from harness.core.ledger import load_ledger

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_backbone(arch: str) -> None:
    """Refuse a backbone that is neither an X-ray backbone with a card nor known to timm or
    open_clip, suggesting the closest names."""
    if is_xray_backbone(arch):
        return
    if arch.startswith(CLIP_PREFIX):
        import open_clip

        known, name = open_clip.list_models(), arch.removeprefix(CLIP_PREFIX)
    else:
        known, name = timm.list_models() + load_ledger().xray_backbones(), arch
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        what = (
            "open_clip has no model of that name"
            if arch.startswith(CLIP_PREFIX)
            else "no timm model or X-ray backbone card (datasets/backbones.toml) has that name"
        )
        raise ParameterError(f"backbone={arch!r}: {what}{hint}")


def check_trainable_backbone(arch: str) -> None:
    """Refuse a backbone a method cannot build as a timm model to train (an X-ray backbone, an
    open_clip encoder), or one timm does not know."""
    if is_xray_backbone(arch) or arch.startswith(CLIP_PREFIX):
        raise ParameterError(
            f"backbone={arch!r} is a frozen feature extractor; this method fine-tunes a timm model (use a timm name)"
        )
    check_backbone(arch)


def is_vit(arch: str) -> bool:
    return arch.startswith(("vit_", "deit", "eva")) or "dinov2" in arch


def auto_layers(arch: str) -> tuple[int, ...]:
    """Mid-level feature stages (stride 8 and 16 on CNNs; blocks 8 and 12 of a 12-block ViT)."""
    if arch.startswith(CLIP_PREFIX) or (is_xray_backbone(arch) and xray_card(arch).loader == "clip-model"):
        return (0,)
    if is_vit(arch) or (is_xray_backbone(arch) and xray_card(arch).loader in ("dinov2-hf", "clip-vision")):
        return (-4, -1)
    if arch.startswith("convnext"):
        return (1, 2)
    return (2, 3)


def parse_layers(layers: str, arch: str = "resnet18") -> tuple[int, ...]:
    """'2,3' -> (2, 3): feature-pyramid stages as timm numbers them (2 = layer2 of a ResNet;
    block indices on a ViT, negative from the end); 'auto' picks `auto_layers(arch)`."""
    if str(layers) == "auto":
        return auto_layers(arch)
    try:
        return tuple(int(part) for part in str(layers).split(","))
    except ValueError:
        raise ValueError(f"layers must be 'auto' or comma-separated integers such as '2,3', not {layers!r}") from None


def vit_input_size(arch: str, resolution: int) -> int:
    """ViTs need a multiple of their patch size: the largest one not above `resolution`."""
    patch = 14 if "patch14" in arch else 8 if "patch8" in arch else 16
    return max(patch, resolution // patch * patch)


def create_timm_model(
    arch: str, weights: str, seed: int, resolution: int = 128, **kwargs: object
) -> tuple[nn.Module, WeightsInfo]:
    """A timm model with seeded random init or `weights`; ViTs are built for `resolution`
    (see `vit_input_size`). Extra keyword arguments go to `timm.create_model`."""
    if is_xray_backbone(arch):
        check_trainable_backbone(arch)
    path, info = resolve_weights(arch, weights)
    if is_vit(arch):
        kwargs["img_size"] = vit_input_size(arch, resolution)
    if path is not None:
        kwargs.update(pretrained_kwargs(path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(arch, **kwargs), info


def create_backbone(
    arch: str, weights: str, seed: int, out_indices: tuple[int, ...], resolution: int = 128
) -> tuple[nn.Module, WeightsInfo]:
    """A frozen, eval-mode feature pyramid returning the maps at `out_indices`."""
    if arch.startswith(CLIP_PREFIX):
        return create_clip_visual(arch.removeprefix(CLIP_PREFIX), weights, seed)
    if is_xray_backbone(arch) and xray_card(arch).loader == "clip-model":
        clip, info = load_xray_clip(arch, weights, seed)
        return ClipImageEncoder(clip.visual).eval(), info
    if is_xray_backbone(arch):
        return create_xray_backbone(arch, weights, seed, out_indices)
    model, info = create_timm_model(arch, weights, seed, resolution, features_only=True, out_indices=out_indices)
    model.eval().requires_grad_(False)
    if is_vit(arch):
        model = ResizeInput(model, vit_input_size(arch, resolution))
    return model, info


class ResizeInput(nn.Module):
    """Resize inputs to the size a position-embedded model was built for."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.model(x)


def to_backbone_input(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Grayscale (B, 1, H, W) in [0, 1] to normalised 3-channel input."""
    mean_t = images.new_tensor(mean).view(1, 3, 1, 1)
    std_t = images.new_tensor(std).view(1, 3, 1, 1)
    return (images.expand(-1, 3, -1, -1) - mean_t) / std_t


class FeatureExtractor:
    """A frozen backbone that maps grayscale batches to a list of feature maps (B, C, h, w).

    CLIP encoders give one global map of size 1x1."""

    def __init__(self, arch: str, weights: str, seed: int, layers: str, device: torch.device, resolution: int = 128):
        self.arch, self.layers = arch, parse_layers(layers, arch)
        self.model, self.weights = create_backbone(arch, weights, seed, self.layers, resolution)
        self.model.to(device)
        self.device = device
        self.mean, self.std = (
            getattr(self.model, "input_mean", IMAGENET_MEAN),
            getattr(self.model, "input_std", IMAGENET_STD),
        )

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps as float32, also under fp16/bf16 autocast, so that scorers (faiss,
        numpy) always receive full-precision features."""
        return [m.float() for m in self.model(to_backbone_input(images.to(self.device), self.mean, self.std))]


def last_stage(model: nn.Module) -> nn.Module:
    """The module producing a timm model's deepest feature map (its last `feature_info` entry)."""
    info = getattr(model, "feature_info", None)
    if info is None:
        raise XRBenchError(f"{type(model).__name__} names no feature stages; Grad-CAM needs a target layer")
    name = info.module_name()[-1] if hasattr(info, "module_name") else info[-1]["module"]
    try:
        return model.get_submodule(name)
    except AttributeError:  # features_only models flatten 'features.denseblock3' to 'features_denseblock3'
        return model.get_submodule(name.replace(".", "_"))
