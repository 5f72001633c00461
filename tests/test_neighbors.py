import numpy as np
import pytest
import torch

from harness.components.coreset import FullSelection, PrunedSelection, greedy_coreset, project
from harness.components.neighbors import NearestNeighbors


def test_faiss_distances_match_brute_force():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(500, 24)), rng.normal(size=(40, 24))
    expected = np.sort(torch.cdist(torch.from_numpy(queries), torch.from_numpy(bank)).numpy(), axis=1)[:, :3]
    np.testing.assert_allclose(NearestNeighbors(bank).distances(queries, k=3), expected, rtol=1e-4, atol=1e-4)


def test_coreset_covers_every_cluster_and_is_seeded():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], dtype=np.float32)
    points = np.concatenate([c + 0.1 * rng.normal(size=(200, 2)) for c in centres]).astype(np.float32)
    chosen = greedy_coreset(torch.from_numpy(points), 5, projection_dim=0, seed=0)
    assert sorted(set((chosen // 200).tolist())) == [0, 1, 2, 3, 4]
    assert torch.equal(chosen, greedy_coreset(torch.from_numpy(points), 5, projection_dim=0, seed=0))


def test_projected_coreset_still_spreads_out():
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=20, size=(8, 256)).astype(np.float32)
    points = np.concatenate([c + rng.normal(size=(100, 256)).astype(np.float32) for c in centres])
    chosen = greedy_coreset(torch.from_numpy(points), 8, projection_dim=32, seed=0)
    assert len(set((chosen // 100).tolist())) == 8


def farthest_points_by_integers(grid: np.ndarray, first: int, n: int) -> list[int]:
    """Greedy k-center on integer coordinates in Python integers: exact by construction."""
    points = [tuple(int(v) for v in row) for row in grid]
    min_dist = [None] * len(points)
    chosen, center = [], first
    for _ in range(n):
        chosen.append(center)
        for j, p in enumerate(points):
            d = sum((a - b) ** 2 for a, b in zip(p, points[center], strict=True))
            min_dist[j] = d if min_dist[j] is None else min(min_dist[j], d)
        center = max(range(len(points)), key=lambda j: (min_dist[j], -j))  # the first of equal maxima
    return chosen


def clustered_points(seed: int, n: int = 300, dim: int = 48) -> torch.Tensor:
    """Clusters of very different spreads, with exact duplicates (ties in every distance)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(6, dim))
    spread = np.repeat([0.01, 0.1, 1.0, 3.0, 0.5, 0.0], n // 6)[:, None]
    points = centres.repeat(n // 6, axis=0) + spread * rng.normal(size=(n, dim))
    points[::7] = points[0]
    return torch.from_numpy(points.astype(np.float32))


@pytest.mark.parametrize("seed, projection_dim", [(0, 16), (1, 0), (2, 64)])
def test_coreset_is_the_exact_farthest_point_selection_on_its_integer_grid(seed, projection_dim):
    points = clustered_points(seed)
    grid = project(points, projection_dim, torch.Generator().manual_seed(seed))
    assert torch.equal(grid, grid.round()) and float(grid.abs().max()) <= 2**25  # integers, exact in float64
    gen = torch.Generator().manual_seed(seed)
    project(points, projection_dim, gen)
    first = int(torch.randint(len(grid), (1,), generator=gen)[0])
    expected = farthest_points_by_integers(grid.numpy(), first, 40)
    assert greedy_coreset(points, 40, projection_dim=projection_dim, seed=seed).tolist() == expected


@pytest.mark.parametrize("seed", range(4))
def test_pruned_selection_chooses_what_computing_every_distance_chooses(seed):
    """The CPU's shortcut skips rows by the triangle inequality; it must never change a choice."""
    points = clustered_points(seed, n=1200, dim=32)
    grid = project(points, 0, torch.Generator().manual_seed(seed))
    pruned, full = PrunedSelection(grid, seed), FullSelection(grid, seed)
    computed = []
    distances = pruned.distances
    pruned.distances = lambda rows, center: computed.append(len(rows)) or distances(rows, center)
    assert torch.equal(pruned.run(300), full.run(300))
    assert torch.equal(pruned.min_dist, full.min_dist)
    assert sum(computed) < 0.5 * 300 * len(grid)  # the shortcut did skip rows


def test_torch_search_matches_faiss_and_ignores_autocast():
    from harness.components.neighbors import NearestNeighbors, TorchNearestNeighbors

    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 48, generator=gen), torch.randn(300, 48, generator=gen)
    expected = NearestNeighbors(bank.numpy()).distances(queries.numpy(), k=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = TorchNearestNeighbors(bank).distances(queries, k=3, chunk=128)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
