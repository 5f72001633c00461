"""What the few-shot methods share: the k normal reference images they remember."""

from __future__ import annotations

import torch

from harness.api.protocol import ImageBatches


def reference_images(train: ImageBatches, shots: int, seed: int) -> torch.Tensor:
    """The normal training images a few-shot method keeps: all of them when `shots` is 0 (the
    few-shot track's board variants already hold only k), else a seeded draw of `shots`."""
    images = torch.cat([batch.cpu() for batch in train])
    if shots == 0 or shots >= len(images):
        return images
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(images), generator=generator)[:shots].sort().values
    return images[keep]
