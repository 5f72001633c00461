"""CutPaste self-supervision (Li et al., CVPR 2021): learn to tell normal images from copies
with a pasted rectangle; the density estimate on the learnt embedding is the scorer's job."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.components.augment import cutpaste as cutpaste_augment
from harness.components.augment import random_view
from harness.components.backbones import to_backbone_input
from harness.components.pretrain.common import PretrainConfig, Trainer, feature_dim, pooled_features


def cutpaste(model: nn.Module, config: PretrainConfig) -> Trainer:
    classifier = nn.Linear(feature_dim(model), 2)

    def loss(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device = next(model.parameters()).device
        normal = random_view(images, gen, strength=0.3)
        pasted = cutpaste_augment(normal, gen)
        x = torch.cat([normal, pasted]).to(device)
        labels = torch.cat([torch.zeros(len(images)), torch.ones(len(images))]).long().to(device)
        return F.cross_entropy(classifier(pooled_features(model, to_backbone_input(x))), labels)

    return Trainer([model, classifier], loss)
