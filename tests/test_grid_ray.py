"""`xrbench grid --executor ray`: the same stored results as the local executor, the driver the
only writer, a killed worker's cell retried, bad addresses refused before anything starts."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from test_grid import _hashes, grid  # also registers the grid's test methods

from harness.core.errors import XRBenchError
from harness.results.store import RUN_TABLES, ResultStore
from harness.run.grid import plan_grid, run_grid
from harness.run.grid_ray import connect, run_on_ray, shutdown
from harness.run.spec import RunOptions


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # Ray's workers take the environment of the moment the cluster starts
    os.environ["XRBENCH_TEST_MARKER"] = str(tmp_path_factory.mktemp("ray") / "marker")
    started = connect(None, cpus=2)
    yield started
    shutdown(started)
    del os.environ["XRBENCH_TEST_MARKER"]


def _ray_grid(ray_module, board, db, methods, seeds):
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(methods, [str(board)], seeds, {}, options)
    run_on_ray(ray_module, plan, db, lambda: None)
    return plan


def _stored(db):
    """Rows per run table, and every metric row (with its interval) by method and seed."""
    with ResultStore(db) as store:
        counts = {table: len(store.query(f"SELECT run_id FROM {table}")) for table in RUN_TABLES}
        metrics = store.query(
            "SELECT r.method, r.seed, m.condition, m.slice, m.metric, m.value, m.ci_low, m.ci_high "
            "FROM metrics m JOIN runs r USING (run_id) ORDER BY ALL"
        )
    return counts, metrics


def test_ray_stores_what_the_local_executor_stores(local_ray, tiny_board, tmp_path):
    methods = ["intensity", "random", "broken-for-grid"]
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    grid(tiny_board, local, methods, [0, 1])
    plan = _ray_grid(local_ray, tiny_board, on_ray, methods, [0, 1])
    assert [c.state for c in plan.cells] == ["ok", "ok", "ok", "ok", "failed", "failed"]
    assert "out of luck" in plan.cells[4].error
    assert _hashes(on_ray) == _hashes(local) and len(_hashes(local)) == 4
    (ray_counts, ray_metrics), (local_counts, local_metrics) = _stored(on_ray), _stored(local)
    assert ray_counts == local_counts and len(ray_metrics) > 100
    pd.testing.assert_frame_equal(ray_metrics, local_metrics)
    with ResultStore(on_ray) as store:
        statuses = sorted(store.query("SELECT status FROM runs")["status"])  # failures recorded by the worker
        boards = store.query("SELECT DISTINCT board FROM boards")["board"].tolist()
    assert statuses == ["failed"] * 2 + ["ok"] * 4 and boards == ["tiny-ad"]


def test_a_cell_whose_ray_worker_is_killed_runs_once_more(local_ray, tiny_board, tmp_path):
    plan = _ray_grid(local_ray, tiny_board, tmp_path / "k.duckdb", ["dies-once-for-grid"], [0])
    assert Path(os.environ["XRBENCH_TEST_MARKER"]).exists() and plan.cells[0].state == "ok"
    with ResultStore(tmp_path / "k.duckdb") as store:
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["ok"]  # the dead attempt left nothing


def test_an_unreachable_address_is_refused_at_once_and_starts_nothing():
    running, started = ray.is_initialized(), time.perf_counter()
    with pytest.raises(XRBenchError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9"):
        connect("127.0.0.1:9", None)
    assert time.perf_counter() - started < 10 and ray.is_initialized() == running
    with pytest.raises(XRBenchError, match="expected HOST:PORT"):
        connect("no-port-here", None)


def test_without_ray_installed_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(XRBenchError, match=r"pip install 'xrbench\[ray\]'"):
        connect(None, 1)


def test_the_local_executor_is_unchanged(tiny_board, tmp_path):
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(["random"], [str(tiny_board)], [0], {}, options)
    run_grid(plan, tmp_path / "l.duckdb")
    assert plan.cells[0].state == "ok"


def test_a_locked_database_keeps_the_finished_runs_beside_it(local_ray, tiny_board, tmp_path, monkeypatch):
    import harness.results.store

    db = tmp_path / "locked.duckdb"
    ResultStore(db).close()
    code = f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('locked', flush=True); sys.stdin.readline()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    monkeypatch.setattr(harness.results.store, "LOCK_WAIT_SECONDS", 0.2)
    try:
        plan = _ray_grid(local_ray, tiny_board, db, ["random"], [0])
    finally:
        holder.communicate("let go\n")  # the other process closes the database and exits
    assert plan.cells[0].state == "failed" and "xrbench runs --load-pending" in plan.cells[0].error
    monkeypatch.setattr(harness.results.store, "LOCK_WAIT_SECONDS", 60.0)
    with ResultStore(db) as store:
        assert store.load_pending() == [plan.cells[0].run_id]
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["ok"]
        store.predictions(plan.cells[0].run_id)  # verified against its hash
