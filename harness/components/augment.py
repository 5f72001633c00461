"""Seeded, batched augmentations for grayscale radiographs (B, 1, H, W) in [0, 1].

No flips: left and right carry anatomy (heart side, tooth numbering). Every random draw
comes from the caller's `torch.Generator`, so training runs repeat exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_view(images: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A random crop (scale 0.5-1 of the area), rotation (±10°), brightness, contrast and gamma
    change of every image: the positive pairs of contrastive learning."""
    b = images.shape[0]
    scale = torch.sqrt(_uniform(b, 1.0 - 0.5 * strength, 1.0, gen))
    angle = _uniform(b, -10.0, 10.0, gen) * strength * math.pi / 180
    shift = (1 - scale)[:, None] * (2 * torch.rand(b, 2, generator=gen) - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = _uniform(b, 1 - 0.3 * strength, 1 + 0.3 * strength, gen).to(images).view(b, 1, 1, 1)
    brightness = _uniform(b, -0.1 * strength, 0.1 * strength, gen).to(images).view(b, 1, 1, 1)
    gamma = torch.exp(_uniform(b, -0.3 * strength, 0.3 * strength, gen)).to(images).view(b, 1, 1, 1)
    out = ((out - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return out.clamp_min(1e-6).pow(gamma).clamp(0, 1)


def tta_view(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A radiograph-safe test-time view: a small shift (up to 4% of the side), scale (0.95-1.05)
    and rotation (up to 5 degrees), no flip (the heart's side matters) and no intensity change."""
    b = images.shape[0]
    scale = _uniform(b, 0.95, 1.05, gen)
    angle = _uniform(b, -5.0, 5.0, gen) * math.pi / 180
    shift = 0.08 * (torch.rand(b, 2, generator=gen) - 0.5)  # affine_grid spans [-1, 1]: 4% of the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def cutpaste(images: torch.Tensor, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.15)) -> torch.Tensor:
    """CutPaste (Li et al., CVPR 2021): copy a random rectangle of each image to another place
    in the same image, with a small intensity change, making a local irregularity."""
    out = images.clone()
    _, _, h, w = images.shape
    for i in range(images.shape[0]):
        a = float(_uniform(1, *area, gen)) * h * w
        aspect = math.exp(float(_uniform(1, math.log(0.3), math.log(3.3), gen)))
        ph = max(2, min(h - 1, round(math.sqrt(a * aspect))))
        pw = max(2, min(w - 1, round(math.sqrt(a / aspect))))
        sy, sx, ty, tx = (int(torch.randint(0, lim, (1,), generator=gen)) for lim in (h - ph, w - pw) * 2)
        patch = images[i, :, sy : sy + ph, sx : sx + pw]
        jitter = float(_uniform(1, -0.1, 0.1, gen))
        out[i, :, ty : ty + ph, tx : tx + pw] = (patch + jitter).clamp(0, 1)
    return out


def gaussian_noise(images: torch.Tensor, gen: torch.Generator, std: float) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation `std` (on the [0, 1] scale), clipped to
    [0, 1]; drawn on the CPU, so the same on every device."""
    noise = torch.randn(images.shape, generator=gen).to(images)
    return (images + std * noise).clamp(0, 1)
