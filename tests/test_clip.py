"""open_clip encoders and CLIP zero-shot scoring, on a tiny randomly initialised model saved
to a file (no real CLIP weights are reachable in tests)."""

import pytest
import torch
from conftest import TINY_CLIP as TINY

from harness.components.backbones import FeatureExtractor
from harness.core.errors import WeightsUnavailable
from harness.run.runner import bench


def test_clip_image_encoder_as_backbone(tiny_clip):
    extractor = FeatureExtractor(f"clip:{TINY}", tiny_clip, seed=0, layers="auto", device=torch.device("cpu"))
    (embedding,) = extractor(torch.rand(3, 1, 64, 64))
    assert embedding.shape == (3, 32, 1, 1)
    torch.testing.assert_close(embedding.flatten(1).norm(dim=1), torch.ones(3))
    assert extractor.weights.sha256 and extractor.weights.id.endswith("tiny_clip.pt")


def test_clip_zero_shot_runs_with_weights_from_a_file(tiny_board, tmp_path, tiny_clip):
    params = {"model": TINY, "weights": tiny_clip}
    result = bench(
        "clip-zero-shot", tiny_board, params=params, db=tmp_path / "r.duckdb", device="cpu", corruptions=False
    )
    assert result.weights_id.endswith("tiny_clip.pt")
    assert "auroc" in set(result.metrics["metric"])


def test_clip_zero_shot_refuses_random_weights_and_explains(tiny_board, tmp_path):
    with pytest.raises(WeightsUnavailable, match="meaningless"):
        bench(
            "clip-zero-shot",
            tiny_board,
            params={"weights": "none"},
            db=tmp_path / "r.duckdb",
            device="cpu",
            corruptions=False,
        )


def test_clip_zero_shot_without_cached_weights_says_how_to_provide_them(tiny_board, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsUnavailable, match="Hugging Face"):
        bench("clip-zero-shot", tiny_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
