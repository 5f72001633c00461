"""WinCLIP-style windowed zero- and few-shot detection on an open_clip model.

The image is cut into overlapping windows at two scales (half and a third of its side) and each
window is embedded by CLIP's image tower. Zero-shot: a window's anomaly is its softmax probability
of the "abnormal" prompts against the "normal" ones, and a pixel's the harmonic mean over the
windows covering it. Few-shot: the windows of k normal reference images are a memory per scale; a
window's anomaly is half its cosine distance to the nearest remembered window, and a pixel's the
mean over its windows. With both, maps and scores are averaged. WinCLIP's patch-token memory is
left out: open_clip exposes window embeddings the same way for every model, patch tokens not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    ParameterError,
    Params,
    Prediction,
    WeightsInfo,
    WeightsUnavailable,
    param,
)
from harness.api.registry import register
from harness.components.backbones import check_backbone, to_backbone_input
from harness.components.clip import CLIP_MEAN, CLIP_STD, ClipImageEncoder, load_clip
from harness.components.embedding import image_maps
from harness.components.fewshot import reference_images
from harness.components.weights import CLIP_PREFIX, resolve_weights
from harness.components.xray_backbones import is_xray_backbone, load_xray_clip, xray_card, xray_weights_file

GRID = 12  # windows are laid on a 12 x 12 grid of cells
SCALES = ((6, 3), (4, 2))  # (side, stride) in cells: 3 x 3 windows of half the side, 5 x 5 of a third
TEMPLATES = ("a radiograph of a {} {}", "an x-ray image of a {} {}", "a photo of a {} {}")
NORMAL_STATES = ("normal", "healthy", "unremarkable", "clear")
ABNORMAL_STATES = ("abnormal", "diseased", "damaged", "lesioned")
MODES = ("zero+few", "zero", "few")


def window_boxes() -> list[list[tuple[int, int, int]]]:
    """Per scale, every window as (top, left, side) in grid cells."""
    return [
        [(top, left, side) for top in range(0, GRID - side + 1, stride) for left in range(0, GRID - side + 1, stride)]
        for side, stride in SCALES
    ]


@dataclass(frozen=True)
class WinCLIPParams(Params):
    model: str = param("ViT-B-32", weights=False, help="open_clip model name, or chexzero")
    weights: str = param(
        "openai",
        weights=False,
        help="an open_clip tag from the local Hugging Face cache, pretrained (chexzero), a file, or none (mode=few)",
    )
    mode: str = param("zero+few", choices=MODES, help="zero-shot prompts, few-shot window memory, or both")
    shots: int = param(0, low=0, weights=False, help="normal reference images kept (0: every training image)")
    object: str = param("chest x-ray", weights=False, help="the object named in the prompts")
    smoothing_sigma: float = param(4.0, low=0.0, weights=False, help="Gaussian smoothing of the map, in pixels")


@register
class WinCLIP(Method):
    card = MethodCard(
        name="winclip",
        family="vision-language",
        description="Windowed CLIP: each window's probability of 'abnormal' prompts (zero-shot) and its distance "
        "to the windows of k normal reference images (few-shot), aggregated per pixel over two window scales",
        reference="Jeong et al., WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation, CVPR 2023 "
        "(arXiv:2303.14814)",
        license="Apache-2.0",
        learning="few-shot",
        produces_maps=True,
        params=WinCLIPParams,
        exceptions={
            "fits": "needs real CLIP weights, which no test can download; tests/test_few_shot_methods.py runs it "
            "on a tiny CLIP model saved locally",
        },
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        model, weights = params["model"], params["weights"]
        if weights == "none" and params["mode"] != "few":
            raise WeightsUnavailable(
                "winclip: prompts are meaningless with randomly initialised CLIP weights; pass real weights "
                "(an open_clip tag in the local Hugging Face cache, or a file) or mode=few"
            )
        if is_xray_backbone(model):
            if xray_card(model).loader != "clip-model":
                raise ParameterError(f"method winclip: model={model!r} has no text tower xrbench can load")
            xray_weights_file(xray_card(model), weights)
        else:
            check_backbone(CLIP_PREFIX + model)
            resolve_weights(CLIP_PREFIX + model, weights)
        if not params["object"].strip():
            raise ParameterError("method winclip: object is empty")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        p = self.params
        load = load_xray_clip if is_xray_backbone(p["model"]) else load_clip
        clip, self.info = load(p["model"], p["weights"], ctx.seed)
        self.clip = clip.to(ctx.device)
        self.encoder = ClipImageEncoder(clip.visual)
        self.device = ctx.device
        if p["mode"] != "few":
            self.text = self._prompts(p["model"], p["object"])
        if p["mode"] != "zero":
            references = reference_images(train, p["shots"], ctx.seed)
            ctx.log.info("window memory of %d normal reference images", len(references))
            windows = [self._windows(x) for x in references.split(train.batch_size)]
            self.memory = [torch.cat([w[s] for w in windows]).flatten(0, 1) for s in range(len(SCALES))]

    @torch.inference_mode()
    def _prompts(self, model: str, obj: str) -> torch.Tensor:
        """(2, D): the mean unit embedding of the normal, then the abnormal, prompts."""
        import open_clip

        name = str(xray_card(model).get("open_clip_model")) if is_xray_backbone(model) else model
        tokenizer = open_clip.get_tokenizer(name)
        rows = []
        for states in (NORMAL_STATES, ABNORMAL_STATES):
            texts = [t.format(state, obj) for t in TEMPLATES for state in states]
            embedded = F.normalize(self.clip.encode_text(tokenizer(texts).to(self.device)).float(), dim=-1)
            rows.append(F.normalize(embedded.mean(0), dim=-1))
        return torch.stack(rows)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        x = to_backbone_input(images.to(self.device), CLIP_MEAN, CLIP_STD)
        return self.encoder(x)[0].flatten(1)

    def _windows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per scale, (B, n windows, D) unit window embeddings."""
        cell = images.shape[-1] / GRID
        out = []
        for boxes in window_boxes():
            crops = [
                images[..., round(t * cell) : round((t + s) * cell), round(left * cell) : round((left + s) * cell)]
                for t, left, s in boxes
            ]
            size = max(c.shape[-1] for c in crops)
            crops = [F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False) for c in crops]
            embedded = self._embed(torch.cat(crops))  # window-major: (n windows * B, D)
            out.append(embedded.view(len(boxes), len(images), -1).transpose(0, 1))
        return out

    def _abnormal_probability(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (100.0 * embeddings @ self.text.T).softmax(dim=-1)[..., 1]

    def predict(self, batch: torch.Tensor) -> Prediction:
        windows, mode = self._windows(batch), self.params["mode"]
        parts, scores = [], []
        if mode != "few":
            parts.append(_harmonic_map([self._abnormal_probability(w) for w in windows]))
            scores.append(self._abnormal_probability(self._embed(batch)))
        if mode != "zero":
            distances = [(1 - (w @ memory.T).amax(dim=-1)) / 2 for w, memory in zip(windows, self.memory, strict=True)]
            parts.append(_mean_map(distances))
            scores.append(parts[-1].flatten(1).amax(dim=1))
        grid = torch.stack(parts).mean(0)[:, None].cpu()
        maps = image_maps(grid, batch.shape[-2:], self.params["smoothing_sigma"])
        return Prediction(scores=torch.stack(scores).mean(0).cpu(), maps=maps)

    def weights(self) -> WeightsInfo:
        return self.info

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.encoder]


def _coverage(values: list[torch.Tensor], transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over windows of transform(value) per grid cell, and how many windows cover each cell."""
    total = values[0].new_zeros(values[0].shape[0], GRID, GRID)
    count = values[0].new_zeros(GRID, GRID)
    for per_scale, boxes in zip(values, window_boxes(), strict=True):
        for i, (top, left, side) in enumerate(boxes):
            total[:, top : top + side, left : left + side] += transform(per_scale[:, i])[:, None, None]
            count[top : top + side, left : left + side] += 1
    return total, count


def _harmonic_map(probabilities: list[torch.Tensor]) -> torch.Tensor:
    """(B, GRID, GRID): per cell, the harmonic mean of its windows' probabilities."""
    total, count = _coverage(probabilities, lambda p: 1 / p.clamp_min(1e-6))
    return count / total


def _mean_map(distances: list[torch.Tensor]) -> torch.Tensor:
    total, count = _coverage(distances, lambda d: d)
    return total / count
