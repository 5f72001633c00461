"""Exact nearest-neighbour search: faiss on the CPU, matrix products on a GPU."""

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
