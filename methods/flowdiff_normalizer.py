"""The flow + diffusion normalizer: maps any radiograph to its nearest normal version G(x) and
scores what had to change.

Training, on normal images only, in two cached stages:
1. a VAE (diffusers `AutoencoderKL`): a small one trained here with L1 pixel loss (1.0), L1 of
   the Sobel gradients (0.5), L1 of the Laplacian (0.3, high frequencies), SSIM loss (0.1,
   `ssim_weight`) and KL (1e-6); or `vae=sd-vae-ft-mse`, the Stable Diffusion VAE from the local
   Hugging Face cache, used frozen;
2. a latent U-Net with two heads on the straight path z_t = (1 - t) z_0 + t noise: noise
   prediction (diffusion) and velocity noise - z_0 (flow matching), trained generatively first;
   from `identity_start` of training on, an identity constraint |G(x) - x| on the normal
   images, its weight ramped linearly to `lambda_id`.

Inference: encode, move the latent to noise level `noise_level` (seeded noise), integrate back
to t = 0 in `sample_steps` Euler steps of the velocity (`sampler`: the flow head's, the one
implied by the noise head, or their mean), decode. Anomaly map:
|x - G| + w_grad (|d_x x - d_x G| + |d_y x - d_y G|) + w_lap |lap x - lap G| (normalised Sobel
and 3x3 Laplacian, kornia). Score: the mean of the top 1% of the map (`score=top1`, default:
findings are small, so the mean of the whole map dilutes them; one maximum pixel is noisy) or
the mean (`score=mean`). The identity diagnostics (PSNR and SSIM of G(x) against x on the
normal validation images) are stored with the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel
from huggingface_hub import try_to_load_from_cache
from torch import nn

from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    ParameterError,
    Params,
    Prediction,
    WeightsInfo,
    WeightsUnavailable,
    param,
    state_sha256,
)
from harness.api.registry import register
from harness.components.reconstruction import downsized, resize
from harness.components.seeding import seeded
from harness.components.training import Objective, SingleLoss, TrainConfig, Trained, train_cached

NOISE_SEED = 0
SD_VAE = "stabilityai/sd-vae-ft-mse"
SAMPLERS = ("flow", "diffusion", "both")


# --- the map and the losses -------------------------------------------------------------------------


def gradients(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, 2, H, W): normalised Sobel derivatives along x and y."""
    return kornia.filters.spatial_gradient(x, mode="sobel", normalized=True)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    return kornia.filters.laplacian(x, kernel_size=3, normalized=True)


def normalizer_map(x: torch.Tensor, g: torch.Tensor, w_grad: float, w_lap: float) -> torch.Tensor:
    """(B, 1, H, W) image and its normal version -> (B, H, W) anomaly map."""
    pixel = (x - g).abs()[:, 0]
    edge = (gradients(x) - gradients(g)).abs().sum(dim=2)[:, 0]
    detail = (laplacian(x) - laplacian(g)).abs()[:, 0]
    return pixel + w_grad * edge + w_lap * detail


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, gen: torch.Generator, ssim_weight: float) -> torch.Tensor:
    posterior = vae.encode(x).latent_dist
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(x.device)
    x_hat = vae.decode(z).sample
    loss = F.l1_loss(x_hat, x) + 0.5 * F.l1_loss(gradients(x_hat), gradients(x))
    loss = loss + 0.3 * F.l1_loss(laplacian(x_hat), laplacian(x)) + 1e-6 * posterior.kl().mean()
    if ssim_weight > 0:
        loss = loss + ssim_weight * kornia.losses.ssim_loss(x_hat.clamp(0, 1), x, window_size=11)
    return loss


