import pytest
import timm
import torch

from harness.backbones import FeatureExtractor, create_backbone, resolve_weights
from harness.errors import WeightsUnavailable


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
