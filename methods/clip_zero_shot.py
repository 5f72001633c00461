"""CLIP zero-shot anomaly scoring: how much more an image matches "abnormal" than "normal"
radiograph prompts. Needs real CLIP weights; there is nothing to fit."""

from __future__ import annotations

from typing import Any

import torch

from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    ParameterError,
    Prediction,
    WeightsInfo,
    WeightsUnavailable,
)
from harness.api.registry import register
from harness.components.backbones import check_backbone, to_backbone_input
from harness.components.clip import CLIP_MEAN, CLIP_STD, ClipImageEncoder, load_clip
from harness.components.weights import CLIP_PREFIX, resolve_weights

NORMAL_PROMPTS = (
    "a normal chest radiograph",
    "a chest x-ray with no findings",
    "a healthy chest x-ray",
    "a normal dental panoramic radiograph",
)
ABNORMAL_PROMPTS = (
    "an abnormal chest radiograph",
    "a chest x-ray showing disease",
    "a chest x-ray with a lesion",
    "an abnormal dental panoramic radiograph",
)


@register
class ClipZeroShot(Method):
    card = MethodCard(
        name="clip-zero-shot",
        family="zero-shot",
        description="Difference between the image's cosine similarity to the mean 'abnormal' and the mean "
        "'normal' prompt embedding of an open_clip model (weights from a local file or the Hugging Face cache)",
        reference="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
        license="Apache-2.0",
        tasks=("anomaly",),
        learning="zero-shot",
        defaults={
            "model": "ViT-B-32",
            "weights": "openai",
            "normal_prompts": "|".join(NORMAL_PROMPTS),
            "abnormal_prompts": "|".join(ABNORMAL_PROMPTS),
        },
    )

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if params["weights"] == "none":
            raise WeightsUnavailable(
                "clip-zero-shot compares images with text prompts, which is meaningless with randomly "
                "initialised CLIP weights; pass an open_clip pretrained tag found in the local Hugging Face "
                "cache (weights=openai) or a checkpoint file (weights=/path/to/open_clip_model.safetensors)"
            )
        check_backbone(CLIP_PREFIX + params["model"])
        for key in ("normal_prompts", "abnormal_prompts"):
            if not [t for t in params[key].split("|") if t.strip()]:
                raise ParameterError(f"method clip-zero-shot: {key} is empty; give '|'-separated prompts")
        resolve_weights(CLIP_PREFIX + params["model"], params["weights"])

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        import open_clip

        p = self.params
        model, self.weights_info = load_clip(p["model"], p["weights"], ctx.seed)
        self.model = model.to(ctx.device)
        self.encoder = ClipImageEncoder(model.visual)
        tokenizer = open_clip.get_tokenizer(p["model"])
        with torch.inference_mode():
            self.text = torch.stack(
                [
                    self._prompt_embedding(tokenizer, p[key], ctx.device)
                    for key in ("normal_prompts", "abnormal_prompts")
                ]
            )
        ctx.log.info("prompt embeddings ready (%s, weights %s)", p["model"], self.weights_info.id)

    def _prompt_embedding(self, tokenizer, prompts: str, device: torch.device) -> torch.Tensor:
        texts = [t.strip() for t in prompts.split("|") if t.strip()]  # not empty: see check_params
        embeddings = torch.nn.functional.normalize(self.model.encode_text(tokenizer(texts).to(device)).float(), dim=-1)
        return torch.nn.functional.normalize(embeddings.mean(0), dim=-1)

    def predict(self, batch: torch.Tensor) -> Prediction:
        x = to_backbone_input(batch.to(self.text.device), CLIP_MEAN, CLIP_STD)
        image = self.encoder(x)[0].flatten(1)
        similarity = image @ self.text.T
        return Prediction(scores=(similarity[:, 1] - similarity[:, 0]).cpu())

    def weights(self) -> WeightsInfo:
        return self.weights_info

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.encoder]
