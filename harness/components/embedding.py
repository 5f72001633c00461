"""Shared bodies of methods built on a frozen feature extractor, so that methods differ only
in what actually differs (the scorer, the pooling), never by copy."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from harness.api.params import param
from harness.api.protocol import FitContext, ImageBatches, Method, Params, Prediction, SaliencyTarget, WeightsInfo
from harness.components.backbones import check_backbone, is_vit, last_stage, parse_layers, to_backbone_input
from harness.components.coreset import greedy_coreset
from harness.components.features import ExtractorParams, build_extractor, global_embedding
from harness.components.neighbors import NearestNeighbors, TorchNearestNeighbors
from harness.components.scorers import Scorer
from harness.components.weights import CLIP_PREFIX, resolve_weights
from harness.core.errors import ParameterError

CORESET_LOG = "coreset: kept %d of %d patches in %.3f s"
"""The fit's log line of the coreset selection (its arguments are read by `make gpu-check`)."""


class BackboneMethod(Method):
    """A method whose fitted state includes `self.extractor` (see `harness.components.features.build_extractor`)."""

    @classmethod
    def check_params(cls, params: Params) -> None:
        """The backbone exists in timm or open_clip, its layers parse and its weights are found."""
        check_backbone(params["backbone"])
        try:
            parse_layers(params["layers"], params["backbone"])
        except ValueError as exc:
            raise ParameterError(f"method {cls.card.name}: {exc}") from None
        resolve_weights(params["backbone"], params["weights"])

    def weights(self) -> WeightsInfo:
        return self.extractor.weights

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.extractor.model]


class EmbeddingMethod(BackboneMethod):
    """Global embedding of each image, scored against the normal training embeddings by
    the `Scorer` that `make_scorer()` returns."""

    def make_scorer(self) -> Scorer:
        raise NotImplementedError

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.extractor = build_extractor(self.params, train, ctx)
        normal = np.concatenate([self.embed(x) for x in ctx.progress(train, "embedding normal images")])
        self.scorer = self.make_scorer().fit(normal)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        return global_embedding(self.extractor(images)).cpu().numpy()

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=torch.from_numpy(self.scorer.score(self.embed(batch)).astype(np.float32)))

    def memory_bank_bytes(self) -> int:
        return self.scorer.nbytes

    def explainable(self) -> bool:
        """When the scorer has a torch version and the backbone is a CNN (ViT tokens need a
        reshaping Grad-CAM is not given here)."""
        backbone = self.params["backbone"]
        return hasattr(self.make_scorer(), "torch_score") and not (is_vit(backbone) or backbone.startswith(CLIP_PREFIX))

    def saliency_target(self) -> SaliencyTarget | None:
        """The score of the pooled embedding (see `explainable`)."""
        if not self.explainable():
            return None
        return SaliencyTarget(_EmbeddingScore(self.extractor, self.scorer), last_stage(self.extractor.model), 1)


class _EmbeddingScore(torch.nn.Module):
    """A backbone method's anomaly score as a differentiable function of the image: (B, 1)."""

    def __init__(self, extractor: object, scorer: Scorer):
        super().__init__()
        self.backbone, self.scorer = extractor.model, scorer  # type: ignore[attr-defined]
        self.mean, self.std = extractor.mean, extractor.std  # type: ignore[attr-defined]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(to_backbone_input(images, self.mean, self.std))
        return self.scorer.torch_score(global_embedding([m.float() for m in maps]))[:, None]


@dataclass(frozen=True)
class PatchParams(ExtractorParams):
    """PatchCore's parameters (and those of methods that use its memory)."""

    neighbourhood: int = param(3, low=1, high=15, weights=False, help="patch features averaged over this square")
    coreset_ratio: float = param(
        0.05, low=1e-6, high=1.0, weights=False, help="fraction of normal patches kept in the memory"
    )
    projection_dim: int = param(
        64, low=0, weights=False, help="random projection width for choosing the coreset (0: none)"
    )
    smoothing_sigma: float = param(4.0, low=0.0, weights=False, help="Gaussian smoothing of the anomaly map, in pixels")


class PatchBank:
    """PatchCore's memory: a greedy coreset of normal patch features and nearest-neighbour
    distances of new patches to it."""

    def __init__(self, coreset_ratio: float, projection_dim: int, seed: int):
        self.coreset_ratio, self.projection_dim, self.seed = coreset_ratio, projection_dim, seed

    def fit(self, patches: torch.Tensor, ctx: FitContext) -> PatchBank:
        """`patches`: (N, C, h, w) features of the normal training images. The coreset is
        chosen and the bank lives on the run's device: faiss on CPU, matrix products on a GPU."""
        flat = patches.to(ctx.device).permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
        n_keep = max(1, math.ceil(self.coreset_ratio * len(flat)))
        started = time.perf_counter()
        keep = greedy_coreset(flat, n_keep, projection_dim=self.projection_dim, seed=self.seed)
        ctx.log.info(CORESET_LOG, n_keep, len(flat), time.perf_counter() - started)
        if ctx.device.type == "cuda":
            self.index: NearestNeighbors | TorchNearestNeighbors = TorchNearestNeighbors(flat[keep.to(ctx.device)])
        else:
            self.index = NearestNeighbors(flat[keep].cpu().numpy())
        return self

    def distances(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 1, h, w) distance of each patch to its nearest bank patch."""
        b, c, h, w = patches.shape
        flat = patches.permute(0, 2, 3, 1).reshape(-1, c)
        if isinstance(self.index, TorchNearestNeighbors):
            return self.index.distances(flat, k=1)[:, 0].view(b, 1, h, w)
        nearest = self.index.distances(flat.cpu().numpy(), k=1)[:, 0]
        return torch.from_numpy(nearest.astype(np.float32)).view(b, 1, h, w)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes


def patch_prediction(bank: PatchBank, patches: torch.Tensor, size: tuple[int, int], sigma: float) -> Prediction:
    """Image score = maximum of the smoothed map of patch distances."""
    maps = image_maps(bank.distances(patches), size, sigma)
    return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)


def image_maps(grid: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(B, 1, h, w) patch scores -> (B, H, W) maps: bilinear upsampling, then Gaussian smoothing."""
    maps = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    if sigma > 0:
        maps = gaussian_blur(maps, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)
    return maps[:, 0]
