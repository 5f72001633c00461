"""`xrbench grid`: cells keyed by what identifies their result, resumable, failures recorded."""

import os
import signal
from pathlib import Path

import pytest

from harness.api.protocol import Method, MethodCard, Prediction
from harness.api.registry import register
from harness.cli.main import main
from harness.core.errors import ParameterError, UnknownMethodError
from harness.results.store import ResultStore
from harness.run.grid import counts, mark_done, parse_overrides, plan_grid, run_grid
from harness.run.spec import RunOptions


@register
class Broken(Method):
    card = MethodCard("broken-for-grid", "test", "fails while fitting", "-", "-")  # one-class, anomaly

    def fit(self, train, val, ctx):
        raise RuntimeError("out of luck")

    def predict(self, batch):
        raise AssertionError("never called")


def grid(board, db, methods, seeds, force=False, overrides=None):
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(methods, [str(board)], seeds, overrides or {}, options)
    mark_done(plan, db, force)
    run_grid(plan, db)
    return plan


def test_a_grid_runs_its_cells_skips_done_ones_and_goes_on_after_a_failure(tiny_board, tmp_path):
    db = tmp_path / "g.duckdb"
    plan = grid(tiny_board, db, ["intensity", "broken-for-grid", "random"], [0, 1])
    assert [c.state for c in plan.cells] == ["ok", "ok", "failed", "failed", "ok", "ok"]
    assert "out of luck" in plan.cells[2].error
    assert all(0 <= c.value <= 1 for c in plan.cells if c.state == "ok")
    with ResultStore(db) as store:
        runs = store.query("SELECT status, cell_key FROM runs")
    assert sorted(runs["status"]) == ["failed"] * 2 + ["ok"] * 4
    assert runs["cell_key"].nunique() == 6  # seeds and methods give different keys

    again = grid(tiny_board, db, ["intensity", "broken-for-grid", "random"], [0, 1])
    assert counts(again) == {"skipped (done before)": 4, "failed": 2}  # failed cells run again
    forced = grid(tiny_board, db, ["intensity"], [0], force=True)
    assert counts(forced) == {"ok": 1}
    with ResultStore(db) as store:
        assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'ok'")["n"].iloc[0] == 5


def test_cell_keys_change_with_what_changes_the_result(tiny_board, tmp_path):
    def key(seeds=(0,), overrides=None, corruptions=False):
        options = RunOptions(device="cpu", corruptions=corruptions)
        return plan_grid(["knn"], [str(tiny_board)], list(seeds), overrides or {}, options).cells[0].key

    assert key() == key()
    assert key() != key(seeds=(1,))
    assert key() != key(overrides={"knn": {"k": "3"}})
    assert key() != key(corruptions=True)
    assert key(overrides={"knn": {"k": "5"}}) == key()  # the default value, written out


def test_bad_grid_arguments_are_refused_with_the_reason(tiny_board, tiny_multilabel_board, tmp_path):
    with pytest.raises(ParameterError, match="not in the grid"):
        parse_overrides(["patchcore:k=3"], ["knn"])
    with pytest.raises(ParameterError, match="METHOD:KEY=VALUE"):
        parse_overrides(["k=3"], ["knn"])
    with pytest.raises(UnknownMethodError, match="did you mean 'knn'"):
        plan_grid(["knnn"], [str(tiny_board)], [0], {}, RunOptions(device="cpu"))
    plan = plan_grid(["knn"], [str(tiny_multilabel_board)], [0], {}, RunOptions(device="cpu"))
    assert plan.cells == [] and "not multilabel" in plan.skipped[0][2]


def test_cli_dry_run_lists_cells_and_runs_nothing(tiny_board, tmp_path, capsys):
    db = tmp_path / "d.duckdb"
    args = ["grid", "--methods", "intensity,random", "--boards", str(tiny_board), "--seeds", "0,1", "--db", str(db)]
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("pending") == 4
    assert not db.exists()
    assert main(["grid", "--boards", "no-such-board", "--dry-run"]) == 2
    assert main([*args, "--seeds", "0,one", "--dry-run"]) == 2
    assert "expected integers separated by commas" in capsys.readouterr().err
    assert main([*args, "--workers", "0", "--dry-run"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


@register
class DiesOnce(Method):
    """Kills its own process the first time it fits (as the kernel's out-of-memory killer would)."""

    card = MethodCard("dies-once-for-grid", "test", "killed while fitting, once", "-", "-")  # one-class, anomaly

    def fit(self, train, val, ctx):
        marker = Path(os.environ["XRBENCH_TEST_MARKER"])
        if not marker.exists():
            marker.write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        self.level = 0.0

    def predict(self, batch):
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def _hashes(db):
    with ResultStore(db) as store:
        rows = store.query("SELECT method, seed, predictions_sha256 FROM runs WHERE status = 'ok'")
    return {(r.method, r.seed): r.predictions_sha256 for r in rows.itertuples()}


def test_workers_give_the_predictions_of_a_sequential_grid_and_survive_a_killed_worker(
    tiny_board, tmp_path, monkeypatch
):
    methods = ["intensity", "random"]
    sequential, parallel = tmp_path / "s.duckdb", tmp_path / "p.duckdb"
    grid(tiny_board, sequential, methods, [0, 1])
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(methods, [str(tiny_board)], [0, 1], {}, options)
    run_grid(plan, parallel, workers=2)
    assert [c.state for c in plan.cells] == ["ok"] * 4
    assert _hashes(parallel) == _hashes(sequential) and len(_hashes(parallel)) == 4

    monkeypatch.setenv("XRBENCH_TEST_MARKER", str(tmp_path / "marker"))
    killed = tmp_path / "k.duckdb"
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(["dies-once-for-grid", "intensity"], [str(tiny_board)], [0], {}, options)
    run_grid(plan, killed, workers=2)
    assert [c.state for c in plan.cells] == ["ok", "ok"] and plan.cells[0].attempts == 1
    with ResultStore(killed) as store:
        statuses = store.query("SELECT method, status, error FROM runs ORDER BY started_at")
    dead = statuses[statuses["status"] == "failed"]
    # The broken pool takes down a run still in flight on the other worker too (timing): it is
    # recorded failed for the same reason and its cell resubmitted, as the dead one's.
    assert "dies-once-for-grid" in dead["method"].tolist()
    assert all("worker process died" in error for error in dead["error"])


def test_grid_bundles_each_finished_cell_once_and_a_failed_cell_never(tiny_board, tmp_path, capsys):
    """`--bundles DIR` (what `make leaderboard` gives): every finished cell gets a bundle that
    verifies, a failed cell none, and a second grid writes only what is missing."""
    from harness.public import verify

    db, root = tmp_path / "d.duckdb", tmp_path / "bundles"
    args = ["grid", "--boards", str(tiny_board), "--no-corruptions", "--db", str(db), "--bundles", str(root)]
    assert main([*args, "--methods", "intensity,broken-for-grid"]) == 2  # the failed cell fails the grid
    first = sorted(root.glob("*/*/*"))
    assert [p.parent.name for p in first] == ["intensity"] and verify(first[0], boards={"tiny-ad": tiny_board}).ok
    assert "1 new bundles" in capsys.readouterr().out
    assert main([*args, "--methods", "intensity,random"]) == 0
    second = sorted(root.glob("*/*/*"))
    assert [p.parent.name for p in second] == ["intensity", "random"] and first[0] in second
    out = capsys.readouterr().out
    assert "1 new bundles" in out and "(1 cells had one)" in out
