"""Stress corruptions: identical, seeded, cached perturbations of a board's test images.

A corruption is a function `(images, level, seeds) -> images` on uint8 tensors (N, 1, H, W),
registered with `@corruption("name")`. `level` is the severity's parameter as written in the
board file; `seeds` holds one int64 per image, derived from (board seed, image id, corruption,
severity) and never from global random state, so every method sees byte-identical inputs
whatever the batch order. Adding a corruption is one function here plus one line in a board.

The same bytes on every x86-64 machine: the arithmetic is chosen so that no result depends on
the CPU's vector width, its fused multiply-add or its math library. Random numbers are PCG64's
raw integers (numpy); normal draws are sums of twelve 32-bit uniforms, added as integers
(Irwin-Hall: variance 1, tails cut at 6); filters and resampling use integer weights summing to
a power of two, applied in int64; exp and log are series written with + - * / only, each of
which IEEE 754 rounds exactly. JPEG is libjpeg-turbo's integer DCT, whose SIMD and C paths give
the same bytes. A board file freezes the rendered set's SHA-256 (`stress_sha256`), so a
machine that renders other bytes is refused.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from harness.core.errors import XRBenchError
from harness.core.registry import Registry

CorruptionFn = Callable[[torch.Tensor, float, list[int]], torch.Tensor]
CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")
# Bump when any corruption's output changes: it is part of the corrupted-image cache key.
CORRUPTIONS_VERSION = 2
WEIGHT_BITS = 14
"""Filter weights are integers summing to 2**WEIGHT_BITS."""
LN2 = 0.6931471805599453


def corruption(name: str) -> Callable[[CorruptionFn], CorruptionFn]:
    def add(fn: CorruptionFn) -> CorruptionFn:
        return CORRUPTIONS.add(name, fn)

    return add


def image_seed(board_seed: int, image_id: str, name: str, severity: int) -> int:
    digest = hashlib.sha256(f"{board_seed}|{image_id}|{name}|{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# --- deterministic arithmetic ----------------------------------------------------------------


def uniform(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform float64 in [0, 1): the top 53 bits of PCG64's raw output, scaled exactly."""
    raw = np.random.PCG64(seed).random_raw(math.prod(shape))
    return ((raw >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal draws as the sum of twelve 32-bit uniforms minus 6, summed as integers."""
    n = math.prod(shape)
    raw = np.random.PCG64(seed).random_raw(12 * n).reshape(12, n) >> np.uint64(32)
    total = raw.sum(axis=0, dtype=np.uint64)  # integers: the same in any order
    return (total.astype(np.float64) * 2.0**-32 - 6.0).reshape(shape)


def exp(x: np.ndarray) -> np.ndarray:
    """e**x from a power of two and a 24-term Taylor series (relative error below 1e-15)."""
    k = np.floor(x / LN2 + 0.5)
    r = x - k * LN2
    total = np.ones_like(r)
    for n in range(24, 0, -1):
        total = 1.0 + total * r / n
    return np.ldexp(total, k.astype(np.int64))


def log(x: np.ndarray) -> np.ndarray:
    """Natural log of x > 0: mantissa and exponent, then 2 atanh((m - 1) / (m + 1)) as a series."""
    m, e = np.frexp(x)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    total = np.zeros_like(s)
    for n in range(41, 0, -2):
        total = 1.0 / n + total * s2
    return 2.0 * s * total + e * LN2


def to_uint8(x: np.ndarray) -> torch.Tensor:
    """Round half to even and clip, as an image file stores it; back as (N, 1, H, W)."""
    return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8)[:, None].copy())


def integer_weights(weights: np.ndarray) -> np.ndarray:
    """Rows of float weights as int64 summing exactly to 2**WEIGHT_BITS (the rounding error
    goes to each row's largest weight)."""
    rows = weights / weights.sum(axis=1, keepdims=True)
    q = np.rint(rows * 2**WEIGHT_BITS).astype(np.int64)
    top = np.argmax(rows, axis=1)
    q[np.arange(len(q)), top] += 2**WEIGHT_BITS - q.sum(axis=1)
    return q


def resample_axis(x: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """out[.., i, ..] = sum_t weights[i, t] * x[.., index[i, t], ..], in int64 (exact)."""
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros((*moved.shape[:-1], len(index)), dtype=np.int64)
    for t in range(index.shape[1]):
        out += moved[..., index[:, t]] * weights[:, t]
    return np.moveaxis(out, -1, axis)


def shift_round(x: np.ndarray, bits: int) -> np.ndarray:
    """x / 2**bits rounded half up, in integers."""
    return (x + (1 << (bits - 1))) >> bits


def gaussian_taps(n: int, kernel: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A `kernel`-tap Gaussian along an axis of length n, with reflected borders."""
    offsets = np.arange(kernel) - kernel // 2
    w = exp(-(offsets.astype(np.float64) ** 2) / (2 * sigma * sigma))
    index = np.arange(n)[:, None] + offsets[None, :]
    index = np.abs(index)
    index = np.where(index > n - 1, 2 * (n - 1) - index, index)
    return index, integer_weights(np.tile(w, (n, 1)))


def triangle_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation from n_in to n_out samples (pixel centres aligned), widened by the
    scale when shrinking so that it averages (antialiasing); taps outside the image dropped."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    first = np.floor(centres - support).astype(np.int64) + 1
    taps = math.ceil(2 * support) + 1
    index = first[:, None] + np.arange(taps)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs(index - centres[:, None]) / support)
    w = np.where((index >= 0) & (index < n_in), w, 0.0)
    return np.clip(index, 0, n_in - 1), integer_weights(w)


# --- the corruptions -------------------------------------------------------------------------


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images[:, 0].numpy()


@corruption("gaussian_noise")
def gaussian_noise(images: torch.Tensor, variance: float, seeds: list[int]) -> torch.Tensor:
    """Additive Gaussian noise; `variance` on the 0-255 scale."""
    x = _pixels(images)
    noise = np.stack([normal(s, x.shape[1:]) for s in seeds])
    return to_uint8(x + noise * math.sqrt(variance))


@corruption("gaussian_blur")
def gaussian_blur(images: torch.Tensor, kernel: float, seeds: list[int]) -> torch.Tensor:
    """Gaussian blur with a `kernel` x `kernel` kernel and OpenCV's default sigma for that size."""
    k = int(kernel)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = _pixels(images).astype(np.int64)
    for axis in (1, 2):
        x = resample_axis(x, axis, *gaussian_taps(x.shape[axis], k, sigma))
    return to_uint8(shift_round(x, 2 * WEIGHT_BITS))


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
    u = np.stack([uniform(s, (2,)) for s in seeds]) * 2 - 1
    contrast = (1 + limit * u[:, 0])[:, None, None]
    brightness = (limit * u[:, 1] * 255)[:, None, None]
    return to_uint8(_pixels(images) * contrast + brightness)


@corruption("quantum_noise")
def quantum_noise(images: torch.Tensor, dose: float, seeds: list[int]) -> torch.Tensor:
    """Quantum noise of an acquisition at `dose` times the reference dose.

    Bright pixels are attenuating ones, which receive few photons: the transmitted fraction is
    taken as 1 - 0.95 * I / 255 and the detector counts at full dose as 2,000 photons times
    that fraction. The counts are Poisson's normal approximation, mean and variance the
    expected count (at least 12 photons at the lowest dose of the boards), never negative.
    Noise therefore grows in dense regions and as the dose falls.
    """
    full_dose_photons = 2000.0
    x = _pixels(images)
    expected = (1 - 0.95 * x / 255) * (full_dose_photons * dose)
    z = np.stack([normal(s, x.shape[1:]) for s in seeds])
    counts = np.maximum(np.rint(expected + np.sqrt(expected) * z), 0)
    return to_uint8((1 - counts / (full_dose_photons * dose)) / 0.95 * 255)


@corruption("resolution_loss")
def resolution_loss(images: torch.Tensor, scale: float, seeds: list[int]) -> torch.Tensor:
    """Downsample by `scale` (antialiased) and back up to the board resolution (bilinear)."""
    x = _pixels(images).astype(np.int64)
    h, w = x.shape[1:]
    small_h, small_w = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
    small = resample_axis(resample_axis(x, 1, *triangle_taps(h, small_h)), 2, *triangle_taps(w, small_w))
    small = shift_round(small, WEIGHT_BITS)  # kept at 2**WEIGHT_BITS times the pixel scale
    big = resample_axis(resample_axis(small, 1, *triangle_taps(small_h, h)), 2, *triangle_taps(small_w, w))
    return to_uint8(shift_round(big, 3 * WEIGHT_BITS))


@corruption("gamma_window")
def gamma_window(images: torch.Tensor, strength: float, seeds: list[int]) -> torch.Tensor:
    """A different display window: gamma exp(+-strength) and a window-level shift of up to
    strength / 4 of the range, direction and size drawn per image (through a table of the 256
    grey levels)."""
    u = np.stack([uniform(s, (2,)) for s in seeds]) * 2 - 1
    gamma = exp(strength * np.sign(u[:, 0]) * (0.5 + 0.5 * np.abs(u[:, 0])))
    level = strength / 4 * u[:, 1]
    grey = np.arange(1, 256, dtype=np.float64) / 255
    powers = exp(gamma[:, None] * log(grey)[None, :])  # (N, 255): grey ** gamma
    tables = np.concatenate([np.zeros((len(seeds), 1)), powers], axis=1) - level[:, None]
    x = _pixels(images).astype(np.int64)
    return to_uint8(np.take_along_axis(tables, x.reshape(len(x), -1), axis=1).reshape(x.shape) * 255)


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
