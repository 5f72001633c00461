"""Leaderboard assembly: best run per method, ranks, ties, the reference run behind mCE, and
runs whose predictions were altered."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register
from harness.results.leaderboard import assemble
from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.scoring.significance import delong_test


@register
class IntensityCopy(Method):
    card = MethodCard("test-intensity-copy", "test", "the intensity baseline again", "-", "-", learning="none")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


@pytest.fixture(scope="module")
def board_runs(tiny_board, tmp_path_factory):
    db = tmp_path_factory.mktemp("leaderboard") / "r.duckdb"
    runs = {
        "random-0": bench("random", tiny_board, seed=0, db=db, device="cpu", corruptions=False),
        "random-1": bench("random", tiny_board, seed=1, db=db, device="cpu", corruptions=False),
        "intensity": bench("intensity", tiny_board, db=db, device="cpu", corruptions=False),
        "copy": bench("test-intensity-copy", tiny_board, db=db, device="cpu", corruptions=False),
    }
    return db, {k: r.run_id for k, r in runs.items()}


def _scores(store, run_id):
    rows = store.predictions(run_id)
    rows = rows[(rows["split"] == "test") & (rows["condition"] == "clean")]
    return rows["label"].to_numpy(), rows["score"].to_numpy()


def test_best_run_per_method_ranks_and_ties(board_runs):
    db, runs = board_runs
    with ResultStore(db) as store:
        table = assemble(store, "tiny-ad").set_index("run_id")
        scores = {k: _scores(store, r) for k, r in runs.items()}
    values = {k: roc_auc_score(*scores[k]) for k in runs}
    # random ran with two seeds: ranked on their mean, shown by the median seed (the lower one)
    better, worse = sorted(("random-0", "random-1"), key=lambda k: -values[k])
    assert table.loc[runs[worse], "best"] and not table.loc[runs[better], "best"]
    assert pd.isna(table.loc[runs[better], "rank"])
    for k in ("random-0", "random-1"):
        row = table.loc[runs[k]]
        assert row["seeds"] == 2 and row["seed_mean"] == pytest.approx(np.mean([values[better], values[worse]]))
        assert row["seed_std"] == pytest.approx(np.std([values[better], values[worse]], ddof=1))
    single = table.loc[runs["intensity"]]
    assert single["seeds"] == 1 and single["seed_mean"] == single["value"] and pd.isna(single["seed_std"])
    best = table[table["best"]].sort_values("rank")
    assert list(best["rank"]) == [1, 2, 3] and best["seed_mean"].is_monotonic_decreasing
    assert sorted(best["value"]) == pytest.approx(sorted([values[worse], values["intensity"], values["copy"]]))
    leader = best.index[0]
    leader_scores = next(scores[k] for k, r in runs.items() if r == leader)
    for run_id, row in best.iterrows():
        labels, own = next(scores[k] for k, r in runs.items() if r == run_id)
        expected = 1.0 if run_id == leader else delong_test(labels, leader_scores[1], own)
        assert row["tie_p"] == pytest.approx(expected, abs=1e-12)
        assert row["tied"] == (row["rank"] > 1 and expected >= 0.05)
    assert table.loc[runs["intensity"], "value"] == table.loc[runs["copy"], "value"]  # identical scores


def test_altered_predictions_are_flagged_and_never_ranked(board_runs, tmp_path):
    import shutil

    db, runs = board_runs
    copy = tmp_path / "altered.duckdb"
    shutil.copy(db, copy)
    with ResultStore(copy) as store:
        store.con.execute(
            "UPDATE predictions SET score = 1 - score WHERE run_id = ? AND split = 'test'", [runs["intensity"]]
        )
        table = assemble(store, "tiny-ad").set_index("run_id")
    row = table.loc[runs["intensity"]]
    assert not row["best"] and pd.isna(row["rank"]) and "altered after the run" in row["flag"]
    assert table.loc[runs["copy"], "best"] and table["rank"].notna().sum() == 2  # intensity has no other run


def test_mce_uses_the_newest_reference_run_measured_on_the_same_conditions(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    full = bench("intensity", tiny_board, db=db, device="cpu").run_id  # the board's reference method
    bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)  # newer, clean only
    mine = bench("random", tiny_board, db=db, device="cpu").run_id
    with ResultStore(db) as store:
        table = assemble(store, "tiny-ad").set_index("run_id")
    assert table.loc[mine, "reference_run_id"] == full and table.loc[mine, "mce"] > 0


def _runs(rows):
    frame = pd.DataFrame(rows, columns=["run_id", "method", "seed_group", "seed", "value", "finished_at"])
    return frame.assign(finished_at=pd.to_datetime(frame["finished_at"], unit="s"))


def test_methods_with_several_seeds_rank_on_their_mean_not_their_luckiest_seed():
    from harness.results.leaderboard import ranked_runs, seed_statistics

    runs = _runs([
        ("a0", "a", "a", 0, 0.90, 1), ("a1", "a", "a", 1, 0.50, 2), ("a2", "a", "a", 2, 0.60, 3),
        ("a-k3", "a", "a-k3", 0, 0.65, 4),
        ("b0", "b", "b-default", 0, 0.70, 5), ("b1", "b", "b-default", 1, 0.72, 6),
    ])  # fmt: skip
    table = runs.join(seed_statistics(runs), on="run_id")
    assert table.set_index("run_id").loc["a1", "seed_mean"] == pytest.approx((0.9 + 0.5 + 0.6) / 3)
    ranked = ranked_runs(table)
    assert ranked["run_id"].tolist() == ["b0", "a2"]  # b's mean 0.71 beats a's 0.667; a shown by its median seed

    rerun = _runs([*runs.itertuples(index=False), ("a0-again", "a", "a", 0, 0.50, 7)])
    table = rerun.join(seed_statistics(rerun), on="run_id").set_index("run_id")
    assert table.loc["a0-again", "seeds"] == 3  # the newest run of seed 0 replaces the older one
    assert table.loc["a0-again", "seed_mean"] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert ranked_runs(table.reset_index())["run_id"].tolist() == ["b0", "a-k3"]  # now a's best setting is k3
