import numpy as np
import torch

from harness.neighbors import NearestNeighbors, greedy_coreset


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


def test_torch_search_matches_faiss_and_ignores_autocast():
    from harness.neighbors import NearestNeighbors, TorchNearestNeighbors

    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 48, generator=gen), torch.randn(300, 48, generator=gen)
    expected = NearestNeighbors(bank.numpy()).distances(queries.numpy(), k=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = TorchNearestNeighbors(bank).distances(queries, k=3, chunk=128)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
