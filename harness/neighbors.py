"""Nearest-neighbour search (faiss) and greedy k-center coreset selection."""

from __future__ import annotations

import faiss
import numpy as np
import torch


class NearestNeighbors:
    """Exact L2 nearest neighbours over a fixed bank of vectors."""

    def __init__(self, bank: np.ndarray):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.index = faiss.IndexFlatL2(bank.shape[1])
        self.index.add(bank)

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def nbytes(self) -> int:
        return self.index.ntotal * self.index.d * 4

    def vectors(self) -> np.ndarray:
        """The bank's vectors, (n, d) float32."""
        return self.index.reconstruct_n(0, self.index.ntotal)

    def distances(self, queries: np.ndarray, k: int = 1) -> np.ndarray:
        """Euclidean distances (n, k) to the k nearest bank vectors, nearest first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        squared, _ = self.index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0.0))


def greedy_coreset(
    features: torch.Tensor, n: int, projection_dim: int = 64, seed: int = 0, chunk: int = 65536
) -> torch.Tensor:
    """Indices of `n` rows chosen by greedy k-center selection (farthest point first).

    Distances are computed after a seeded Gaussian random projection to `projection_dim`
    dimensions, which keeps distances approximately (Johnson-Lindenstrauss) at a fraction
    of the cost; selection starts from a seeded random row.
    """
    total, dim = features.shape
    n = min(n, total)
    gen = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim and projection_dim < dim:
        proj = torch.randn(dim, projection_dim, generator=gen) / projection_dim**0.5
        x = torch.cat([x[i : i + chunk] @ proj for i in range(0, total, chunk)])
    x = x.contiguous()
    squared_norms = (x * x).sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    idx = torch.randint(total, (1,), generator=gen)[0]
    min_dist = torch.full((total,), float("inf"))
    for i in range(n):
        chosen[i] = idx
        # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, one matrix-vector product per step.
        dist = torch.addmv(squared_norms + squared_norms[idx], x, x[idx], alpha=-2.0)
        torch.minimum(min_dist, dist, out=min_dist)
        idx = torch.argmax(min_dist)
    return chosen


class TorchNearestNeighbors:
    """Exact L2 nearest neighbours by matrix products on the bank's device: on a GPU this keeps
    queries where they are computed, where faiss-cpu would pull every batch back to the host."""

    def __init__(self, bank: torch.Tensor):
        self.bank = bank.float().contiguous()
        self.squared_norms = (self.bank * self.bank).sum(1)

    def __len__(self) -> int:
        return len(self.bank)

    @property
    def nbytes(self) -> int:
        return self.bank.numel() * 4

    def distances(self, queries: torch.Tensor, k: int = 1, chunk: int = 8192) -> torch.Tensor:
        """Euclidean distances (n, k) to the k nearest bank vectors, nearest first, in float32
        whatever autocast is active."""
        out = []
        with torch.autocast(self.bank.device.type, enabled=False):
            for q in queries.to(self.bank.device, torch.float32).split(chunk):
                squared = torch.addmm(self.squared_norms, q, self.bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
                out.append(squared.topk(k, dim=1, largest=False).values.clamp_min(0).sqrt())
        return torch.cat(out)
