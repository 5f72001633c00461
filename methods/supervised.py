"""Supervised multi-label classifier: a timm backbone with one logit per finding, trained with
binary cross-entropy on the board's training split, keeping the epoch with the best
validation macro AUROC (the CheXNet recipe with a choice of backbone)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.augment import random_view
from harness.backbones import create_timm_model, to_backbone_input
from harness.fingerprints import state_sha256
from harness.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction, WeightsInfo
from harness.registry import register, variant
from harness.saliency import SaliencyTarget, last_stage
from harness.tasks.multilabel import macro_auroc


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
        smoke_params={"epochs": 1, "augment": 0.0},
        ranges={"epochs": (1, None), "lr": (1e-12, None), "weight_decay": (0.0, None), "augment": (0.0, 1.0)},
        defaults={
            "backbone": "resnet18",
            "weights": "none",
            "epochs": 12,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "augment": 0.5,  # strength of harness.augment.random_view; 0 switches it off
        },
    )

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        self.model, self.init_weights = create_timm_model(
            p["backbone"], p["weights"], ctx.seed, ctx.resolution, num_classes=len(ctx.targets)
        )
        self.model.to(ctx.device)
        optimiser = torch.optim.AdamW(self.model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, p["epochs"] * len(train)))
        gen = torch.Generator().manual_seed(ctx.seed)
        val_targets = torch.cat([labels for _, labels in val.with_labels()]).numpy()
        best, self.history = (-1.0, None), []
        for epoch in ctx.progress(range(p["epochs"]), f"training ({p['epochs']} epochs)"):
            self.model.train()
            total = 0.0
            for images, labels in train.with_labels(torch.randperm(train.num_images, generator=gen)):
                if len(images) < 2:
                    continue  # a last batch of one image: batch normalisation cannot train on it
                if p["augment"] > 0:
                    images = random_view(images, gen, strength=p["augment"])
                loss = F.binary_cross_entropy_with_logits(self.forward(images), labels.to(ctx.device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(images)
            self.model.eval()
            with torch.no_grad():
                score = macro_auroc(val_targets, torch.cat([self.predict(x).scores for x in val]).numpy())
            self.history.append({"epoch": epoch + 1, "loss": total / train.num_images, "val_macro_auroc": score})
            ctx.log.info("epoch %d: loss %.4f, validation macro AUROC %.4f", epoch + 1, self.history[-1]["loss"], score)
            if score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        if best[1] is not None:
            self.model.load_state_dict(best[1])
        self.model.eval()
        self.trained_sha256 = state_sha256(self.model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(to_backbone_input(images))

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=self.forward(batch).float().cpu())

    def weights(self) -> WeightsInfo:
        """The trained weights, identified by the initial weights and the trained state's hash."""
        return WeightsInfo(id=f"{self.init_weights.id}+trained", sha256=self.trained_sha256)

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def saliency_target(self) -> SaliencyTarget:
        """Each finding's logit (the maps of a multi-label run: one channel per finding)."""
        return SaliencyTarget(_Logits(self.model), last_stage(self.model), self.model.num_classes)


class _Logits(nn.Module):
    """The classifier on the harness's images: (B, 1, H, W) in [0, 1] -> (B, K) logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(to_backbone_input(images))


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
