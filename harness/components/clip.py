"""open_clip models: image encoders as backbones, and the full model for zero-shot scoring."""

from __future__ import annotations

import torch
from torch import nn

from harness.api.protocol import WeightsInfo
from harness.components.weights import CLIP_PREFIX, resolve_weights
from harness.core.errors import WeightsUnavailable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(name: str, weights: str, seed: int) -> tuple[nn.Module, WeightsInfo]:
    """An eval-mode open_clip model: `weights` is `none` (seeded random init), an open_clip
    pretrained tag found in the local Hugging Face cache, or a checkpoint file."""
    import open_clip

    if open_clip.get_model_config(name) is None:
        raise WeightsUnavailable(f"open_clip has no model {name!r}; see open_clip.list_models()")
    path, info = resolve_weights(CLIP_PREFIX + name, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=str(path) if path else None)
    return model.eval().requires_grad_(False), info


class ClipImageEncoder(nn.Module):
    """The image tower as a one-map feature pyramid: [(B, D, 1, 1)] L2-normalised embeddings."""

    input_mean, input_std = CLIP_MEAN, CLIP_STD

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        size = getattr(visual, "image_size", 224)
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if tuple(x.shape[-2:]) != self.size:
            x = nn.functional.interpolate(x, size=self.size, mode="bicubic", align_corners=False, antialias=True)
        embedding = nn.functional.normalize(self.visual(x).float(), dim=-1)
        return [embedding[:, :, None, None]]


def create_clip_visual(name: str, weights: str, seed: int) -> tuple[nn.Module, WeightsInfo]:
    model, info = load_clip(name, weights, seed)
    return ClipImageEncoder(model.visual).eval(), info
