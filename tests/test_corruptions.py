import numpy as np
import pytest
import torch

from harness.boards.files import load_board
from harness.core.errors import XRBenchError
from harness.data.corruptions import CORRUPTIONS, apply, image_seed

IDS = [f"img{i}" for i in range(6)]


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(6, 1, 64, 64, generator=g), 5, 1, 2)
    return (40 + 170 * smooth).round().to(torch.uint8)


def test_the_default_board_uses_every_registered_corruption_with_three_severities():
    board = load_board("synth-cxr-ad")
    assert set(board.corruptions) == set(CORRUPTIONS)
    assert all(len(levels) == 3 for levels in board.corruptions.values())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_deterministic_and_independent_of_batching(name, images):
    levels = load_board("synth-cxr-ad").corruptions[name]
    whole = apply(name, images, levels[1], IDS, board_seed=0, severity=2)
    again = apply(name, images.clone(), levels[1], IDS, board_seed=0, severity=2)
    halves = torch.cat(
        [apply(name, images[:3], levels[1], IDS[:3], 0, 2), apply(name, images[3:], levels[1], IDS[3:], 0, 2)]
    )
    assert whole.dtype == torch.uint8 and whole.shape == images.shape
    assert whole.numpy().tobytes() == again.numpy().tobytes() == halves.numpy().tobytes()


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_changes_the_image_more_at_higher_severity(name, images):
    levels = load_board("synth-cxr-ad").corruptions[name]
    changes = []
    for severity, level in enumerate(levels, start=1):
        out = apply(name, images, level, IDS, board_seed=0, severity=severity)
        changes.append(float((out.double() - images.double()).abs().mean()))
    assert changes[0] > 0, f"{name} severity 1 left the images unchanged"
    assert changes[0] < changes[1] < changes[2], f"{name}: {changes}"


def test_seeds_depend_on_every_part_of_the_key():
    base = image_seed(0, "a", "jpeg", 1)
    assert (
        len(
            {
                base,
                image_seed(1, "a", "jpeg", 1),
                image_seed(0, "b", "jpeg", 1),
                image_seed(0, "a", "gaussian_noise", 1),
                image_seed(0, "a", "jpeg", 2),
            }
        )
        == 5
    )


def test_global_random_state_does_not_matter(images):
    torch.manual_seed(1)
    np.random.seed(1)
    a = apply("gaussian_noise", images, 25, IDS, 0, 2)
    torch.manual_seed(2)
    np.random.seed(2)
    assert torch.equal(a, apply("gaussian_noise", images, 25, IDS, 0, 2))


def test_unknown_corruption_lists_the_known_ones(images):
    with pytest.raises(XRBenchError, match="gaussian_blur"):
        apply("fog", images, 1, IDS, 0, 1)


def test_every_method_reads_the_same_cached_corrupted_bytes(tiny_board):
    from harness.boards.files import load_board
    from harness.data.loading import load_board_data
    from harness.data.stress import corrupted_conditions, corrupted_file, corrupted_folder

    board = load_board(tiny_board)
    data = load_board_data(board)
    test = data.splits["test"]
    ids = test.meta["image_id"].tolist()
    first = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    second = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    assert [(c.name, c.severity) for c in first] == [(c.name, c.severity) for c in second]
    assert all(a.images.numpy().tobytes() == b.images.numpy().tobytes() for a, b in zip(first, second, strict=True))
    # A damaged cache file is detected by its hash and rebuilt with the same bytes.
    cached = corrupted_file(corrupted_folder(board, data.dataset_sha256), "jpeg", 1, board.corruptions["jpeg"][0])
    assert cached.is_file() and cached.name == "jpeg-1-70.npy"
    original = cached.read_bytes()
    cached.write_bytes(original[:-16] + bytes(16))
    third = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    assert cached.read_bytes() == original
    assert all(a.images.numpy().tobytes() == c.images.numpy().tobytes() for a, c in zip(first, third, strict=True))


def test_gaussian_noise_has_the_variance_the_board_names():
    flat = torch.full((8, 1, 64, 64), 128, dtype=torch.uint8)  # no clipping at 0 or 255
    for variance in (10, 50):
        out = apply("gaussian_noise", flat, variance, [f"i{k}" for k in range(8)], 0, 1).double() - 128
        # rounding to integers adds 1/12 to the variance of continuous noise
        assert out.var().item() == pytest.approx(variance + 1 / 12, rel=0.05)
        assert abs(out.mean().item()) < 0.1


def test_jpeg_is_pillow_at_the_board_quality(images):
    import io

    from PIL import Image

    out = apply("jpeg", images, 30, IDS, 0, 1)
    for i in range(len(images)):
        buffer = io.BytesIO()
        Image.fromarray(images[i, 0].numpy()).save(buffer, format="JPEG", quality=30)
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
        assert np.array_equal(out[i, 0].numpy(), expected)


