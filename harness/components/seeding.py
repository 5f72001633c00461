"""Seeded blocks: global random generators set for a block of code and restored after it.

Methods and the libraries they wrap draw from torch's, numpy's and Python's global generators
(weight init, dropout, FrEIA's permutations, anomalib's models). Seeding them for the block
keeps a run deterministic without changing what the caller's code draws afterwards.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded for the block (weight init, dropout), restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def host_seeded(seed: int) -> Iterator[None]:
    """numpy's and Python's global generators seeded for the block, restored after (for
    libraries that draw from them: FrEIA's permutations, anomalib's models)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
