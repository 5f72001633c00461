import pytest
import timm
import torch

from harness.components.backbones import FeatureExtractor, create_backbone
from harness.components.weights import resolve_weights
from harness.core.errors import WeightsUnavailable


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, info = create_backbone("resnet18", "none", seed=7, out_indices=(2, 3))
    assert torch.equal(torch.rand(1), expected_next)
    b, _ = create_backbone("resnet18", "none", seed=7, out_indices=(2, 3))
    c, _ = create_backbone("resnet18", "none", seed=8, out_indices=(2, 3))
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert info.id == "none" and info.sha256 is None


def test_imagenet_weights_missing_from_cache_give_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as info:
        resolve_weights("resnet18", "imagenet")
    assert "huggingface" in str(info.value).lower() and "weights=" in str(info.value)


def test_weights_from_a_local_file_are_loaded_and_hashed(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    extractor = FeatureExtractor("resnet18", str(path), seed=99, layers="2,3", device=torch.device("cpu"))
    assert torch.equal(extractor.model.conv1.weight, source.conv1.weight)
    assert extractor.weights.sha256 and len(extractor.weights.sha256) == 64
    maps = extractor(torch.rand(2, 1, 64, 64))
    assert [m.shape[1] for m in maps] == [128, 256]


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        resolve_weights("resnet18", str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize(
    ("arch", "channels"),
    [
        ("resnet50", [512, 1024]),
        ("wide_resnet50_2", [512, 1024]),
        ("densenet121", [512, 1024]),
        ("convnext_tiny", [192, 384]),
        ("vit_small_patch16_224", [384, 384]),
        ("vit_small_patch14_dinov2", [384, 384]),
    ],
)
def test_every_listed_backbone_gives_global_and_patch_features(arch, channels):
    from harness.components.features import global_embedding, patch_features

    extractor = FeatureExtractor(arch, "none", seed=0, layers="auto", device=torch.device("cpu"), resolution=64)
    maps = extractor(torch.rand(2, 1, 64, 64))
    assert [m.shape[1] for m in maps] == channels and all(m.dtype == torch.float32 for m in maps)
    assert global_embedding(maps).shape == (2, sum(channels))
    patches = patch_features(maps)
    assert patches.shape[:2] == (2, sum(channels)) and patches.shape[-1] >= 2


def test_vit_input_is_resized_to_a_multiple_of_the_patch_size():
    from harness.components.backbones import vit_input_size

    assert vit_input_size("vit_small_patch14_dinov2", 128) == 126
    assert vit_input_size("vit_small_patch16_224", 128) == 128
    extractor = FeatureExtractor("vit_small_patch14_dinov2", "none", 0, "auto", torch.device("cpu"), resolution=128)
    assert extractor(torch.rand(1, 1, 128, 128))[0].shape[-2:] == (9, 9)


def test_layers_must_be_auto_or_integers():
    from harness.components.backbones import parse_layers

    assert parse_layers("auto", "convnext_tiny") == (1, 2) and parse_layers("1, 2") == (1, 2)
    with pytest.raises(ValueError, match="auto"):
        parse_layers("layer2")


def test_clip_pretrained_tag_missing_from_cache_gives_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(WeightsUnavailable) as info:
        resolve_weights("clip:ViT-B-32", "openai")
    assert "vit_base_patch32_clip_224.openai" in str(info.value) and "weights=" in str(info.value)
    with pytest.raises(WeightsUnavailable, match="imagenet"):
        resolve_weights("resnet18", "openai")


def test_vit_weights_from_a_file_load_at_another_resolution(tmp_path):
    """A ViT checkpoint saved at 224 px loads into a 128 px board: timm's checkpoint filter
    resamples the position embeddings (and .pth files never go to the JAX .npz loader)."""
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224")
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    extractor = FeatureExtractor("vit_tiny_patch16_224", str(path), 0, "auto", torch.device("cpu"), resolution=128)
    loaded = extractor.model.state_dict()
    assert torch.equal(loaded["model.model.blocks.0.attn.qkv.weight"], source.blocks[0].attn.qkv.weight)
    assert loaded["model.model.pos_embed"].shape[1] == 1 + 8 * 8
