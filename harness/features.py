"""Feature pieces shared by embedding-based methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_features(maps: list[torch.Tensor], neighbourhood: int = 3) -> torch.Tensor:
    """PatchCore-style local features: each map average-pooled over a small neighbourhood,
    resized to the first (finest) map's grid and concatenated: (B, C, h, w)."""
    size = maps[0].shape[-2:]
    pooled = []
    for m in maps:
        m = F.avg_pool2d(m, neighbourhood, stride=1, padding=neighbourhood // 2)
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        pooled.append(m)
    return torch.cat(pooled, dim=1)


def global_embedding(maps: list[torch.Tensor]) -> torch.Tensor:
    """Global average pooling of every map, concatenated: (B, sum C)."""
    return torch.cat([m.mean(dim=(-2, -1)) for m in maps], dim=1)
