"""AnoDDPM-style reconstruction: a small denoising diffusion model trained on normal images;
a test image is noised to an intermediate step `t_star` and denoised back (DDIM, deterministic),
so that what the model has not seen in normal images is replaced by what it has; the residual is
the anomaly map. The noise is drawn from a fixed seed, the same for every batch, so predictions
are reproducible and a clean and a corrupted image share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from harness.api.protocol import FitContext, MethodCard, ParameterError, Params, param
from harness.api.registry import register
from harness.components.reconstruction import ReconstructionMethod, ReconstructionParams
from harness.components.training import Objective, SingleLoss

TRAIN_TIMESTEPS = 1000
NOISE_SEED = 0


def unet(size: int, widths: tuple[int, ...], channels: int = 1, out_channels: int | None = None) -> UNet2DModel:
    """A small diffusers U-Net without attention (cheap on a CPU)."""
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=out_channels or channels,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * len(widths),
        up_block_types=("UpBlock2D",) * len(widths),
        norm_num_groups=min(8, widths[0]),
    )


def noise_to(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
    """x_t of the forward process: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
    return scheduler.add_noise(x0, noise, torch.full((len(x0),), t, dtype=torch.long))


def denoising_steps(t_star: int, steps: int) -> DDIMScheduler:
    """A DDIM schedule whose timesteps below `t_star` are `steps` + 1 evenly spaced ones ending at 0."""
    ddim = DDIMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, clip_sample=False)
    ddim.set_timesteps(TRAIN_TIMESTEPS * steps // t_star)
    return ddim


@dataclass(frozen=True)
class DDPMParams(ReconstructionParams):
    epochs: int = ReconstructionParams.redefault("epochs", 20)
    lr: float = ReconstructionParams.redefault("lr", 2e-4)
    widths: str = param("16,32,32", smoke="16,16", help="channels of the U-Net's levels, comma-separated")
    t_star: int = param(
        250, low=1, high=TRAIN_TIMESTEPS - 1, smoke=100, weights=False, help="test images are noised to this step"
    )
    steps: int = param(5, low=1, smoke=2, weights=False, help="DDIM steps back from t_star to a reconstruction")


@register
class DDPMReconstruction(ReconstructionMethod):
    card = MethodCard(
        name="ddpm-recon",
        family="reconstruction",
        description="denoising diffusion model (diffusers U-Net, 1000-step linear DDPM schedule) trained on normal "
        "images; test images noised to step t_star and denoised back with DDIM; map = residual, score = its mean; "
        "trained and scored at 64 px, maps upsampled",
        reference="Wyatt et al., AnoDDPM: Anomaly Detection with Denoising Diffusion Probabilistic Models using "
        "Simplex Noise, CVPR Workshops 2022; Ho et al., DDPM, NeurIPS 2020",
        license="Apache-2.0",
        produces_maps=True,
        params=DDPMParams,
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        widths = _widths(params["widths"])
        if params["size"] % 2 ** (len(widths) - 1):
            raise ParameterError(f"size must be a multiple of {2 ** (len(widths) - 1)} for widths {params['widths']}")
        if params["steps"] > params["t_star"]:
            raise ParameterError(f"steps must be at most t_star ({params['t_star']}), not {params['steps']}")

    def objective(self, ctx: FitContext) -> Objective:
        model = unet(self.params["size"], _widths(self.params["widths"]))
        self.scheduler = DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS)

        def loss(x: torch.Tensor, _labels: torch.Tensor, gen: torch.Generator, _progress: float) -> torch.Tensor:
            t = torch.randint(0, TRAIN_TIMESTEPS, (len(x),), generator=gen)
            noise = torch.randn(x.shape, generator=gen).to(x.device)
            noisy = self.scheduler.add_noise(2 * x - 1, noise, t.to(x.device))
            return F.mse_loss(model(noisy, t.to(x.device)).sample, noise)

        return SingleLoss(model, loss, self.params["lr"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        ddim = denoising_steps(self.params["t_star"], self.params["steps"])
        timesteps = [int(t) for t in ddim.timesteps if t <= self.params["t_star"]]
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(x.device)
        sample = noise_to(self.scheduler, 2 * x - 1, noise, timesteps[0])
        for t in timesteps:
            predicted = self.model(sample, torch.full((len(x),), t, device=x.device)).sample
            sample = ddim.step(predicted, t, sample).prev_sample
        return (sample + 1) / 2

    def diagnostics(self) -> dict[str, Any]:
        ddim = denoising_steps(self.params["t_star"], self.params["steps"])
        used = [int(t) for t in ddim.timesteps if t <= self.params["t_star"]]
        return {**super().diagnostics(), "denoising_timesteps": used}


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in str(text).split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise ParameterError(f"widths must be comma-separated channel counts such as 32,64,64, not {text!r}")
    return widths
