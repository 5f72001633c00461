"""Greedy k-center coreset selection (farthest point first), exact and fast on any device.

Rows are projected by a seeded Gaussian matrix and rounded to an integer grid fine enough to
keep float32's precision (`project`). Squared distances between grid points are integers below
2**53, so float64 computes them exactly, in any summation order, on any device. Exact distances
make the CPU's shortcut safe: after each new center c, only rows that the triangle inequality
cannot rule out are recomputed (a row j whose nearest center a is at least 2 d(j, a) from c
cannot come closer to c, since d(j, c) >= d(a, c) - d(j, a) >= d(j, a)). The selected indices
are those of computing every distance at every step (the tests check this); on the default
board about 2% of the distances are computed. On a GPU every distance is computed: the work is
small there, and the shortcut would cost a synchronisation with the host at each step.
"""

from __future__ import annotations

import math

import torch

# Above this fraction of rows to recompute, computing all of them is faster than gathering them.
GATHER_AT_MOST = 0.25


def greedy_coreset(
    features: torch.Tensor, n: int, projection_dim: int = 64, seed: int = 0, chunk: int = 65536
) -> torch.Tensor:
    """Indices (on the CPU) of `n` rows of `features` chosen by greedy k-center selection,
    starting from a seeded random row; distances after projection to `projection_dim`
    dimensions (Johnson-Lindenstrauss: distances approximately kept, at a fraction of the
    cost; 0 keeps every dimension). Runs on the device of `features`."""
    gen = torch.Generator().manual_seed(seed)
    grid = project(features, projection_dim, gen, chunk)
    first = int(torch.randint(len(grid), (1,), generator=gen)[0])
    selection = PrunedSelection(grid, first) if grid.device.type == "cpu" else FullSelection(grid, first)
    return selection.run(min(n, len(grid)))


def project(features: torch.Tensor, projection_dim: int, gen: torch.Generator, chunk: int = 65536) -> torch.Tensor:
    """(N, D) features -> (N, d) integers held in float64: the product with a seeded Gaussian
    matrix (drawn on the CPU, the same on every device; float32), scaled by a power of two and
    rounded so that squared distances, up to 2 d 4**bits, stay below 2**52."""
    total, dim = features.shape
    x = features.float()
    if projection_dim and projection_dim < dim:
        matrix = (torch.randn(dim, projection_dim, generator=gen) / projection_dim**0.5).to(x.device)
        x = torch.cat([x[i : i + chunk] @ matrix for i in range(0, total, chunk)])
    bits = (50 - math.ceil(math.log2(max(x.shape[1], 1)))) // 2
    largest = float(x.abs().max()) if x.numel() else 0.0
    scale = 2.0 ** (bits - math.frexp(largest)[1]) if largest > 0 else 1.0  # largest * scale < 2**bits
    return torch.round(x.double() * scale).contiguous()


class FullSelection:
    """Farthest-point selection computing every row's squared distance to each new center."""

    def __init__(self, grid: torch.Tensor, first: int) -> None:
        self.grid, self.first = grid, first
        self.squared_norms = (grid * grid).sum(1)
        self.min_dist = torch.full((len(grid),), math.inf, dtype=torch.float64, device=grid.device)

    def distances(self, rows: torch.Tensor | None, center: int) -> torch.Tensor:
        """Exact squared distances of `rows` (None: all) to row `center`."""
        if rows is None:
            grid, norms = self.grid, self.squared_norms
        else:
            grid, norms = self.grid.index_select(0, rows), self.squared_norms.index_select(0, rows)
        return norms + self.squared_norms[center] - 2 * (grid @ self.grid[center])

    def add(self, step: int, center: int) -> None:
        torch.minimum(self.min_dist, self.distances(None, center), out=self.min_dist)

    def run(self, n: int) -> torch.Tensor:
        chosen = torch.empty(n, dtype=torch.long)
        center = self.first
        for step in range(n):
            chosen[step] = center
            self.add(step, center)
            center = int(torch.argmax(self.min_dist))  # the first of equal maxima, on every device
        return chosen


class PrunedSelection(FullSelection):
    """The same selection, computing exactly only the distances that may change a row's nearest
    center.

    In squared distances, exactly: row j may move to center c only if d(a, c)**2 < 4 d(j, a)**2
    for its nearest center a (`owner`). Each center also keeps the largest 4 d**2 among the
    rows it took (rows that later leave only make that an overestimate, which is safe), so the
    rows of far centers are not looked at. When too many rows remain (early on, or for
    features without structure), a float32 pass over all rows, with a bound on its rounding,
    screens them instead."""

    def run(self, n: int) -> torch.Tensor:
        self.owner = torch.zeros(len(self.grid), dtype=torch.int32)
        self.center_grid = torch.empty(n, self.grid.shape[1], dtype=torch.float64)
        self.center_norms = torch.empty(n, dtype=torch.float64)
        self.center_reach = torch.empty(n, dtype=torch.float64)
        self.grid32, self.norms32 = self.grid.float(), self.squared_norms.float()
        largest = float(self.squared_norms.max()) if len(self.grid) else 0.0
        # float32 rounding of a squared distance: below (d + 4) 2**-24 (|a| + |b|)**2, doubled.
        self.rounding = (self.grid.shape[1] + 4) * 2.0**-21 * largest
        return super().run(n)

    def add(self, step: int, center: int) -> None:
        rows = None if step == 0 else self.rows_in_reach(step, center)
        if rows is None:
            rows = self.rows_maybe_closer(center)
        self.center_grid[step], self.center_norms[step] = self.grid[center], self.squared_norms[center]
        dist = self.distances(rows, center)
        closer = dist < self.min_dist.index_select(0, rows)
        moved, dist = rows[closer], dist[closer]
        self.min_dist[moved] = dist
        self.owner[moved] = step
        self.center_reach[step] = 4 * dist.max() if len(dist) else 0.0

    def rows_in_reach(self, step: int, center: int) -> torch.Tensor | None:
        """The rows whose own center is less than twice their distance from `center`, or None
        when there are too many for gathering them to pay off."""
        cross = self.center_grid[:step] @ self.grid[center]
        gaps = self.center_norms[:step] + self.squared_norms[center] - 2 * cross
        near = gaps < self.center_reach[:step]  # centers whose rows may move
        candidates = torch.nonzero(near.index_select(0, self.owner)).squeeze(1)  # index_select: the fast gather
        own_gaps = gaps.index_select(0, self.owner.index_select(0, candidates))
        rows = candidates[own_gaps < 4 * self.min_dist.index_select(0, candidates)]
        return None if len(rows) > GATHER_AT_MOST * len(self.grid) else rows

    def rows_maybe_closer(self, center: int) -> torch.Tensor:
        """The rows whose float32 distance to `center`, less its rounding bound, is below their
        current distance."""
        approx = torch.addmv(self.norms32 + self.norms32[center], self.grid32, self.grid32[center], alpha=-2.0)
        return torch.nonzero(approx.double() - self.rounding < self.min_dist).squeeze(1)
