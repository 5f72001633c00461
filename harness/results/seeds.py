"""`xrbench compare A B --seeds`: two methods across training seeds, paired by seed.

The bootstrap interval of a run covers test-set sampling; differences between seeds cover
training randomness. Each method is taken in the setting the board's leaderboard ranks (its
seed group with the best mean), one run per seed (the newest), and the two are paired on the
seeds both have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel

from harness.core.errors import XRBenchError
from harness.results import queries
from harness.results.leaderboard import assemble, newest_per_seed
from harness.results.store import ResultStore


@dataclass(frozen=True)
class SeedComparison:
    metric: str
    pairs: pd.DataFrame  # seed, run_a, value_a, run_b, value_b, difference (a - b)
    mean_difference: float
    std_difference: float  # across seeds, ddof 1 (NaN for one seed)
    t_p: float  # paired t-test across seeds (NaN under two seeds, or when every difference is equal)
    wins_a: int  # seeds on which A scored higher


def seed_runs(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """The runs of a method's ranked seed group, one per seed (the newest), from an assembled
    leaderboard joined with the runs' seeds."""
    ranked = table[(table["method"] == method) & table["best"]]
    if ranked.empty:
        methods = ", ".join(sorted(table.loc[table["best"], "method"]))
        raise XRBenchError(f"method {method!r} has no ranked run on this board (ranked: {methods or 'none'})")
    group = table[(table["seed_group"] == ranked["seed_group"].iloc[0]) & table["seeds"].notna()]
    return newest_per_seed(group)


def compare_seeds(store: ResultStore, board: str, method_a: str, method_b: str) -> SeedComparison:
    """Pair the two methods' runs by seed on the board's current edition and compare their
    primary metric across seeds."""
    table = assemble(store, board)
    if table.empty:
        raise XRBenchError(f"no completed runs on board {board!r}")
    seeds = queries.run_seeds(store, table["run_id"].tolist())
    table = table.merge(seeds, on="run_id")
    a, b = seed_runs(table, method_a), seed_runs(table, method_b)
    pairs = a[["seed", "run_id", "value"]].merge(b[["seed", "run_id", "value"]], on="seed", suffixes=("_a", "_b"))
    if pairs.empty:
        raise XRBenchError(
            f"{method_a} (seeds {_seeds(a)}) and {method_b} (seeds {_seeds(b)}) share no seed on {board}: "
            "run them with the same --seeds"
        )
    pairs = pairs.sort_values("seed").reset_index(drop=True)
    pairs["difference"] = pairs["value_a"] - pairs["value_b"]
    diffs = pairs["difference"].to_numpy()
    varied = len(diffs) >= 2 and np.ptp(diffs) > 0
    return SeedComparison(
        metric=str(table["primary_metric"].iloc[0]),
        pairs=pairs[["seed", "run_id_a", "value_a", "run_id_b", "value_b", "difference"]],
        mean_difference=float(diffs.mean()),
        std_difference=float(diffs.std(ddof=1)) if len(diffs) >= 2 else float("nan"),
        t_p=float(ttest_rel(pairs["value_a"], pairs["value_b"]).pvalue) if varied else float("nan"),
        wins_a=int((diffs > 0).sum()),
    )


def _seeds(runs: pd.DataFrame) -> str:
    return ", ".join(str(int(s)) for s in sorted(runs["seed"]))
