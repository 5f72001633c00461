"""Stress corruptions: identical, seeded, cached perturbations of a board's test images.

A corruption is a function `(images, level, seeds) -> images` on uint8 tensors (N, 1, H, W),
registered with `@corruption("name")`. `level` is the severity's parameter as written in the
board file; `seeds` holds one int64 per image, derived from (board seed, image id, corruption,
severity) and never from global random state, so every method sees byte-identical inputs
whatever the batch order. Adding a corruption is one function here plus one line in a board.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import gaussian_blur as tv_gaussian_blur

from harness.core.errors import XRBenchError
from harness.core.registry import Registry

CorruptionFn = Callable[[torch.Tensor, float, list[int]], torch.Tensor]
CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")
# Bump when any corruption's output changes: it is part of the corrupted-image cache key.
CORRUPTIONS_VERSION = 1


def corruption(name: str) -> Callable[[CorruptionFn], CorruptionFn]:
    def add(fn: CorruptionFn) -> CorruptionFn:
        return CORRUPTIONS.add(name, fn)

    return add


def image_seed(board_seed: int, image_id: str, name: str, severity: int) -> int:
    digest = hashlib.sha256(f"{board_seed}|{image_id}|{name}|{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _per_image(seeds: list[int], shape: tuple[int, ...], draw: Callable[..., torch.Tensor]) -> torch.Tensor:
    """Stack one seeded draw per image: `draw(shape, generator=g)`."""
    return torch.stack([draw(shape, generator=g, dtype=torch.float64) for g in _generators(seeds)])


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


@corruption("gaussian_noise")
def gaussian_noise(images: torch.Tensor, variance: float, seeds: list[int]) -> torch.Tensor:
    """Additive Gaussian noise; `variance` on the 0-255 scale."""
    noise = _per_image(seeds, images.shape[1:], torch.randn) * variance**0.5
    return _to_uint8(images.double() + noise)


@corruption("gaussian_blur")
def gaussian_blur(images: torch.Tensor, kernel: float, seeds: list[int]) -> torch.Tensor:
    """Gaussian blur with a `kernel` x `kernel` kernel and OpenCV's default sigma for that size."""
    k = int(kernel)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    return _to_uint8(tv_gaussian_blur(images.double(), kernel_size=k, sigma=sigma))


@corruption("jpeg")
def jpeg(images: torch.Tensor, quality: float, seeds: list[int]) -> torch.Tensor:
    """Real JPEG re-compression through Pillow at the given quality."""
    out = torch.empty_like(images)
    for i, image in enumerate(images[:, 0].numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i, 0] = torch.from_numpy(np.asarray(decoded.convert("L")).copy())
    return out


@corruption("brightness_contrast")
def brightness_contrast(images: torch.Tensor, limit: float, seeds: list[int]) -> torch.Tensor:
    """Random brightness and contrast shifts, each uniform in [-limit, limit] per image."""
    u = _per_image(seeds, (2,), torch.rand) * 2 - 1
    contrast = (1 + limit * u[:, 0]).view(-1, 1, 1, 1)
    brightness = (limit * u[:, 1] * 255).view(-1, 1, 1, 1)
    return _to_uint8(images.double() * contrast + brightness)


@corruption("quantum_noise")
def quantum_noise(images: torch.Tensor, dose: float, seeds: list[int]) -> torch.Tensor:
    """Poisson (quantum) noise of an acquisition at `dose` times the reference dose.

    Bright pixels are attenuating ones, which receive few photons: the transmitted fraction is
    taken as 1 - 0.95 * I / 255 and the detector counts at full dose as 2,000 photons times
    that fraction. Noise therefore grows in dense regions and as the dose falls.
    """
    full_dose_photons = 2000.0
    transmitted = 1 - 0.95 * images.double() / 255
    expected = transmitted * full_dose_photons * dose
    counts = torch.stack([torch.poisson(e, generator=g) for e, g in zip(expected, _generators(seeds), strict=True)])
    return _to_uint8((1 - counts / (full_dose_photons * dose)) / 0.95 * 255)


@corruption("resolution_loss")
def resolution_loss(images: torch.Tensor, scale: float, seeds: list[int]) -> torch.Tensor:
    """Downsample by `scale` (antialiased) and back up to the board resolution."""
    size = images.shape[-2:]
    small = F.interpolate(images.double(), scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
    return _to_uint8(F.interpolate(small, size=size, mode="bilinear", align_corners=False))


@corruption("gamma_window")
def gamma_window(images: torch.Tensor, strength: float, seeds: list[int]) -> torch.Tensor:
    """A different display window: gamma exp(+-strength) and a window-level shift of up to
    strength / 4 of the range, direction and size drawn per image."""
    u = _per_image(seeds, (2,), torch.rand) * 2 - 1
    gamma = torch.exp(strength * torch.sign(u[:, 0]) * (0.5 + 0.5 * u[:, 0].abs())).view(-1, 1, 1, 1)
    level = (strength / 4 * u[:, 1]).view(-1, 1, 1, 1)
    x = (images.double() / 255) ** gamma - level
    return _to_uint8(x * 255)


def apply(
    name: str, images: torch.Tensor, level: float, image_ids: list[str], board_seed: int, severity: int
) -> torch.Tensor:
    fn = CORRUPTIONS.get(name)
    seeds = [image_seed(board_seed, i, name, severity) for i in image_ids]
    out = fn(images, float(level), seeds)
    if out.shape != images.shape or out.dtype != torch.uint8:
        raise XRBenchError(
            f"corruption {name} returned {tuple(out.shape)} {out.dtype}, expected uint8 {tuple(images.shape)}"
        )
    return out
