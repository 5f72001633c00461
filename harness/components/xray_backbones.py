"""X-ray-pretrained backbones named by their card in `datasets/backbones.toml`.

`backbone=xrv-densenet121-nih` (or `xrv-resnet50-res512-all`, `rad-dino`, `biomedclip`,
`chexzero`, ...) builds the card's architecture; `weights` is `none` (seeded random
initialisation of that architecture, a control), `pretrained` (the card's published file, found
in the card's folder or the local Hugging Face cache, never downloaded), or a file path. Inputs
are mapped to the range or normalisation the weights were trained with and resized to the
card's input size, so that a grayscale batch in [0, 1] is all a method gives.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.api.protocol import WeightsInfo
from harness.core.errors import ParameterError, WeightsUnavailable
from harness.core.fingerprints import file_sha256
from harness.core.ledger import BackboneCard, load_ledger

PRETRAINED = "pretrained"
XRV_CLASSES = 18  # torchxrayvision's default pathology outputs


def is_xray_backbone(name: str) -> bool:
    return name in load_ledger().xray_backbones()


def xray_card(name: str) -> BackboneCard:
    return load_ledger().card(name)


# --- which file ----------------------------------------------------------------------------


def xray_weights_file(card: BackboneCard, weights: str) -> Path | None:
    """None for `none`, the published file for `pretrained`, else the given path; checked to
    exist (and, where the card records it, to have the published SHA-256)."""
    if weights == "none":
        return None
    path = _published_file(card) if weights == PRETRAINED else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"weights file {path} does not exist (backbone {card.name} takes weights=none, {PRETRAINED} or a file)"
        )
    expected = card.get("sha256")
    if expected and weights == PRETRAINED and file_sha256(path) != expected:
        raise WeightsUnavailable(f"{path}: SHA-256 differs from the {card.name} card's {expected[:12]}…")
    return path


def _published_file(card: BackboneCard) -> Path:
    filename = str(card.get("file", ""))
    if card.get("folder"):
        path = Path(str(card.get("folder"))).expanduser() / filename
        if path.is_file():
            return path
    if card.get("hf_repo"):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(str(card.get("hf_repo")), filename, cache_dir=hf_hub_cache())
        if isinstance(found, str):
            return Path(found)
    where = (
        f"put it at {Path(str(card.get('folder'))) / filename}"
        if card.get("folder")
        else f"`huggingface-cli download {card.get('hf_repo')} {filename}` on a machine with internet and copy "
        "~/.cache/huggingface here (or set HF_HOME)"
        if card.get("hf_repo")
        else "keep it anywhere"
    )
    raise WeightsUnavailable(
        f"the {card.name} weights are not on this machine and xrbench does not download at run time: "
        f"fetch {card.source}, {where}, or pass weights=/path/to/{filename}"
    )


def hf_hub_cache() -> str | None:
    """The Hugging Face cache as the environment names it now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None


def weights_info(card: BackboneCard, path: Path | None) -> WeightsInfo:
    if path is None:
        return WeightsInfo(card="random-init")
    return WeightsInfo(id=f"{card.name}:{path.name}", sha256=file_sha256(path), card=card.name)


# --- reading and loading a state dict ------------------------------------------------------


