"""The grid's own cost: one cell through `xrbench grid` against the same run by `run_bench`
(the difference is planning, keys, the done check and storing), and a grid of 3 methods x 2
boards x 2 seeds on the tiny boards, one cell at a time and on two worker processes."""

import io

import pytest
from rich.console import Console

from harness.conformance.tiny import write_tiny_board
from harness.run.grid import mark_done, plan_grid, run_grid
from harness.run.runner import bench
from harness.run.spec import RunOptions

METHODS = ["intensity", "random", "knn"]


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid-speed")
    return [
        str(write_tiny_board(folder / "a", "anomaly", name="tiny-a")),
        str(write_tiny_board(folder / "b", "anomaly", name="tiny-b")),
    ]


def _grid(db, methods, boards, seeds, workers=1):
    options = RunOptions(device="cpu", corruptions=False)
    plan = plan_grid(methods, boards, seeds, {}, options)
    mark_done(plan, db, force=False)
    run_grid(plan, db, workers=workers)
    assert all(c.state in ("ok", "done") for c in plan.cells)


def test_one_run_without_the_grid(benchmark, boards, tmp_path):
    seeds = iter(range(1000))
    quiet = Console(file=io.StringIO())
    benchmark.pedantic(
        lambda: bench("intensity", boards[0], seed=next(seeds), db=tmp_path / "r.duckdb", device="cpu",
                          corruptions=False, console=quiet), rounds=5, warmup_rounds=1)  # fmt: skip


def test_one_cell_through_the_grid(benchmark, boards, tmp_path):
    seeds = iter(range(1000))
    benchmark.pedantic(
        lambda: _grid(tmp_path / "g.duckdb", ["intensity"], boards[:1], [next(seeds)]), rounds=5, warmup_rounds=1
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_grid_of_12_cells(benchmark, boards, tmp_path, workers):
    runs = iter(range(1000))
    benchmark.pedantic(
        lambda: _grid(tmp_path / f"{next(runs)}.duckdb", METHODS, boards, [0, 1], workers), rounds=1, iterations=1
    )


def test_grid_of_12_cells_on_ray(benchmark, boards, tmp_path):
    """The same grid as Ray tasks on a local 2-CPU cluster, Ray's start-up and shutdown included."""
    from harness.run.grid_ray import connect, run_on_ray, shutdown

    def on_ray(db):
        ray = connect(None, cpus=2)
        try:
            options = RunOptions(device="cpu", corruptions=False)
            plan = plan_grid(METHODS, boards, [0, 1], {}, options)
            run_on_ray(ray, plan, db, lambda: None)
        finally:
            shutdown(ray)
        assert all(c.state == "ok" for c in plan.cells)

    runs = iter(range(1000))
    benchmark.pedantic(lambda: on_ray(tmp_path / f"{next(runs)}.duckdb"), rounds=1, iterations=1)


def test_ray_start_and_shutdown(benchmark):
    from harness.run.grid_ray import connect, shutdown

    benchmark.pedantic(lambda: shutdown(connect(None, cpus=2)), rounds=2, iterations=1)
