"""CutPaste: a backbone trained in-harness to spot pasted patches, then a Gaussian density on
its embeddings (the augmentation lives in harness.augment for other methods to reuse)."""

from __future__ import annotations

from harness.registry import variant
from methods.mahalanobis import Mahalanobis

variant(
    Mahalanobis,
    "cutpaste",
    "ResNet-18 trained to tell normal images from CutPaste-augmented ones, scored by a Gaussian density "
    "on its final pooled embedding",
    "Li et al., CutPaste: Self-Supervised Learning for Anomaly Detection and Localization, CVPR 2021",
    pretrain="cutpaste",
    layers="4",
)
