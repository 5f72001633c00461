"""The few- and zero-shot methods (winclip, anomalydino) and torchxrayvision's autoencoder
(xrv-ae), on tiny models saved locally: no real CLIP, DINOv2 or autoencoder weights are
reachable in tests."""

import logging

import numpy as np
import pytest
import torch
from conftest import TINY_CLIP as TINY

from harness.api.protocol import FitContext, ImageBatches
from harness.api.registry import create_method
from harness.components.fewshot import reference_images
from harness.core.errors import ParameterError, WeightsUnavailable
from harness.run.runner import bench
from methods.winclip import GRID, _harmonic_map, _mean_map, window_boxes

CPU = torch.device("cpu")


def _batches(images: torch.Tensor) -> ImageBatches:
    """Images in [0, 1] as the harness batches them (stored as 0-255 values)."""
    return ImageBatches(images * 255, torch.zeros(len(images), dtype=torch.long), 4, CPU)


def _context(tmp_path) -> FitContext:
    return FitContext(seed=0, device=CPU, cache_dir=tmp_path, log=logging.getLogger("test"), resolution=64)


def test_reference_images_are_a_seeded_draw_or_all_of_them():
    images = torch.arange(20.0).view(20, 1, 1, 1) / 255
    torch.testing.assert_close(reference_images(_batches(images), 0, seed=0), images)
    a, b = (reference_images(_batches(images), 5, seed=s) for s in (1, 1))
    assert torch.equal(a, b) and len(a) == 5
    assert a.flatten().tolist() == sorted(a.flatten().tolist())  # in training order
    assert not torch.equal(a, reference_images(_batches(images), 5, seed=2))


def test_windows_cover_the_grid_and_aggregate_as_defined():
    boxes = window_boxes()
    assert [len(b) for b in boxes] == [9, 25]
    rng = np.random.default_rng(0)
    values = [torch.from_numpy(rng.uniform(0.1, 1.0, (2, len(b)))).float() for b in boxes]
    harmonic, mean = _harmonic_map(values).numpy(), _mean_map(values).numpy()
    for row in range(GRID):  # an independent per-cell computation
        for col in range(GRID):
            covering = [
                values[s][:, i].numpy()
                for s, scale in enumerate(boxes)
                for i, (top, left, side) in enumerate(scale)
                if top <= row < top + side and left <= col < left + side
            ]
            assert covering, (row, col)
            stacked = np.stack(covering)
            np.testing.assert_allclose(harmonic[:, row, col], len(stacked) / (1 / stacked).sum(0), rtol=1e-5)
            np.testing.assert_allclose(mean[:, row, col], stacked.mean(0), rtol=1e-5)


@pytest.mark.parametrize("mode", ["zero+few", "zero", "few"])
def test_winclip_runs_every_mode_with_maps(tiny_board, tmp_path, tiny_clip, mode):
    params = {"model": TINY, "weights": tiny_clip, "mode": mode, "shots": 4}
    result = bench("winclip", tiny_board, params=params, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert result.weights_id.endswith("tiny_clip.pt") and result.maps_bytes > 0
    assert np.isfinite(result.metrics.query("metric == 'auroc' and slice == 'all'")["value"]).all()


def test_winclip_few_shot_distance_is_zero_on_a_reference_image(tmp_path, tiny_clip):
    method = create_method("winclip", {"model": TINY, "weights": tiny_clip, "mode": "few", "smoothing_sigma": 0})
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    method.fit(_batches(images), _batches(images), _context(tmp_path))
    prediction = method.predict(torch.cat([images[:1], 1 - images[:1]]))
    assert prediction.scores[0] == pytest.approx(0.0, abs=1e-5) and prediction.scores[1] > 1e-4
    assert prediction.maps.shape == (2, 64, 64)


def test_winclip_refuses_what_cannot_work(tiny_clip):
    with pytest.raises(WeightsUnavailable, match="prompts are meaningless"):
        create_method("winclip", {"model": TINY, "weights": "none"})
    create_method("winclip", {"model": TINY, "weights": "none", "mode": "few"})  # the window memory needs none
    with pytest.raises(ParameterError, match="'biomedclip' has no text tower"):
        create_method("winclip", {"model": "biomedclip", "weights": tiny_clip})
    with pytest.raises(ParameterError, match="open_clip has no model"):
        create_method("winclip", {"model": "ViT-Q-99", "weights": tiny_clip})


def test_anomalydino_scores_a_reference_image_zero_and_keeps_only_its_shots(tmp_path):
    method = create_method("anomalydino", {"image_size": 56, "shots": 2, "smoothing_sigma": 0})
    images = torch.rand(5, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    method.fit(_batches(images), _batches(images), _context(tmp_path))
    assert len(method.memory) == 2 * (56 // 14) ** 2  # two reference images of 4 x 4 patch tokens
    kept = reference_images(_batches(images), 2, seed=0)
    prediction = method.predict(torch.cat([kept[:1], 1 - kept[:1]]))
    assert prediction.scores[0] == pytest.approx(0.0, abs=1e-5) and prediction.scores[1] > 1e-4
    assert prediction.maps.shape == (2, 64, 64)


def test_anomalydino_runs_on_the_board(tiny_board, tmp_path):
    params = {"image_size": 56, "shots": 4}
    result = bench("anomalydino", tiny_board, params=params, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert result.maps_bytes > 0


@pytest.fixture(scope="module")
def autoencoder_file(tmp_path_factory) -> str:
    import torchxrayvision as xrv

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ae") / "ae.pt"
    torch.save(xrv.autoencoders.ResNetAE101().state_dict(), path)
    return str(path)


def test_xrv_ae_reconstructs_in_its_range_and_maps_the_residual(tmp_path, autoencoder_file):
    method = create_method("xrv-ae", {"weights": autoencoder_file})
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    method.fit(_batches(images), _batches(images), _context(tmp_path))
    seen = {}
    method.model.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0], out=out["out"]))
    prediction = method.predict(images)
    assert seen["x"].shape == (2, 1, 224, 224) and -1024 <= seen["x"].min() < seen["x"].max() <= 1024
    back = ((seen["out"] + 1024) / 2048).clamp(0, 1)
    x = (seen["x"] + 1024) / 2048
    torch.testing.assert_close(prediction.maps, ((x - back) ** 2)[:, 0])
    torch.testing.assert_close(prediction.scores, prediction.maps.mean(dim=(1, 2)))
    assert method.weights().card == "xrv-resnet-ae-101-elastic"


def test_xrv_ae_refuses_random_weights_and_says_where_the_published_file_goes(tmp_path, monkeypatch):
    with pytest.raises(WeightsUnavailable, match="meaningless"):
        create_method("xrv-ae", {"weights": "none"})
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match=r"nihpcrsnamimic_ch-resnet101-2-ae-test2-elastic-e250\.pt"):
        create_method("xrv-ae", {})