@pytest.mark.parametrize("kernel", [3, 9])
def test_gaussian_blur_uses_the_named_kernel_size_and_opencv_sigma(images, kernel):
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = np.arange(kernel) - kernel // 2
    weights = np.exp(-(x**2) / (2 * sigma**2))
    weights /= weights.sum()
    pad = kernel // 2
    out = apply("gaussian_blur", images, kernel, IDS, 0, 1).numpy()[:, 0].astype(int)
    for i, image in enumerate(images.numpy()[:, 0].astype(np.float64)):
        padded = np.pad(image, pad, mode="reflect")
        rows = sum(w * padded[:, k : k + image.shape[1]] for k, w in enumerate(weights))
        blurred = sum(w * rows[k : k + image.shape[0], :] for k, w in enumerate(weights))
        expected = np.clip(np.round(blurred), 0, 255).astype(int)
        assert np.abs(out[i] - expected).max() <= 1 and (out[i] == expected).mean() > 0.99


# --- the same bytes on every x86-64 machine ---------------------------------------------------

RENDER = """
import hashlib, sys
import numpy as np, torch
sys.path.insert(0, {root!r})
from harness.boards.files import load_board
from harness.data.corruptions import CORRUPTIONS, apply
g = torch.Generator().manual_seed(0)
smooth = torch.nn.functional.avg_pool2d(torch.rand(64, 1, 128, 128, generator=g, dtype=torch.float64), 5, 1, 2)
images = (40 + 170 * smooth).round().to(torch.uint8)
board = load_board("synth-cxr-ad")
for name in sorted(CORRUPTIONS):
    for severity, level in enumerate(board.corruptions[name], 1):
        out = apply(name, images, level, [f"i{{k}}" for k in range(64)], 0, severity)
        print(name, severity, hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


def _render(env_extra: dict) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", RENDER.format(root=root)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_corrupted_images_are_the_same_bytes_whatever_vector_width_the_libraries_use():
    """numpy limited to its x86-64-v2 kernels and torch to its scalar ones render what the
    widest kernels of this machine render (the torch resampling this replaced did not, at 64 images of 128 px)."""
    widest = _render({})
    narrowest = _render({"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4", "ATEN_CPU_CAPABILITY": "default"})
    assert widest == narrowest and len(widest.splitlines()) == 3 * len(CORRUPTIONS)


def test_series_exp_and_log_match_the_math_library():
    from harness.data.corruptions import exp, log

    x = np.linspace(-40, 5, 20001)
    assert np.abs(exp(x) / np.exp(x) - 1).max() < 1e-14
    y = np.geomspace(1e-12, 1, 20001)
    assert np.abs(log(y) - np.log(y)).max() < 1e-13


def test_resolution_loss_matches_antialiased_bilinear_resampling(images):
    """Against torch's float resampling (down antialiased, up bilinear), an independent path."""
    import torch.nn.functional as F

    for scale in (0.75, 0.5, 0.25):
        out = apply("resolution_loss", images, scale, IDS, 0, 1).double()
        small = F.interpolate(images.double(), scale_factor=scale, mode="bilinear", antialias=True)
        expected = F.interpolate(small, size=images.shape[-2:], mode="bilinear").round().clamp(0, 255)
        assert (out - expected).abs().max() <= 2 and (out - expected).abs().mean() < 0.2, scale


def test_gamma_window_is_the_power_law_of_its_drawn_gamma_and_level(images):
    from harness.data.corruptions import exp, uniform

    strength = 0.4
    out = apply("gamma_window", images, strength, IDS, 0, 2).numpy()[:, 0].astype(int)
    for k, image_id in enumerate(IDS):
        u = uniform(image_seed(0, image_id, "gamma_window", 2), (2,)) * 2 - 1
        gamma = float(exp(np.array(strength * np.sign(u[0]) * (0.5 + 0.5 * abs(u[0])))))
        level = strength / 4 * u[1]
        expected = np.clip(np.rint(((images[k, 0].numpy() / 255.0) ** gamma - level) * 255), 0, 255)
        assert np.abs(out[k] - expected).max() <= 1 and (out[k] == expected).mean() > 0.99


def test_quantum_noise_counts_have_poisson_mean_and_variance():
    grey = 128
    flat = torch.full((8, 1, 64, 64), grey, dtype=torch.uint8)
    dose, photons = 0.25, 2000.0
    out = apply("quantum_noise", flat, dose, [f"i{k}" for k in range(8)], 0, 1).double().numpy()
    expected = (1 - 0.95 * grey / 255) * photons * dose
    counts = (1 - out * 0.95 / 255) * photons * dose  # back from grey levels (quantised to 1/255)
    assert counts.mean() == pytest.approx(expected, rel=0.01)
    assert counts.var() == pytest.approx(expected, rel=0.1)


def test_a_corrupted_set_other_than_the_frozen_one_is_refused_with_both_hashes(tiny_board):
    import dataclasses

    from harness.boards.files import load_board
    from harness.core.errors import DataIntegrityError
    from harness.data.loading import load_board_data
    from harness.data.stress import corrupted_conditions, stress_sha256

    board = load_board(tiny_board)
    data = load_board_data(board)
    test = data.splits["test"]
    ids = test.meta["image_id"].tolist()
    rendered = stress_sha256(corrupted_conditions(board, test.images, ids, data.dataset_sha256))
    frozen = dataclasses.replace(board, stress_sha256=rendered)
    assert stress_sha256(corrupted_conditions(frozen, test.images, ids, data.dataset_sha256)) == rendered
    other = dataclasses.replace(board, stress_sha256="0" * 64)
    with pytest.raises(DataIntegrityError, match=f"hashes to {rendered}, the board file froze 0000"):
        corrupted_conditions(other, test.images, ids, data.dataset_sha256)
