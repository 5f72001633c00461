"""SimCLR (Chen et al., ICML 2020) and MoCo v2 (Chen et al., arXiv:2003.04297) on radiograph views.

Single-process versions: no LARS, no cross-device negatives, no shuffled BatchNorm (which
MoCo needs only across GPUs); AdamW at a constant rate.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from harness.components.augment import random_view
from harness.components.backbones import to_backbone_input
from harness.components.pretrain.common import PretrainConfig, Trainer, feature_dim, pooled_features, projection_head


def info_nce(
    queries: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """Cross-entropy of each query against its own key among all keys (and extra negatives)."""
    q, k = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    logits = q @ k.T
    if negatives is not None:
        logits = torch.cat([logits, q @ negatives.T], dim=1)
    return F.cross_entropy(logits / temperature, torch.arange(len(q), device=q.device))


def simclr(model: nn.Module, config: PretrainConfig) -> Trainer:
    head = projection_head(feature_dim(model))
    temperature = config.options.get("temperature", 0.2)

    def loss(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device = next(model.parameters()).device
        views = torch.cat([random_view(images, gen), random_view(images, gen)]).to(device)
        z = head(pooled_features(model, to_backbone_input(views)))
        a, b = z.chunk(2)
        # NT-Xent: each view's positive is its twin; negatives are all other views of the batch.
        both = torch.cat([a, b])
        sim = F.normalize(both, dim=1) @ F.normalize(both, dim=1).T / temperature
        sim.fill_diagonal_(float("-inf"))
        n = len(a)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(device)
        return F.cross_entropy(sim, target)

    return Trainer([model, head], loss)


def moco(model: nn.Module, config: PretrainConfig) -> Trainer:
    head = projection_head(feature_dim(model))
    key_model, key_head = copy.deepcopy(model).requires_grad_(False), copy.deepcopy(head).requires_grad_(False)
    momentum = config.options.get("momentum", 0.99)
    temperature = config.options.get("temperature", 0.2)
    queue_size = config.options.get("queue", 1024)
    queue: list[torch.Tensor] = []

    def loss(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device = next(model.parameters()).device
        q_view, k_view = random_view(images, gen).to(device), random_view(images, gen).to(device)
        q = head(pooled_features(model, to_backbone_input(q_view)))
        with torch.no_grad():
            k = key_head(pooled_features(key_model, to_backbone_input(k_view)))
        negatives = torch.cat(queue) if queue else None
        result = info_nce(q, k, F.normalize(negatives, dim=1) if negatives is not None else None, temperature)
        queue.append(k.detach())
        while sum(len(x) for x in queue) > queue_size:
            queue.pop(0)
        return result

    @torch.no_grad()
    def update_keys() -> None:
        for online, target in ((model, key_model), (head, key_head)):
            for p, t in zip(online.parameters(), target.parameters(), strict=True):
                t.mul_(momentum).add_(p.detach(), alpha=1 - momentum)
            for b, t in zip(online.buffers(), target.buffers(), strict=True):
                t.copy_(b)

    return Trainer([model, head, key_model, key_head], loss, update_keys)
