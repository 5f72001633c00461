"""What reconstruction-based anomaly detectors share: a model trained on the normal training
images at an internal resolution (`size`, lower than the board's for speed: maps are returned at
that size and upsampled by the harness), a reconstruction of each test image, and the residual
as the anomaly map and, averaged, as the score.

A method subclasses `ReconstructionMethod` and implements `network` (an autoencoder trained with
the `residual` loss), or `objective` (what to train, for other training) and `reconstruct` (a
batch at the internal resolution -> its reconstruction); it may override `anomaly_map` and
`score`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from harness.api.params import Params, param
from harness.api.protocol import FitContext, ImageBatches, Method, Prediction, WeightsInfo
from harness.components.residuals import RESIDUALS, residual_map
from harness.components.seeding import seeded
from harness.components.training import Objective, SingleLoss, TrainConfig, train_cached
from harness.core.errors import ParameterError


@dataclass(frozen=True)
class ReconstructionParams(Params):
    """What every reconstruction method trains with."""

    size: int = param(64, low=16, high=1024, smoke=32, help="internal resolution: trained and scored at this size")
    epochs: int = param(40, low=1, smoke=2, help="training epochs")
    lr: float = param(1e-3, low=1e-12, help="learning rate (AdamW)")
    batch_size: int = param(32, low=2, smoke=8, help="training batch size")
    residual: str = param(
        "l2", choices=RESIDUALS, help="map and training loss: squared error, absolute error or 1 - SSIM"
    )
    ema: float = param(
        0.0,
        low=0.0,
        high=0.9999,
        help="decay of a moving average of the weights kept instead of the last ones (0: off)",
    )


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> torch.Tensor:
    """The training loss matching `residual_map`: mean squared or absolute error, or SSIM loss."""
    if kind == "ssim":
        return kornia.losses.ssim_loss(x_hat, x, window_size=11)
    return residual_map(x, x_hat, kind).mean()


def downsized(batches: ImageBatches, size: int, batch_size: int) -> ImageBatches:
    """The training images at the internal resolution, as batches (values stay 0-255 floats)."""
    images = torch.cat([resize(batch.cpu(), size) for batch in batches]) * 255.0
    labels = torch.cat([labels for _, labels in batches.with_labels()])
    return ImageBatches(images, labels, batch_size, batches.device)


class ReconstructionMethod(Method):
    """Trains a reconstruction model on normal images; map = residual, score = its mean.

    Subclass cards' parameters extend `ReconstructionParams`; every parameter that changes the
    weights is in the checkpoint key. A network that halves the internal size `halvings` times
    (the conv autoencoders: `len(WIDTHS)`) gets `size` checked for it."""

    halvings: int = 0

    @classmethod
    def check_params(cls, params: Any) -> None:
        if cls.halvings:
            check_size(params["size"], cls.halvings)

    def network(self) -> nn.Module:
        """A fresh autoencoder (images in [0, 1] -> reconstructions), for the default `objective`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither network() nor objective()")

    def objective(self, ctx: FitContext) -> Objective:
        """Fresh modules (seeded by the caller) and their training step at the internal size;
        by default `network()` trained with the `residual` loss."""
        model, kind = self.network(), self.params["residual"]
        return SingleLoss(model, lambda x, *_: reconstruction_loss(x, model(x), kind), self.params["lr"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, size, size) in [0, 1] -> its reconstruction, same shape."""
        return self.model(x)

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        with seeded(ctx.seed):
            objective = self.objective(ctx)
        batches = downsized(train, p["size"], p["batch_size"])
        self.trained = train_cached(self.card.name, p, objective, batches, TrainConfig(p["epochs"], p["ema"]), ctx)
        self.after_fit(val, ctx)

    def after_fit(self, val: ImageBatches, ctx: FitContext) -> None:
        """Anything to do with the trained model before predicting (diagnostics on validation)."""

    @property
    def model(self) -> nn.Module:
        return self.trained.modules

    def anomaly_map(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return residual_map(x, x_hat.clamp(0, 1), self.params["residual"])

    def score(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(1).mean(dim=1)

    def predict(self, batch: torch.Tensor) -> Prediction:
        x = resize(batch, self.params["size"])
        maps = self.anomaly_map(x, self.reconstruct(x)).float()
        return Prediction(scores=self.score(maps).cpu(), maps=maps.cpu())

    def weights(self) -> WeightsInfo:
        """Trained in the harness from random init: the checkpoint's hash identifies it."""
        return WeightsInfo(id=f"{self.card.name}+trained", sha256=self.trained.sha256, card="random-init")

    def diagnostics(self) -> dict[str, Any]:
        return {"training": self.trained.record.get("history", [])}

    def torch_modules(self) -> list[nn.Module]:
        return [self.model]


# --- building blocks -------------------------------------------------------------------------------


def down(c_in: int, c_out: int) -> nn.Module:
    """Halve the resolution: 4x4 stride-2 convolution, batch norm, leaky ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


def up(c_in: int, c_out: int) -> nn.Module:
    """Double the resolution: 4x4 stride-2 transposed convolution, batch norm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


WIDTHS = (32, 64, 128, 256)
"""Channels of the conv autoencoders' stages (`ae`, `unet-ae`, `reversed-ae`), one per halving."""


def bottleneck_side(size: int) -> int:
    """The side of the deepest feature map of a `down_path(WIDTHS)` at internal size `size`."""
    return size // 2 ** len(WIDTHS)


def down_path(widths: tuple[int, ...]) -> list[nn.Module]:
    """From one channel through `widths`, halving the resolution at each."""
    return [down(a, b) for a, b in itertools.pairwise((1, *widths))]


def up_path(widths: tuple[int, ...]) -> nn.Sequential:
    """The mirror of `down_path`, ending in one channel in [0, 1]."""
    back = widths[::-1]
    return nn.Sequential(
        *(up(a, b) for a, b in itertools.pairwise(back)), nn.ConvTranspose2d(back[-1], 1, 4, 2, 1), nn.Sigmoid()
    )


def check_size(size: int, levels: int) -> None:
    """The internal size must halve `levels` times to a whole number of pixels, at least 2."""
    if size % 2**levels or size // 2**levels < 2:
        raise ParameterError(f"size must be a multiple of {2**levels} and at least {2 ** (levels + 1)}, not {size}")
