"""Supervised multi-label classifier: a timm backbone with one logit per finding, trained with
binary cross-entropy (plain, class-weighted or focal) on the board's training split, keeping
the epoch with the best validation macro AUROC (the CheXNet recipe with a choice of backbone)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kornia
import torch
from torch import nn
from torch.nn import functional as F

from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    Params,
    Prediction,
    SaliencyTarget,
    WeightsInfo,
    XRBenchError,
    param,
)
from harness.api.registry import register, variant
from harness.components.augment import gaussian_noise, random_view, tta_view
from harness.components.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_trainable_backbone,
    create_timm_model,
    last_stage,
    to_backbone_input,
)
from harness.components.losses import LOSSES, class_weights, multilabel_loss, positive_weights
from harness.components.seeding import seeded
from harness.components.selection import macro_auroc
from harness.components.training import SingleLoss, TrainConfig, train_cached
from harness.components.weights import resolve_weights


@dataclass(frozen=True)
class SupervisedParams(Params):
    backbone: str = param("resnet18", help="timm model name")
    weights: str = param(
        "none", help="none (seeded random initialisation), imagenet (from the local Hugging Face cache) or a file"
    )
    epochs: int = param(12, low=1, smoke=1, help="at most this many epochs; the best by validation macro AUROC is kept")
    lr: float = param(1e-3, low=1e-12, help="learning rate (AdamW, cosine schedule)")
    weight_decay: float = param(1e-4, low=0.0, help="AdamW weight decay")
    augment: float = param(0.5, low=0.0, high=1.0, smoke=0.0, help="strength of the radiograph-safe views (0: off)")
    noise: float = param(0.0, low=0.0, high=1.0, help="standard deviation of Gaussian noise added to training images")
    loss: str = param(
        "bce", choices=LOSSES, help="bce, bce-weighted (positives weighted per finding), focal, focal-weighted"
    )
    gamma: float = param(2.0, low=0.0, help="focal loss focusing")
    alpha: float = param(0.25, low=-1.0, high=1.0, help="focal weight of positives (negatives: 1 - alpha); < 0: none")
    dropout: float = param(0.0, low=0.0, high=0.99, help="dropout before the classifier head")
    clahe: bool = param(False, help="contrast-limited adaptive histogram equalisation (kornia) of every input")
    clahe_clip: float = param(2.0, low=0.0, help="CLAHE clip limit")
    clahe_grid: int = param(8, low=1, high=64, help="CLAHE tiles per side")
    accumulate: int = param(1, low=1, high=1024, help="batches per optimiser step (gradient accumulation)")
    batch_size: int = param(0, low=0, high=65536, help="training batch size (0: the board's)")
    resolution: int = param(0, low=0, high=4096, help="the model's input size (0: the board's; resized on the fly)")
    mc_dropout: int = param(
        0,
        low=0,
        high=1000,
        weights=False,
        help="stochastic passes with dropout at prediction (needs dropout > 0)",
    )
    tta: int = param(0, low=0, high=1000, weights=False, help="seeded test-time views per image")


@register
class Supervised(Method):
    card = MethodCard(
        name="supervised",
        family="supervised classifier",
        description="timm backbone with a multi-label head trained with binary cross-entropy on the training "
        "split; the epoch with the best validation macro AUROC is kept",
        reference="Rajpurkar et al., CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep "
        "Learning, arXiv 2017",
        license="Apache-2.0",
        tasks=("multilabel",),
        learning="supervised",
        params=SupervisedParams,
    )

    normalisation = (IMAGENET_MEAN, IMAGENET_STD)  # the weights' own once fitted (input_normalisation)

    @classmethod
    def check_params(cls, params: Params) -> None:
        """The backbone is a timm model this method can fine-tune, and its weights are found."""
        check_trainable_backbone(params["backbone"])
        resolve_weights(params["backbone"], params["weights"])

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        if p["mc_dropout"] and not p["dropout"] > 0:
            raise XRBenchError(
                f"{self.card.name}: mc_dropout={p['mc_dropout']} needs dropout > 0 (there is nothing to sample)"
            )
        self.seed = ctx.seed
        if p["batch_size"]:
            train = train.rebatched(p["batch_size"])  # the checkpoint key holds the batch size
        head = {"drop_rate": p["dropout"]} if p["dropout"] > 0 else {}
        self.model, self.init_weights = create_timm_model(
            p["backbone"],
            p["weights"],
            ctx.seed,
            p["resolution"] or ctx.resolution,
            num_classes=len(ctx.targets),
            **head,
        )
        self.normalisation = input_normalisation(self.model, p["weights"])
        model = self.model
        weights = None
        if p["loss"] in ("bce-weighted", "focal-weighted"):
            labels = torch.cat([labels for _, labels in train.with_labels()]).float()
            weights = positive_weights(labels) if p["loss"] == "bce-weighted" else class_weights(labels)

        def loss(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, _progress: float) -> torch.Tensor:
            if p["augment"] > 0:
                images = random_view(images, gen, strength=p["augment"])
            if p["noise"] > 0:
                images = gaussian_noise(images, gen, p["noise"])
            logits = model(self.model_input(images))
            return multilabel_loss(p["loss"], logits, labels, weights, p["gamma"], p["alpha"])

        val_targets = torch.cat([labels for _, labels in val.with_labels()]).numpy()

        def validation_auroc(trained: nn.Module) -> float:
            logits = torch.cat([trained(self.model_input(x)).float().cpu() for x in val])
            return macro_auroc(val_targets, logits.numpy())

        steps = max(1, p["epochs"] * -(-len(train) // p["accumulate"]))
        objective = SingleLoss(model, loss, p["lr"], p["weight_decay"], cosine_steps=steps, accumulate=p["accumulate"])
        derived = {
            "initial_weights": self.init_weights.sha256 or self.init_weights.id,
            "targets": list(ctx.targets),
            "normalisation": self.normalisation,
        }
        config = TrainConfig(p["epochs"])
        self.trained = train_cached(self.card.name, p, objective, train, config, ctx, validation_auroc, derived)
        self.model = self.trained.modules

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """The harness's images (B, 1, H, W) in [0, 1] as the backbone takes them: with `clahe`,
        equalised first, resized to `resolution` when it is set, normalised as the weights
        expect; the same way in training, prediction and explanation."""
        p = self.params
        if p["clahe"]:
            grid = (p["clahe_grid"], p["clahe_grid"])
            images = kornia.enhance.equalize_clahe(images.float(), clip_limit=p["clahe_clip"], grid_size=grid)
        size = p["resolution"]
        if size and images.shape[-2:] != (size, size):
            images = F.interpolate(
                images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return to_backbone_input(images, *self.normalisation)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.model_input(images))

    def predict(self, batch: torch.Tensor) -> Prediction:
        """The logits; with `mc_dropout` and/or `tta`, the mean logit over the stochastic passes
        (every view with every dropout sample) and the variance of each finding's probability
        over them (a logit's own variance grows with its size, so confident logits would look
        the most uncertain)."""
        p = self.params
        if not (p["mc_dropout"] or p["tta"]):
            return Prediction(scores=self.forward(batch).float().cpu())
        seed = batch_seed(batch, self.seed)
        gen = torch.Generator().manual_seed(seed)
        views = [tta_view(batch.cpu(), gen).to(batch.device) for _ in range(p["tta"])] or [batch]
        samples = []
        with seeded(seed):
            for view in views:
                features = self.model.forward_features(self.model_input(view))
                samples += self.head_samples(features, p["mc_dropout"])
        stacked = torch.stack(samples).float().cpu()
        return Prediction(scores=stacked.mean(0), variance=torch.sigmoid(stacked).var(0, correction=0))

    def head_samples(self, features: torch.Tensor, n: int) -> list[torch.Tensor]:
        """The head's logits on the backbone's features: once, or `n` times with its dropout
        active (the backbone runs once: only the head is stochastic, timm's `drop_rate`)."""
        if not n:
            return [self.model.forward_head(features)]
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        try:
            self.model.train()  # dropout on, whether a module or functional (ResNet's)
            for norm in norms:
                norm.eval()  # running statistics stay as trained
            return [self.model.forward_head(features) for _ in range(n)]
        finally:
            self.model.eval()

    def weights(self) -> WeightsInfo:
        """The trained weights, identified by the initial weights and the checkpoint's hash."""
        return WeightsInfo(
            id=f"{self.init_weights.id}+trained", sha256=self.trained.sha256, card=self.init_weights.card
        )

    def diagnostics(self) -> dict[str, Any]:
        """The loss and validation macro AUROC per epoch (the best epoch's weights are kept)."""
        return {"training": self.trained.record.get("history", [])}

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def saliency_target(self) -> SaliencyTarget:
        """Each finding's logit (the maps of a multi-label run: one channel per finding)."""
        return SaliencyTarget(_Logits(self.model, self.model_input), last_stage(self.model), self.model.num_classes)


def batch_seed(batch: torch.Tensor, seed: int) -> int:
    """A seed from the batch's pixels and the run's seed: the same stochastic passes for the
    same images whatever the order in which batches come."""
    digest = hashlib.sha256(batch.detach().float().cpu().numpy().tobytes()).digest()
    return (int.from_bytes(digest[:8], "little") + seed) % 2**63


def input_normalisation(model: nn.Module, weights: str) -> tuple[tuple, tuple]:
    """(mean, std) per channel: the pretrained weights' own (timm's `pretrained_cfg`) when
    weights are loaded; ImageNet's for a random initialisation."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if weights == "none" or "mean" not in cfg:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg["mean"]), tuple(cfg["std"])


class _Logits(nn.Module):
    """The classifier on the harness's images: (B, 1, H, W) in [0, 1] -> (B, K) logits."""

    def __init__(self, model: nn.Module, model_input: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model, self.model_input = model, model_input

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.model_input(images))


variant(
    Supervised,
    "densenet121-supervised",
    "DenseNet-121 multi-label classifier trained with binary cross-entropy (the CheXNet architecture)",
    "Rajpurkar et al., CheXNet, arXiv 2017; Huang et al., Densely Connected Convolutional Networks, CVPR 2017",
    backbone="densenet121",
)
variant(
    Supervised,
    "convnext-supervised",
    "ConvNeXt-Tiny multi-label classifier trained with binary cross-entropy",
    "Liu et al., A ConvNet for the 2020s, CVPR 2022",
    backbone="convnext_tiny",
    lr=2e-4,
)
variant(
    Supervised,
    "densenet121-failure-suite",
    "The chest X-ray failure-analysis recipe: DenseNet-121, dropout 0.2 before a linear head, BCE with "
    "per-finding pos_weight, AdamW 1e-4 with a cosine schedule, batch 16, at most 15 epochs, best epoch by "
    "validation macro AUROC (ImageNet initialisation: weights=FILE; seeded random initialisation otherwise)",
    "Huang et al., Densely Connected Convolutional Networks, CVPR 2017; the recipe of a chest X-ray "
    "failure-analysis suite (NIH Cardiomegaly / Edema / Effusion)",
    smoke_params={"batch_size": 0},
    backbone="densenet121",
    dropout=0.2,
    loss="bce-weighted",
    lr=1e-4,
    weight_decay=1e-2,
    batch_size=16,
    epochs=15,
    augment=0.0,
)
variant(
    Supervised,
    "convnext-focal",
    "The ConvNeXt multi-label recipe: head LayerNorm -> Dropout 0.2 -> Linear, focal loss (gamma 2) with "
    "inverse-frequency class weights, CLAHE, Gaussian-noise and geometric augmentation; ConvNeXt-Tiny at the "
    "board's resolution (on a GPU: backbone=convnext_large resolution=512 weights=FILE --precision bf16)",
    "Liu et al., A ConvNet for the 2020s, CVPR 2022; Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    backbone="convnext_tiny",
    dropout=0.2,
    loss="focal-weighted",
    gamma=2.0,
    alpha=-1.0,
    clahe=True,
    noise=0.02,
    augment=0.5,
    lr=2e-4,
)