def top_share_mean(maps: torch.Tensor, share: float = 0.01) -> torch.Tensor:
    """Per map, the mean of its highest `share` of pixels (at least one)."""
    flat = maps.flatten(1)
    k = max(1, round(share * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


# --- the models ------------------------------------------------------------------------------------


def small_vae() -> AutoencoderKL:
    """One channel in and out, 4 latent channels at a quarter of the resolution."""
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        mid_block_add_attention=False,
    )


def sd_vae_missing(why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"vae=sd-vae-ft-mse needs {SD_VAE} in the local Hugging Face cache ({why}); download it on a "
        f"connected machine with `huggingface-cli download {SD_VAE}` and copy ~/.cache/huggingface here "
        "(or set HF_HOME), or use vae=in-harness"
    )


def sd_vae() -> AutoencoderKL:
    try:
        return AutoencoderKL.from_pretrained(SD_VAE, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise sd_vae_missing(f"it could not be loaded: {type(exc).__name__}") from exc


class GreyVAE(nn.Module):
    """A three-channel VAE on grey images in [0, 1]: repeated in, averaged out, [-1, 1] inside."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode((2 * x - 1).repeat(1, 3, 1, 1)).latent_dist.mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(z).sample.mean(dim=1, keepdim=True) + 1) / 2).clamp(0, 1)


class OwnVAE(nn.Module):
    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample.clamp(0, 1)


def two_head_unet(side: int, channels: int) -> UNet2DModel:
    """Latent U-Net whose output holds the noise prediction, then the velocity."""
    return UNet2DModel(
        sample_size=side,
        in_channels=channels,
        out_channels=2 * channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


class Normalizer(nn.Module):
    """G: encode, noise to `level`, integrate the velocity back to 0, decode."""

    def __init__(self, vae: nn.Module, unet: UNet2DModel, scale: float, sampler: str):
        super().__init__()
        self.vae, self.unet, self.scale, self.sampler = vae, unet, scale, sampler

    def velocity(self, z: torch.Tensor, t: float) -> torch.Tensor:
        noise, flow = self.unet(z, torch.full((len(z),), t * 1000.0, device=z.device)).sample.chunk(2, dim=1)
        if self.sampler == "flow":
            return flow
        z0 = (z - t * noise) / (1 - t)
        implied = noise - z0  # the velocity the noise head implies on the straight path
        return implied if self.sampler == "diffusion" else (flow + implied) / 2

    def latent(self, z0: torch.Tensor, noise: torch.Tensor, level: float, steps: int) -> torch.Tensor:
        z = (1 - level) * z0 + level * noise
        for i in range(steps):
            z = z - (level / steps) * self.velocity(z, level * (1 - i / steps))
        return z

    def forward(self, x: torch.Tensor, noise: torch.Tensor, level: float, steps: int) -> torch.Tensor:
        z0 = self.vae.encode(x) * self.scale
        return self.vae.decode(self.latent(z0, noise, level, steps) / self.scale)


class CurriculumObjective(Objective):
    """Generative losses (noise and velocity) throughout; the identity loss on normal images
    from `identity_start` of training on, weighted from 0 up to `lambda_id`."""

    def __init__(self, normalizer: Normalizer, params: FlowDiffParams):
        self.normalizer, self.p = normalizer, params
        self.modules = normalizer.unet
        self.optimiser = torch.optim.AdamW(normalizer.unet.parameters(), lr=params["lr"])

    def identity_weight(self, progress: float) -> float:
        start = self.p["identity_start"]
        return 0.0 if progress < start else self.p["lambda_id"] * (progress - start) / max(1 - start, 1e-9)

    def step(self, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, progress: float) -> float:
        g = self.normalizer
        with self.precision.autocast():
            with torch.no_grad():
                z0 = g.vae.encode(x) * g.scale
            noise = torch.randn(z0.shape, generator=gen).to(x.device)
            t = torch.rand(len(z0), generator=gen).to(x.device)
            zt = (1 - t[:, None, None, None]) * z0 + t[:, None, None, None] * noise
            eps, flow = g.unet(zt, t * 1000.0).sample.chunk(2, dim=1)
            loss = F.mse_loss(eps, noise) + F.mse_loss(flow, noise - z0)
            weight = self.identity_weight(progress)
            if weight > 0:
                level, steps = self.p["noise_level"], self.p["sample_steps"]
                loss = loss + weight * F.l1_loss(g.vae.decode(g.latent(z0, noise, level, steps) / g.scale), x)
        self.precision.minimise(loss, self.optimiser)
        return float(loss.item())


# --- the method ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowDiffParams(Params):
    size: int = param(64, low=16, high=1024, smoke=32, help="internal resolution: trained and scored at this size")
    vae: str = param(
        "in-harness",
        choices=("in-harness", "sd-vae-ft-mse"),
        help="a small VAE trained here, or the Stable Diffusion VAE from the local Hugging Face cache (frozen)",
    )
    vae_epochs: int = param(10, low=1, smoke=1, help="training epochs of the in-harness VAE")
    vae_lr: float = param(1e-3, low=1e-12, help="learning rate of the in-harness VAE")
    epochs: int = param(20, low=1, smoke=2, help="training epochs of the latent U-Net")
    lr: float = param(2e-4, low=1e-12, help="learning rate of the latent U-Net")
    batch_size: int = param(32, low=2, smoke=8, help="training batch size")
    noise_level: float = param(0.4, low=0.01, high=0.99, help="noise level a test latent is moved to first")
    sample_steps: int = param(4, low=1, smoke=2, help="Euler steps back to t = 0")
    sampler: str = param(
        "both", choices=SAMPLERS, help="velocity: the flow head's, the diffusion head's, or their mean"
    )
    lambda_id: float = param(0.1, low=0.0, help="final weight of the identity constraint |G(x) - x|")
    identity_start: float = param(0.7, low=0.0, high=1.0, help="share of training before the identity term ramps up")
    ssim_weight: float = param(0.1, low=0.0, help="weight of the SSIM loss of the in-harness VAE")
    w_grad: float = param(0.5, low=0.0, weights=False, help="weight of the gradient difference in the map")
    w_lap: float = param(0.3, low=0.0, weights=False, help="weight of the Laplacian difference in the map")
    score: str = param("top1", choices=("top1", "mean"), weights=False, help="mean of the map's top 1%, or its mean")


@register
class FlowDiffNormalizer(Method):
    card = MethodCard(
        name="flowdiff-normalizer",
        family="reconstruction",
        description="latent flow-matching + diffusion normalizer: maps an image to its nearest normal version "
        "(VAE, two-head latent U-Net, identity curriculum) and scores the residual, gradient and Laplacian "
        "differences (mean of the top 1% of the map); trained and scored at 64 px, maps upsampled",
        reference="Lipman et al., Flow Matching for Generative Modeling, ICLR 2023; Rombach et al., High-Resolution "
        "Image Synthesis with Latent Diffusion Models, CVPR 2022",
        license="Apache-2.0",
        produces_maps=True,
        params=FlowDiffParams,
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        factor = latent_factor(params)
        if params["size"] % (2 * factor):
            raise ParameterError(f"size must be a multiple of {2 * factor} with vae={params['vae']}")
        if params["vae"] == "sd-vae-ft-mse" and not isinstance(try_to_load_from_cache(SD_VAE, "config.json"), str):
            raise sd_vae_missing("it has no copy of it")  # before the run starts, not after a board is loaded

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        batches = downsized(train, p["size"], p["batch_size"])
        vae, self.vae_sha256 = self.fit_vae(batches, ctx)
        vae.requires_grad_(False)
        scale = latent_scale(vae, batches)
        with seeded(ctx.seed):
            unet = two_head_unet(p["size"] // latent_factor(p), 4)
        self.normalizer = Normalizer(vae, unet, scale, p["sampler"])
        derived = {"vae_sha256": self.vae_sha256, "scale": scale}
        objective = CurriculumObjective(self.normalizer, p)
        config = TrainConfig(p["epochs"])
        self.unet = train_cached(f"{self.card.name}-unet", p, objective, batches, config, ctx, derived=derived)
        self.normalizer.eval()
        self.identity = identity_diagnostics(self, val)

    def fit_vae(self, batches: ImageBatches, ctx: FitContext) -> tuple[nn.Module, str]:
        p = self.params
        if p["vae"] == "sd-vae-ft-mse":
            vae = sd_vae()
            return GreyVAE(vae).to(ctx.device).eval(), state_sha256(vae)
        with seeded(ctx.seed):
            vae = small_vae()
        objective = SingleLoss(vae, lambda x, _l, gen, _t: vae_loss(vae, x, gen, p["ssim_weight"]), p["vae_lr"])
        trained = train_cached(f"{self.card.name}-vae", p, objective, batches, TrainConfig(p["vae_epochs"]), ctx)
        self.vae_record = trained
        return OwnVAE(trained.modules).eval(), trained.sha256

    def normal_version(self, x: torch.Tensor) -> torch.Tensor:
        """G(x) at the internal size."""
        shape = (len(x), 4, *(s // latent_factor(self.params) for s in x.shape[-2:]))
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(x.device)
        return self.normalizer(x, noise, self.params["noise_level"], self.params["sample_steps"])

    def predict(self, batch: torch.Tensor) -> Prediction:
        p = self.params
        x = resize(batch, p["size"])
        maps = normalizer_map(x, self.normal_version(x), p["w_grad"], p["w_lap"]).float()
        scores = top_share_mean(maps) if p["score"] == "top1" else maps.flatten(1).mean(dim=1)
        return Prediction(scores=scores.cpu(), maps=maps.cpu())

    def weights(self) -> WeightsInfo:
        card = "random-init" if self.params["vae"] == "in-harness" else "sd-vae-ft-mse"
        return WeightsInfo(id=f"{self.card.name}+trained(vae={self.params['vae']})", sha256=self.unet.sha256, card=card)

    def diagnostics(self) -> dict[str, Any]:
        vae: Trained | None = getattr(self, "vae_record", None)
        return {
            "identity_on_normal_validation": self.identity,
            "vae_sha256": self.vae_sha256,
            "latent_scale": self.normalizer.scale,
            "training": {
                "vae": vae.record.get("history", []) if vae else [],
                "unet": self.unet.record.get("history", []),
            },
        }

    def torch_modules(self) -> list[nn.Module]:
        return [self.normalizer]


def latent_scale(vae: nn.Module, batches: ImageBatches) -> float:
    """1 / the spread of the training latents, so that they have unit variance (rounded: part
    of a cache key)."""
    with torch.no_grad():
        latents = torch.cat([vae.encode(x) for x in batches])
    return round(1.0 / float(latents.std().clamp_min(1e-6)), 6)


def identity_diagnostics(method: FlowDiffNormalizer, val: ImageBatches) -> dict[str, float]:
    """PSNR (dB) and SSIM of G(x) against x on the normal validation images, at the internal size."""
    psnr, ssim, n = 0.0, 0.0, 0
    with torch.no_grad():
        for images, labels in val.with_labels():
            x = resize(images, method.params["size"])[labels == 0]
            if len(x) == 0:
                continue
            g = method.normal_version(x)
            mse = ((x - g) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
            psnr += float((10 * torch.log10(1.0 / mse)).sum())
            ssim += float(kornia.metrics.ssim(x, g, window_size=11).flatten(1).mean(dim=1).sum())
            n += len(x)
    return {"psnr_db": psnr / max(n, 1), "ssim": ssim / max(n, 1), "images": n}


def latent_factor(params: dict[str, Any]) -> int:
    """How many times smaller than the image the latent is."""
    return 8 if params["vae"] == "sd-vae-ft-mse" else 4
