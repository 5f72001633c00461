import numpy as np
import pytest
import torch

from harness.boards import load_board
from harness.corruptions import CORRUPTIONS, apply, image_seed
from harness.errors import XRBenchError

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
    from harness.boards import load_board
    from harness.runner import load_board_data
    from harness.stress import corrupted_conditions

    board = load_board(tiny_board)
    data = load_board_data(board)
    test = data.splits["test"]
    ids = test.meta["image_id"].tolist()
    first = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    second = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    assert [(c.name, c.severity) for c in first] == [(c.name, c.severity) for c in second]
    assert all(a.images.numpy().tobytes() == b.images.numpy().tobytes() for a, b in zip(first, second, strict=True))
    # A damaged cache file is detected by its hash and rebuilt with the same bytes.
    from harness.paths import cache_root

    cached = next((cache_root() / "corrupted").rglob("jpeg-1-*.npy"))
    original = cached.read_bytes()
    cached.write_bytes(original[:-16] + bytes(16))
    third = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    assert cached.read_bytes() == original
    assert all(a.images.numpy().tobytes() == c.images.numpy().tobytes() for a, c in zip(first, third, strict=True))
