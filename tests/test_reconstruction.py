"""Reconstruction and generative methods and their shared training loop: the formulas against
computations written out here, training that learns and repeats itself byte for byte, and
what a run stores of it."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import publish

from harness.api.params import Params
from harness.api.protocol import FitContext, ImageBatches
from harness.api.registry import get_method
from harness.components.pretrain.mae import patchify
from harness.components.reconstruction import residual_map
from harness.components.training import SingleLoss, TrainConfig, train_cached
from harness.conformance.checks import fit_and_predict
from harness.results.store import ResultStore
from harness.run.runner import bench
from methods.ae import ConvAE
from methods.ddpm_recon import TRAIN_TIMESTEPS, denoising_steps, noise_to
from methods.flowdiff_normalizer import normalizer_map, top_share_mean
from methods.mae_recon import mask_groups, unpatchify
from methods.memae import MemAENet, address, memae_loss
from methods.reversed_ae import embedding_loss, kl
from methods.vae import VAENet, vae_loss


def _ctx(seed: int = 0) -> FitContext:
    return FitContext(seed, torch.device("cpu"), None, logging.getLogger("test"), data_fingerprint="test")


def _conv(image: np.ndarray, kernel: np.ndarray, pad_mode: str) -> np.ndarray:
    """3x3 cross-correlation with the given border padding, written out."""
    padded = np.pad(image, 1, mode=pad_mode)
    h, w = image.shape
    return sum(kernel[i, j] * padded[i : i + h, j : j + w] for i in range(3) for j in range(3))


def test_the_normalizer_map_is_its_formula_computed_by_hand():
    rng = np.random.default_rng(0)
    x, g = rng.random((7, 9)), rng.random((7, 9))
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8  # normalised: divided by the sum of |weights|
    laplace = np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]]) / 16
    edge = sum(np.abs(_conv(x, k, "edge") - _conv(g, k, "edge")) for k in (sobel_x, sobel_x.T))
    detail = np.abs(_conv(x, laplace, "reflect") - _conv(g, laplace, "reflect"))
    expected = np.abs(x - g) + 0.5 * edge + 0.3 * detail
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float64)[None, None]  # noqa: E731
    got = normalizer_map(as_tensor(x), as_tensor(g), 0.5, 0.3)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_top_share_mean_averages_the_highest_pixels():
    maps = torch.arange(200, dtype=torch.float64).reshape(2, 10, 10)
    np.testing.assert_allclose(top_share_mean(maps, 0.05).numpy(), [np.mean(range(95, 100)), np.mean(range(195, 200))])
    assert top_share_mean(maps, 0.001).tolist() == [99.0, 199.0]  # at least one pixel


def test_ddpm_noising_at_t_star_is_the_closed_form():
    from diffusers import DDPMScheduler

    x0, noise = torch.rand(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    betas = np.linspace(1e-4, 0.02, TRAIN_TIMESTEPS)  # DDPM's linear schedule
    for t in (1, 250, 999):
        alpha_bar = np.prod(1 - betas[: t + 1])
        expected = np.sqrt(alpha_bar) * x0.numpy() + np.sqrt(1 - alpha_bar) * noise.numpy()
        got = noise_to(DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS), x0, noise, t)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)  # float32 coefficients
    timesteps = [int(t) for t in denoising_steps(250, 10).timesteps if t <= 250]
    assert timesteps == list(range(250, -1, -25))


def test_an_autoencoder_learns_to_reconstruct_a_constant_image(monkeypatch, tmp_path):
    monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path))
    images = torch.full((16, 1, 32, 32), 0.6 * 255)
    batches = ImageBatches(images, torch.zeros(16, dtype=torch.long), 8, torch.device("cpu"))
    torch.manual_seed(0)
    model = ConvAE(32, 8)
    rmse = lambda m: ((m(images[:2] / 255) - 0.6) ** 2).mean().sqrt().item()  # noqa: E731
    with torch.no_grad():
        before = rmse(model.eval())
    objective = SingleLoss(model, lambda x, *_: ((model(x) - x) ** 2).mean(), lr=3e-3)
    trained = train_cached("ae-test", Params(), objective, batches, TrainConfig(epochs=60), _ctx())
    with torch.no_grad():
        error = rmse(trained.modules)
    assert error < 0.01 and error < before / 10
    assert len(trained.record["history"]) == 60 and trained.record["history"][-1]["loss"] < 1e-3


@pytest.mark.parametrize("name", ["ae", "reversed-ae", "ddpm-recon", "vae", "memae"])
def test_training_is_byte_identical_with_a_seed(monkeypatch, tmp_path, tiny_board, name):
    cls = get_method(name)
    runs = []
    for cache in ("a", "b"):  # two empty caches: each trains
        monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path / cache))
        run = fit_and_predict(cls, tiny_board, dict(cls.card.smoke_params), 0)
        method, scores, maps = run.method, run.scores, run.maps
        runs.append((method.weights().sha256, scores.tobytes(), maps.tobytes()))
    assert runs[0] == runs[1]


def test_checkpoints_are_keyed_by_what_changes_the_weights(monkeypatch, tmp_path, tiny_board):
    monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path))
    cls = get_method("ae")
    weights = []
    for params in ({}, {"lr": 2e-3}, {}):
        method = fit_and_predict(cls, tiny_board, {**cls.card.smoke_params, **params}, 0).method
        weights.append(method.weights().sha256)
    assert weights[0] == weights[2] != weights[1]
    assert len(list((tmp_path / "train").glob("ae-*.pth"))) == 2  # the third fit loaded the first's


def test_residual_maps_and_the_reversed_autoencoder_losses_by_hand():
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(residual_map(x, y, "l2"), ((x - y) ** 2)[:, 0])
    torch.testing.assert_close(residual_map(x, y, "l1"), (x - y).abs()[:, 0])
    assert residual_map(x, x, "ssim").abs().max() < 1e-5  # 1 - SSIM of an image with itself
    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    assert embedding_loss(features, features).item() == pytest.approx(0, abs=1e-6)
    shifted = [f + 1 for f in features]
    expected = sum(0.5 + (1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))).mean().item()
                   for a, b in zip(features, shifted, strict=True))  # fmt: skip
    assert embedding_loss(features, shifted).item() == pytest.approx(expected, rel=1e-5)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, np.log(2.0)]])
    assert kl(mu, logvar).item() == pytest.approx(0.5 * (1 + 0) + 0.5 * (2 - 1 - np.log(2.0)))


def test_mae_mask_draws_mask_every_patch_and_patches_fold_back():
    groups = mask_groups(64, 4)
    assert sorted(torch.cat(groups).tolist()) == list(range(64)) and {len(g) for g in groups} == {16}
    images = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(unpatchify(patchify(images, 8), 8, 32), images)


def test_a_run_stores_training_history_and_the_normalizers_identity_diagnostics(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    for name in ("ae", "flowdiff-normalizer"):
        params = dict(get_method(name).card.smoke_params)
        bench(name, tiny_board, params=params, db=db, corruptions=False)
    with ResultStore(db) as store:
        rows = store.query("SELECT method, diagnostics, weights_sha256 FROM runs ORDER BY method")
    ae, flow = (json.loads(d) for d in rows["diagnostics"])
    assert [e["epoch"] for e in ae["training"]] == [1, 2]
    identity = flow["identity_on_normal_validation"]
    assert identity["images"] == 10 and 0 < identity["psnr_db"] < 100 and -1 <= identity["ssim"] <= 1
    assert len(flow["training"]["vae"]) == 1 and len(flow["training"]["unet"]) == 2
    assert rows["weights_sha256"].str.fullmatch("[0-9a-f]{64}").all()
    publish(db, tmp_path / "site")
    pages = {p.name: p.read_text() for p in (tmp_path / "site" / "runs").glob("*.html")}
    shown = [text for text in pages.values() if "identity_on_normal_validation" in text]
    assert len(shown) == 1 and "psnr_db" in shown[0] and "flowdiff-normalizer" in shown[0]


def test_memae_addressing_and_loss_by_hand():
    """Softmax over the memory, hard shrinkage (w - s)+ w / |w - s|, renormalised; the loss adds
    the weights' entropy."""
    z, memory = torch.tensor([[2.0, 0.0], [0.0, 0.1]]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    logits = z.numpy() @ memory.numpy().T
    w = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    kept = np.maximum(w - 0.3, 0) * w / (np.abs(w - 0.3) + 1e-12)
    expected = kept / kept.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(address(z, memory, 0.3).numpy(), expected, rtol=1e-6)
    assert (address(z, memory, 0.3)[0] > 0).tolist() == [True, False, False]  # one item survives
    torch.manual_seed(0)
    model = MemAENet(32, 4, 5, 0.0025).eval()
    x = torch.rand(2, 1, 32, 32)
    x_hat, weights = model.rebuild(x)
    entropy = -(weights * (weights + 1e-12).log()).sum(dim=1).mean()
    expected_loss = ((x - x_hat) ** 2).mean() + 0.5 * entropy
    torch.testing.assert_close(memae_loss(model, x, "l2", 0.5), expected_loss)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


def test_vae_loss_is_the_residual_plus_the_weighted_kl_per_pixel():
    torch.manual_seed(0)
    model = VAENet(32, 3).eval()
    x = torch.rand(2, 1, 32, 32)
    mu, logvar, _ = model.encoder(x)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    x_hat = model.decoder(mu + noise * (0.5 * logvar).exp())
    expected = ((x - x_hat) ** 2).mean() + 2.0 * kl(mu, logvar).mean() / (32 * 32)
    torch.testing.assert_close(vae_loss(model, x, torch.Generator().manual_seed(7), "l2", 2.0), expected)
    torch.testing.assert_close(model(x), model.decoder(mu))  # prediction decodes the posterior mean
