"""In-harness self-supervised pretraining: deterministic, cached by everything that changes it."""

import logging
from dataclasses import replace

import pytest
import torch

from harness.api.protocol import FitContext, ImageBatches
from harness.components.augment import cutpaste, gaussian_noise, random_view
from harness.components.pretrain import pretraining as pretrain
from harness.components.pretrain.pretraining import PretrainConfig, default_config, pretrained_weights, train_model
from harness.core.fingerprints import state_sha256


def _train(n: int = 16, size: int = 32) -> ImageBatches:
    images = (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return ImageBatches(images, torch.zeros(n, dtype=torch.long), 8, torch.device("cpu"))


def _ctx(seed: int = 0, fingerprint: str = "board-a") -> FitContext:
    return FitContext(
        seed=seed,
        device=torch.device("cpu"),
        cache_dir=None,
        log=logging.getLogger("test"),
        resolution=32,
        data_fingerprint=fingerprint,
    )


def _small(algorithm: str, arch: str = "resnet18") -> PretrainConfig:
    return replace(default_config(algorithm, arch), epochs=1, batch_size=8, resolution=0)


@pytest.mark.parametrize("algorithm", ["simclr", "moco", "cutpaste"])
def test_training_is_deterministic_and_changes_the_weights(algorithm):
    first, history = train_model(_small(algorithm), _train(), _ctx())
    second, _ = train_model(_small(algorithm), _train(), _ctx())
    untrained = pretrain.create_trainable("resnet18", "none", 0, 32)
    a, b, c = (state_sha256(m) for m in (first, second, untrained))
    assert a == b and a != c  # every tensor of the state, buffers included
    changed = [k for k, v in first.state_dict().items() if not torch.equal(v, untrained.state_dict()[k])]
    assert "conv1.weight" in changed and "layer4.1.conv2.weight" in changed
    assert len(history) == 1 and history[0] > 0


def test_mae_trains_a_vit_and_rejects_models_without_a_class_token():
    config = replace(default_config("mae", "vit_tiny_patch16_224"), epochs=1, batch_size=8)
    model, history = train_model(config, _train(size=32), _ctx())
    assert history[0] > 0 and model.pos_embed.shape[1] == 1 + 4
    no_class_token = pretrain.create_trainable("vit_medium_patch16_gap_256", "none", 0, 32)
    with pytest.raises(ValueError, match="class token"):
        pretrain.mae.mae(no_class_token, config)


def test_checkpoints_are_cached_by_config_seed_and_data(monkeypatch):
    calls = []
    real = pretrain.train_model
    monkeypatch.setattr(pretrain, "train_model", lambda *a: calls.append(1) or real(*a))
    config = _small("moco")
    first = pretrained_weights(config, _train(), _ctx())
    assert pretrained_weights(config, _train(), _ctx()) == first and len(calls) == 1
    assert pretrained_weights(config, _train(), _ctx(seed=1)) != first
    assert pretrained_weights(config, _train(), _ctx(fingerprint="board-b")) != first
    assert pretrained_weights(replace(config, lr=1e-4), _train(), _ctx()) != first
    assert len(calls) == 4
    assert first.with_suffix(".json").is_file()


def test_augmentations_are_seeded_and_keep_the_value_range():
    images = torch.rand(4, 1, 32, 32)
    a = random_view(images, torch.Generator().manual_seed(1))
    b = random_view(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, random_view(images, torch.Generator().manual_seed(2)))
    pasted = cutpaste(images, torch.Generator().manual_seed(3))
    changed = (pasted != images)[:, 0]
    assert changed.any(dim=(1, 2)).all()  # every image got a patch
    rows, cols = changed[0].any(1).nonzero(), changed[0].any(0).nonzero()
    box = changed[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert changed[0].sum() == box.sum()  # one rectangle (pixels inside it may be unchanged)
    assert changed[0].sum() < 0.5 * 32 * 32


def test_gaussian_noise_is_seeded_has_its_standard_deviation_and_stays_in_range():
    grey = torch.full((8, 1, 64, 64), 0.5)
    noisy = gaussian_noise(grey, torch.Generator().manual_seed(0), 0.05)
    assert torch.equal(noisy, gaussian_noise(grey, torch.Generator().manual_seed(0), 0.05))
    assert abs(float((noisy - grey).std()) - 0.05) < 0.002 and abs(float((noisy - grey).mean())) < 0.002
    clipped = gaussian_noise(torch.ones(2, 1, 16, 16), torch.Generator().manual_seed(1), 0.5)
    assert clipped.max() <= 1 and clipped.min() >= 0 and clipped.min() < 0.9
