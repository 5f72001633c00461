"""timm feature extractors with explicit, recorded weights.

`weights` is `none` (seeded random init), `imagenet` (timm's pretrained weights, read from a
local Hugging Face cache only: xrbench never downloads at run time) or a path to a weights
file (.safetensors, .pth, .bin).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from harness.errors import WeightsUnavailable
from harness.protocol import WeightsInfo
from harness.splits import file_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _cached_pretrained_file(arch: str) -> Path:
    """Find timm's default pretrained weights for `arch` in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if repo:
        for filename in WEIGHT_FILES:
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found)
    where = f"the Hugging Face repository {repo}" if repo else f"timm's release for {arch}"
    raise WeightsUnavailable(
        f"ImageNet weights for {arch} are not in the local Hugging Face cache and xrbench does not download "
        f"at run time. On a machine with internet, fetch {where} (for example "
        f"`huggingface-cli download {repo or arch} model.safetensors`), copy ~/.cache/huggingface to this "
        f"machine (or set HF_HOME), or pass weights=/path/to/weights.safetensors."
    )


def resolve_weights(arch: str, weights: str) -> tuple[Path | None, WeightsInfo]:
    if weights == "none":
        return None, WeightsInfo()
    path = _cached_pretrained_file(arch) if weights == "imagenet" else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist (weights= takes none, imagenet or a file path)")
    return path, WeightsInfo(id=f"{arch}:{weights if weights == 'imagenet' else path.name}", sha256=file_sha256(path))


def create_backbone(arch: str, weights: str, seed: int, out_indices: tuple[int, ...]) -> tuple[nn.Module, WeightsInfo]:
    """A frozen, eval-mode timm feature pyramid returning the maps at `out_indices`."""
    path, info = resolve_weights(arch, weights)
    kwargs: dict = {"features_only": True, "out_indices": out_indices}
    if path is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, **kwargs)
    model.eval().requires_grad_(False)
    return model, info


def to_backbone_input(images: torch.Tensor) -> torch.Tensor:
    """Grayscale (B, 1, H, W) in [0, 1] to ImageNet-normalised 3-channel input."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.expand(-1, 3, -1, -1) - mean) / std


def parse_layers(layers: str) -> tuple[int, ...]:
    """'2,3' -> (2, 3): feature-pyramid stages as timm numbers them (2 = layer2 of a ResNet)."""
    try:
        return tuple(int(part) for part in str(layers).split(","))
    except ValueError:
        raise ValueError(f"layers must be comma-separated integers such as '2,3', not {layers!r}") from None


class FeatureExtractor:
    """A frozen backbone that maps grayscale batches to a list of feature maps."""

    def __init__(self, arch: str, weights: str, seed: int, layers: str, device: torch.device):
        self.model, self.weights = create_backbone(arch, weights, seed, parse_layers(layers))
        self.model.to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps as float32, also under fp16/bf16 autocast, so that scorers (faiss,
        numpy) always receive full-precision features."""
        return [m.float() for m in self.model(to_backbone_input(images.to(self.device)))]
