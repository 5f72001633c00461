"""Which weights a model starts from, resolved without ever downloading.

`weights` is `none` (seeded random init), `imagenet` (timm's pretrained weights; for CLIP
encoders, written `clip:<open_clip name>`, an open_clip pretrained tag such as `openai` or
`laion2b_s34b_b79k`), looked up in the local Hugging Face cache only, or a path to a weights
file (.safetensors, .pth, .bin). Every resolved file is identified by its SHA-256 and named by
its card in `datasets/backbones.toml`. X-ray backbones take `pretrained` instead of `imagenet`
(see `harness.components.xray_backbones`).
"""

from __future__ import annotations

from pathlib import Path

from harness.api.protocol import WeightsInfo
from harness.components.xray_backbones import is_xray_backbone, weights_info, xray_card, xray_weights_file
from harness.core.errors import WeightsUnavailable
from harness.core.fingerprints import file_sha256

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_PREFIX = "clip:"


def _from_hf_cache(repo: str | None, what: str, hint: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    if repo:
        for filename in WEIGHT_FILES:
            found = try_to_load_from_cache(repo.strip("/"), filename)
            if isinstance(found, str):
                return Path(found)
    where = f"the Hugging Face repository {repo.strip('/')}" if repo else hint
    raise WeightsUnavailable(
        f"{what} are not in the local Hugging Face cache and xrbench does not download at run time. "
        f"On a machine with internet, fetch {where} (for example `huggingface-cli download "
        f"{(repo or '').strip('/') or '<repository>'}`), copy ~/.cache/huggingface to this machine "
        f"(or set HF_HOME), or pass weights=/path/to/weights file."
    )


def _cached_pretrained_file(arch: str, tag: str) -> Path:
    """Find pretrained weights for `arch` (timm, or `clip:` + open_clip name) in the local HF cache."""
    if arch.startswith(CLIP_PREFIX):
        from open_clip.pretrained import get_pretrained_cfg

        name = arch.removeprefix(CLIP_PREFIX)
        cfg = get_pretrained_cfg(name, tag) or {}
        return _from_hf_cache(cfg.get("hf_hub"), f"open_clip weights {name}/{tag}", f"open_clip's {name} {tag}")
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return _from_hf_cache(repo, f"ImageNet weights for {arch}", f"timm's release for {arch}")


def resolve_weights(arch: str, weights: str) -> tuple[Path | None, WeightsInfo]:
    """`none`, a pretrained name (`imagenet` for timm, an open_clip tag for `clip:` encoders)
    looked up in the local Hugging Face cache, or a weights file."""
    if is_xray_backbone(arch):
        card = xray_card(arch)
        path = xray_weights_file(card, weights)
        return path, weights_info(card, path)
    if weights == "none":
        return None, WeightsInfo(card="random-init")
    named = weights == "imagenet" if not arch.startswith(CLIP_PREFIX) else not any(c in weights for c in "/\\.")
    path = _cached_pretrained_file(arch, weights) if named else Path(weights).expanduser()
    if not path.is_file():
        kinds = "none, an open_clip pretrained tag" if arch.startswith(CLIP_PREFIX) else "none, imagenet"
        raise WeightsUnavailable(f"weights file {path} does not exist (weights= takes {kinds} or a file path)")
    card = ("open-clip" if arch.startswith(CLIP_PREFIX) else "imagenet") if named else "weights-file"
    return path, WeightsInfo(id=f"{arch}:{weights if named else path.name}", sha256=file_sha256(path), card=card)


def pretrained_kwargs(path: Path) -> dict:
    """timm arguments that load weights from a local file. `custom_load` is switched off so that
    timm reads .pth/.safetensors/.bin files as state dicts (through the architecture's own
    checkpoint filter, which for example resamples ViT position embeddings) on every timm 1.x,
    instead of the JAX .npz loader some pretrained configurations name."""
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path), "custom_load": path.suffix == ".npz"}}
