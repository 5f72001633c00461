"""CLIP zero-shot anomaly scoring: how much more an image matches "abnormal" than "normal"
radiograph prompts. Needs real CLIP weights; there is nothing to fit."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


@dataclass(frozen=True)
class ClipZeroShotParams(Params):
    model: str = param("ViT-B-32", weights=False, help="open_clip model name")
    weights: str = param(
        "openai", weights=False, help="an open_clip pretrained tag found in the local Hugging Face cache, or a file"
    )
    normal_prompts: str = param("|".join(NORMAL_PROMPTS), weights=False, help="'|'-separated prompts of normal images")
    abnormal_prompts: str = param(
        "|".join(ABNORMAL_PROMPTS), weights=False, help="'|'-separated prompts of abnormal images"
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
        params=ClipZeroShotParams,
        exceptions={
            "fits": "needs real CLIP weights, which no test can download; tests/test_clip.py runs it on a tiny "
            "CLIP model saved locally",
        },
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
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