def read_state(path: Path, trusted_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or a torch file holding a state dict, a {"state_dict": ...}
    checkpoint or (only when `trusted_pickle`: the card's published file) a pickled model."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not trusted_pickle:
                raise
            state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsUnavailable(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path}: holds no state dict of tensors")
    return state


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load `state` into `model` strictly, refusing in one line that names the file and the
    first key that is missing, unexpected or of another shape."""
    own = model.state_dict()
    for key in [*own, *(k for k in state if k not in own)]:
        if key not in state:
            problem = "missing from the file"
        elif key not in own:
            problem = "the model has no such key"
        elif own[key].shape != state[key].shape:
            problem = f"shape {tuple(state[key].shape)} in the file, {tuple(own[key].shape)} in the model"
        else:
            continue
        raise WeightsUnavailable(f"{path} does not fit {what}: first mismatched key {key!r} ({problem})")
    model.load_state_dict(state)


# --- input mapping and feature pyramids ----------------------------------------------------


class XrayBackbone(nn.Module):
    """Maps the extractor's normalised input to what the weights expect and returns the maps
    at `indices`. `FeatureExtractor` normalises with `input_mean`/`input_std`; for a card with an
    input range [a, b] those are chosen so that [0, 1] pixels land on [a, b]."""

    def __init__(self, body: nn.Module, card: BackboneCard, indices: tuple[int, ...], channels: int):
        super().__init__()
        self.body, self.indices, self.channels = body, indices, channels
        self.size = int(card.get("input_size", 224))
        if card.get("input_range"):
            low, high = card.get("input_range")
            self.input_mean = (-low / (high - low),) * 3
            self.input_std = (1 / (high - low),) * 3
        else:
            self.input_mean, self.input_std = tuple(card.get("mean")), tuple(card.get("std"))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.body(x[:, : self.channels], self.indices)


class StagedCNN(nn.Module):
    """A CNN run stage by stage, keeping the outputs of the stages asked for (numbered as timm
    numbers a feature pyramid: 0 at stride 2, 1 at stride 4, ... 4 at stride 32)."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, indices: tuple[int, ...]) -> list[torch.Tensor]:
        wanted = {i % len(self.stages) for i in indices}
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in wanted:
                out.append(x)
            if i >= max(wanted):
                break
        return out


class ViTIntermediates(nn.Module):
    """A timm ViT's token maps after the blocks asked for (negative: from the end)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor, indices: tuple[int, ...]) -> list[torch.Tensor]:
        return self.vit.forward_intermediates(x, indices=list(indices), output_fmt="NCHW", intermediates_only=True)


def torchxrayvision():
    """The torchxrayvision package, or one line saying how to install it."""
    try:
        import torchxrayvision as xrv
    except ImportError:
        raise WeightsUnavailable(
            "torchxrayvision's models need the package: pip install 'xrbench[xray]' (or torchxrayvision)"
        ) from None
    return xrv


def _xrv_densenet(seed: int) -> tuple[nn.Module, nn.Module]:
    xrv = torchxrayvision()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = xrv.models.DenseNet(weights=None, num_classes=XRV_CLASSES)
    f = model.features
    stages = [
        nn.Sequential(f.conv0, f.norm0, f.relu0),
        nn.Sequential(f.pool0, f.denseblock1),
        nn.Sequential(f.transition1, f.denseblock2),
        nn.Sequential(f.transition2, f.denseblock3),
        nn.Sequential(f.transition3, f.denseblock4, f.norm5),
    ]
    return model, StagedCNN(stages)


def _xrv_resnet(seed: int) -> tuple[nn.Module, nn.Module]:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.resnet50(num_classes=XRV_CLASSES, weights=None)
        model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    m = model
    stages = [nn.Sequential(m.conv1, m.bn1, m.relu), nn.Sequential(m.maxpool, m.layer1), m.layer2, m.layer3, m.layer4]
    return model, StagedCNN(stages)


def _timm_vit(arch: str, size: int, seed: int) -> nn.Module:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(arch, pretrained=False, num_classes=0, img_size=size)


def dinov2_hf_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face `Dinov2Model` state dict (RAD-DINO's layout) in timm's ViT key names:
    the separate query/key/value projections are stacked into timm's `qkv`."""
    state = {k.removeprefix("dinov2."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    renames = {
        "embeddings.cls_token": "cls_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    parts = {
        "norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj", "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }  # fmt: skip
    for key, value in state.items():
        if key in renames:
            out[renames[key]] = value
        elif key.startswith("encoder.layer."):
            block, rest = key.removeprefix("encoder.layer.").split(".", 1)
            prefix = f"blocks.{block}."
            if rest.startswith("layer_scale"):
                out[prefix + f"ls{rest[len('layer_scale')]}.gamma"] = value
            elif rest.startswith("attention.attention."):
                continue  # stacked below
            else:
                module, leaf = rest.rsplit(".", 1)
                out[prefix + parts.get(module, module) + "." + leaf] = value
        elif key != "embeddings.mask_token":
            out[key] = value  # reported as unexpected by load_checked
    blocks = {k.split(".")[2] for k in state if k.startswith("encoder.layer.")}
    for block in blocks:
        base = f"encoder.layer.{block}.attention.attention."
        for leaf in ("weight", "bias"):
            pieces = [state.get(f"{base}{p}.{leaf}") for p in ("query", "key", "value")]
            if all(p is not None for p in pieces):
                out[f"blocks.{block}.attn.qkv.{leaf}"] = torch.cat(pieces)
    return out


def create_xray_backbone(name: str, weights: str, seed: int, indices: tuple[int, ...]) -> tuple[nn.Module, WeightsInfo]:
    """The frozen, eval-mode feature pyramid of X-ray backbone `name` (see the module docstring)."""
    card = xray_card(name)
    path = xray_weights_file(card, weights)
    trusted = path is not None and path.name == card.get("file")
    if card.loader == "xrv-densenet":
        model, body, channels = *_xrv_densenet(seed), 1
    elif card.loader == "xrv-resnet":
        model, body, channels = *_xrv_resnet(seed), 1
    elif card.loader in ("dinov2-hf", "clip-vision"):
        arch = "vit_base_patch14_dinov2" if card.loader == "dinov2-hf" else "vit_base_patch16_224"
        model = _timm_vit(arch, int(card.get("input_size", 224)), seed)
        body, channels = ViTIntermediates(model), 3
    elif card.loader == "xrv-ae":
        raise ParameterError(f"backbone={name!r} is an autoencoder, not a feature extractor; run method xrv-ae")
    else:
        raise ParameterError(f"backbone={name!r}: an open_clip model; build it with load_xray_clip")
    if path is not None:
        state = read_state(path, trusted_pickle=trusted)
        if card.loader == "dinov2-hf":
            state = dinov2_hf_to_timm(state)
        elif card.loader == "clip-vision":
            state = {k.removeprefix("visual.trunk."): v for k, v in state.items() if k.startswith("visual.trunk.")}
        elif card.loader == "xrv-densenet":
            state.pop("op_threshs", None)
        load_checked(model, state, path, f"{name} ({card.architecture})")
    backbone = XrayBackbone(body, card, indices, channels)
    return backbone.eval().requires_grad_(False), weights_info(card, path)


def load_xray_clip(name: str, weights: str, seed: int) -> tuple[nn.Module, WeightsInfo]:
    """The whole open_clip model of a `clip-model` card (CheXzero), for zero-shot scoring."""
    import open_clip

    card = xray_card(name)
    if card.loader != "clip-model":
        raise ParameterError(
            f"backbone {name!r} has no text tower xrbench can load (an open_clip model card is needed)"
        )
    path = xray_weights_file(card, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(str(card.get("open_clip_model")))
    if path is not None:
        load_checked(model, read_state(path, trusted_pickle=path.name == card.get("file")), path, name)
    return model.eval().requires_grad_(False), weights_info(card, path)
