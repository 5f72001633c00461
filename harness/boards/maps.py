"""Which images' maps a run keeps, and localization is scored on.

A map is about a thousand times the bytes of a score: on a board of tens of thousands of test
images, keeping every map makes bundles no one can submit. A board with `map_sample = N` keeps,
per split, every image with localization ground truth (where the numbers come from) and a
seeded sample of the others stratified by label, up to N images in all. The sample is a
function of the frozen manifest, the board's seed and its ground truth, so every run and every
verification of a bundle uses the same images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.boards.spec import Board


def map_sample(meta: pd.DataFrame, size: int, seed: int, ground_truth: set[str] | frozenset = frozenset()) -> set[str]:
    """The ids of the split's images whose maps are kept: all of them when `size` is 0 or the
    split holds no more; else those with ground truth, then each label's share of the rest
    (rounded down) drawn without replacement, in manifest order."""
    ids = meta["image_id"].astype(str)
    if size == 0 or len(ids) <= size:
        return set(ids)
    chosen = set(ids[ids.isin(ground_truth)])
    rest = meta[~ids.isin(chosen)]
    room = max(size - len(chosen), 0)
    strata = rest["label"] if "label" in rest else pd.Series(0, index=rest.index)
    rng = np.random.default_rng(seed)
    for _, group in rest.groupby(strata, sort=True):
        take = room * len(group) // len(rest)
        chosen |= set(rng.choice(group["image_id"].astype(str).to_numpy(), size=take, replace=False))
    return chosen


def kept_map_ids(board: Board, meta: pd.DataFrame, split: str, ground_truth: set[str]) -> set[str]:
    """The board's map sample of a split: the test split's counts its ground truth in."""
    return map_sample(meta, board.map_sample, board.seed, ground_truth if split == "test" else frozenset())
