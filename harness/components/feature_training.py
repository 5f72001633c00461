"""What methods that train a network on a frozen backbone's feature maps share: student-teacher
distillation (`stfpm`, `rd4ad`) and normalizing flows on patch features (`fastflow`).

The frozen backbone (the *teacher*) is built from the method's `backbone`, `weights` and
`layers` like every backbone method's extractor. A method implements `objective` (the modules
it trains on the teacher's maps, and their loss) and `position_scores` (per-layer anomaly
scores on each layer's grid); the harness trains it with the one training loop, caches the
checkpoint under a key that holds the teacher's identity and the layers, and turns the scores
into an image-sized map (upsampled, combined across layers, smoothed) whose maximum is the
image's score.

With random teacher weights (`weights=none`, the default on a machine without downloaded
weights) a distillation method is a control, not the published method: the student learns to
imitate a random network. The method cards say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api.params import param
from harness.api.protocol import FitContext, ImageBatches, Prediction, WeightsInfo
from harness.components.embedding import BackboneMethod, image_maps
from harness.components.features import ExtractorParams, build_extractor
from harness.components.seeding import seeded
from harness.components.training import Objective, SingleLoss, TrainConfig, train_cached
from harness.core.errors import ParameterError

COMBINE = {"sum": lambda maps: maps.sum(0), "product": lambda maps: maps.prod(0), "mean": lambda maps: maps.mean(0)}
"""How a method's stacked per-layer maps (layers, B, 1, H, W) make one map."""


@dataclass(frozen=True)
class FeatureTrainingParams(ExtractorParams):
    """What every method trained on frozen feature maps trains with."""

    layers: str = ExtractorParams.redefault("layers", "1,2,3")
    epochs: int = param(10, low=1, smoke=1, help="training epochs")
    lr: float = param(1e-3, low=1e-12, high=10.0, help="learning rate (AdamW)")
    batch_size: int = param(16, low=2, smoke=8, help="training batch size")
    smoothing_sigma: float = param(4.0, low=0.0, weights=False, help="Gaussian smoothing of the anomaly map, in pixels")


class FeatureTrainingMethod(BackboneMethod):
    """A frozen teacher, a network trained on its feature maps, and maps from their mismatch.

    `combine` says how per-layer maps make one (a key of `COMBINE`): summed, multiplied (STFPM)
    or averaged (FastFlow)."""

    combine: str = "sum"

    @classmethod
    def check_params(cls, params: FeatureTrainingParams) -> None:
        super().check_params(params)
        if params["pretrain"] != "none":
            raise ParameterError(f"method {cls.card.name}: pretrain is not supported (the teacher is frozen as given)")

    def objective(self, shapes: list[torch.Size], ctx: FitContext) -> Objective:
        """Fresh modules (seeded by the caller) for teacher maps of `shapes` (C, h, w), and their
        loss; `self.teacher(images)` gives the teacher's maps of a batch."""
        raise NotImplementedError

    def position_scores(self, images: torch.Tensor, teacher_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """One (B, h, w) score grid per layer (higher = more anomalous), with the trained `self.model`."""
        raise NotImplementedError

    def teacher(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's feature maps, as ordinary tensors that a loss can backpropagate through."""
        return [m.clone() for m in self.extractor(images)]

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.extractor = build_extractor(p, train, ctx)
        shapes = [m.shape[1:] for m in self.extractor(next(iter(train))[:1])]
        with seeded(ctx.seed):
            objective = self.objective(shapes, ctx)
        teacher = {"weights": self.extractor.weights.id, "sha256": self.extractor.weights.sha256}
        derived = {"teacher": teacher, "layers": list(self.extractor.layers), "shapes": [list(s) for s in shapes]}
        batches = train.rebatched(p["batch_size"])
        config = TrainConfig(p["epochs"])
        self.trained = train_cached(self.card.name, p, objective, batches, config, ctx, derived=derived)
        self.trained.modules.requires_grad_(False)  # frozen from here: prediction needs no gradients

    @property
    def model(self) -> nn.Module:
        return self.trained.modules

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> Prediction:
        grids = self.position_scores(batch, self.teacher(batch))
        size = batch.shape[-2:]
        layer_maps = [F.interpolate(g[:, None].float(), size=size, mode="bilinear", align_corners=False) for g in grids]
        stacked = torch.stack(layer_maps)
        combined = COMBINE[self.combine](stacked)
        maps = image_maps(combined, size, self.params["smoothing_sigma"])
        return Prediction(scores=maps.flatten(1).amax(dim=1).cpu(), maps=maps.cpu())

    def weights(self) -> WeightsInfo:
        """The teacher's id with the trained network's checkpoint hash (its key holds the teacher's)."""
        return WeightsInfo(
            id=f"{self.extractor.weights.id}+{self.card.name}-trained",
            sha256=self.trained.sha256,
            card=self.extractor.weights.card,
        )

    def diagnostics(self) -> dict:
        return {"training": self.trained.record.get("history", [])}

    def torch_modules(self) -> list[nn.Module]:
        return [self.extractor.model, self.model]


def feature_loss_objective(modules: nn.Module, loss: Callable[[torch.Tensor], torch.Tensor], lr: float) -> SingleLoss:
    """AdamW on `modules` against `loss(images)`: the usual objective of these methods."""
    return SingleLoss(modules, lambda x, _labels, _gen, _progress: loss(x), lr)
