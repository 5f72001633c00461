"""Per-pixel residuals between an image and its reconstruction: the maps of reconstruction
methods (trained here, or pretrained elsewhere)."""

from __future__ import annotations

import kornia
import torch

RESIDUALS = ("l2", "l1", "ssim")


def residual_map(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, 1, h, w) images -> (B, h, w) residuals: squared error (l2), absolute error (l1) or
    1 - local SSIM (11-pixel Gaussian window, kornia)."""
    if kind == "l2":
        return ((x - x_hat) ** 2)[:, 0]
    if kind == "l1":
        return (x - x_hat).abs()[:, 0]
    return (1 - kornia.metrics.ssim(x, x_hat, window_size=11))[:, 0]
