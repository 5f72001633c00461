"""Leaderboard assembly: best run per method, ranks, ties, the reference run behind mCE, and
runs whose predictions were altered."""

import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.leaderboard import assemble
from harness.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.registry import register
from harness.runner import run_bench
from harness.significance import delong_test
from harness.store import ResultStore


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
        "random-0": run_bench("random", tiny_board, seed=0, db=db, device="cpu", corruptions=False),
        "random-1": run_bench("random", tiny_board, seed=1, db=db, device="cpu", corruptions=False),
        "intensity": run_bench("intensity", tiny_board, db=db, device="cpu", corruptions=False),
        "copy": run_bench("test-intensity-copy", tiny_board, db=db, device="cpu", corruptions=False),
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
    better, worse = sorted(("random-0", "random-1"), key=lambda k: -values[k])
    assert table.loc[runs[better], "best"] and not table.loc[runs[worse], "best"]
    assert pd.isna(table.loc[runs[worse], "rank"])
    best = table[table["best"]].sort_values("rank")
    assert list(best["rank"]) == [1, 2, 3] and best["value"].is_monotonic_decreasing
    assert sorted(best["value"]) == pytest.approx(sorted([values[better], values["intensity"], values["copy"]]))
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
    full = run_bench("intensity", tiny_board, db=db, device="cpu").run_id  # the board's reference method
    run_bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)  # newer, clean only
    mine = run_bench("random", tiny_board, db=db, device="cpu").run_id
    with ResultStore(db) as store:
        table = assemble(store, "tiny-ad").set_index("run_id")
    assert table.loc[mine, "reference_run_id"] == full and table.loc[mine, "mce"] > 0
