"""`xrbench grid`: run methods x boards x seeds, resumably.

Every cell is a run's spec (`harness.run.spec.RunSpec`), whose key (method, parameters and the
code they run, board edition, seed, device type, run options) has an `ok` run in the database
when the cell is done. A cell whose key has an `ok` run in the database is done and
skipped; a failed one runs again; `force` re-runs everything. A cell that raises is recorded
failed (by the run itself) and the grid goes on; Ctrl-C stops scheduling and keeps every
finished run.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.api.registry import discover, get_method
from harness.boards.files import load_board
from harness.boards.spec import Board
from harness.core.errors import ParameterError, XRBenchError
from harness.data.variants import noisy_variant, shot_variant
from harness.results import queries
from harness.results.store import ResultStore
from harness.run.runner import run_bench
from harness.run.spec import RunOptions, RunSpec


@dataclass
class Cell:
    spec: RunSpec
    attempts: int = 0  # runs started in a worker process that died
    state: str = "pending"  # pending | done (before the grid) | running | ok | failed | interrupted
    run_id: str | None = None
    seconds: float = 0.0
    value: float | None = None  # the board's primary metric on the clean test split
    error: str | None = None
    given: dict[str, Any] = field(default_factory=dict)  # the parameters the grid set (fixed or swept)

    def take_outcome(self, finished: Cell) -> None:
        """Copy what a run of this cell in another process ended with."""
        for name in ("state", "run_id", "seconds", "value", "error"):
            setattr(self, name, getattr(finished, name))

    @property
    def name(self) -> str:
        given = "".join(f" {k}={v}" for k, v in self.given.items())
        return f"{self.spec.method}{given} · {self.spec.board.name} · seed {self.spec.seed}"

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # method, board, why


def parse_overrides(pairs: list[str], methods: list[str]) -> dict[str, dict[str, list[str]]]:
    """`method:key=value` options as method -> {key: [values]}; a method outside the grid is
    refused. Several values sweep the parameter: `a|b|c` for any parameter, and `a,b,c` too for
    a number or a switch (a text parameter such as `layers=1,2,3` keeps its commas)."""
    out: dict[str, dict[str, list[str]]] = {}
    for pair in pairs:
        method, sep, assignment = pair.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not key:
            raise ParameterError(f"--param {pair!r}: expected METHOD:KEY=VALUE")
        if method not in methods:
            raise ParameterError(f"--param {pair!r}: method {method!r} is not in the grid ({', '.join(methods)})")
        out.setdefault(method, {})[key] = sweep_values(method, key, value, pair)
    return out


def sweep_values(method: str, key: str, value: str, pair: str) -> list[str]:
    """The values of one `--param`: split on `|`, and on `,` for a number or a switch."""
    spec = next((s for s in get_method(method).card.params.specs() if s.name == key), None)
    separators = "|," if spec is not None and spec.type in (int, float, bool) else "|"
    values = [value]
    for separator in separators:
        values = [part.strip() for v in values for part in v.split(separator)]
    if len(values) > 1 and ("" in values or len(set(values)) < len(values)):
        raise ParameterError(f"--param {pair!r}: a sweep needs distinct, non-empty values")
    return values


def parameter_sets(overrides: dict[str, Any | list]) -> list[dict[str, Any]]:
    """Every combination of a method's swept parameters (a list of values sweeps; a single
    value is fixed), in the order given."""
    keys = list(overrides)
    choices = [v if isinstance(v, list) else [v] for v in overrides.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def plan_grid(
    methods: list[str] | None, boards: list[str], seeds: list[int] | None, overrides: dict[str, dict[str, Any]],
    options: RunOptions, here: bool = True, shots: list[int] | None = None, noise: list[float] | None = None,
) -> Plan:  # fmt: skip
    """The cells of the grid, each a checked run spec; `methods=None` is every registered method
    that supports a board's task (the others are listed as skipped with the reason);
    `seeds=None` is each board's own seed; `overrides`: method -> {parameter: value, or a list
    of values to sweep}; `shots`: each seed's few-shot variant of each board with that many
    normal training images instead, `noise`: its variant with that share of abnormal training
    images (each drawn with the seed, frozen when first used); `here=False`: cells for other machines (Ray)."""
    plan = Plan()
    options = options.checked(here)
    for board_name in boards:
        parent = load_board(board_name)
        seeds_here = seeds if seeds is not None else [parent.seed]
        variants = variant_boards(parent, seeds_here, shots or [], noise or [])
        for method_name in methods if methods is not None else sorted(discover()):
            tasks = get_method(method_name).card.tasks
            if parent.task not in tasks:
                plan.skipped.append((method_name, parent.name, f"supports {', '.join(tasks)}, not {parent.task}"))
                continue
            for params in parameter_sets(overrides.get(method_name, {})):
                for seed in seeds_here:
                    for board in variants.get(seed, [parent]):
                        spec = RunSpec.build(method_name, board, seed, params, options, here)
                        plan.cells.append(Cell(spec, given=params))
    return plan


def variant_boards(parent: Board, seeds: list[int], shots: list[int], noise: list[float]) -> dict[int, list[Board]]:
    """seed -> the parent's few-shot and noisy-training variants drawn with it ({} when none is asked)."""
    return {
        seed: [load_board(shot_variant(parent.path, k, seed)) for k in shots]
        + [load_board(noisy_variant(parent.path, share, seed)) for share in noise]
        for seed in seeds
        if shots or noise
    }


def mark_done(plan: Plan, db: Path, force: bool) -> None:
    """Cells whose key has an ok run in the database are done (unless `force`)."""
    if force or not db.exists():
        return
    with ResultStore(db) as store:
        runs = queries.done_cells(store)
    for cell in plan.cells:
        if cell.key in runs:
            cell.state, cell.run_id = "done", runs[cell.key]


def primary_value(db: Path, run_id: str, board: Board) -> float | None:
    with ResultStore(db) as store:
        return queries.primary_value(store, run_id, board.primary_metric)


def run_cell(cell: Cell, db: Path) -> None:
    """Run one cell in this process; its outcome is stored on the cell (and in the database)."""
    cell.state, start = "running", time.perf_counter()
    quiet = Console(file=io.StringIO())  # the grid shows its own table, not each run's bars
    try:
        result = run_bench(cell.spec, db, quiet)
        cell.state, cell.run_id = "ok", result.run_id
        cell.value = primary_value(db, result.run_id, cell.spec.board)
    except KeyboardInterrupt:
        cell.state, cell.error = "interrupted", "interrupted (the run is marked failed)"
        raise
    except Exception as exc:  # any failure of a cell is recorded and the grid goes on
        cell.state, cell.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        cell.seconds = time.perf_counter() - start


def run_grid(plan: Plan, db: Path, on_change: Callable[[], None] = lambda: None, workers: int = 1) -> None:
    """Run the pending cells, in order in this process or on `workers` processes (Ctrl-C
    propagates after the running cells are marked failed). `harness.run.grid_ray` runs them on Ray."""
    if workers > 1:
        run_parallel(plan, db, workers, on_change)
        return
    for cell in plan.cells:
        if cell.state != "pending":
            continue
        cell.state = "running"
        on_change()
        run_cell(cell, db)
        on_change()


def _start_worker(threads: int, gpus: Any, modules: list[str]) -> None:
    """Each worker gets its share of the CPU threads, its own GPU when there are several, and
    the methods registered outside `methods/` and plugins (by importing their modules)."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    import importlib

    import torch

    torch.set_num_threads(threads)
    for module in modules:
        importlib.import_module(module)


def registering_modules(cells: list[Cell]) -> list[str]:
    """Modules a fresh process must import to know the cells' methods."""
    modules = {get_method(c.spec.method).__module__ for c in cells}
    return sorted(m for m in modules if not m.startswith("methods.") and m != "__main__")


def _cell_in_worker(cell: Cell, db: Path) -> Cell:
    run_cell(cell, db)
    return cell


def run_parallel(plan: Plan, db: Path, workers: int, on_change: Callable[[], None]) -> None:
    """Cells on `workers` fresh processes. A cell whose worker dies (killed, out of memory) is
    run once more, then recorded failed; the other cells of a broken pool are simply resubmitted."""
    context = multiprocessing.get_context("spawn")
    pending = [c for c in plan.cells if c.state == "pending"]
    gpus = _gpu_queue(context, {c.spec.options.device for c in pending}, workers)
    workers = min(workers, gpus.qsize()) if gpus is not None else workers
    threads = max(1, (os.cpu_count() or 1) // workers)
    while pending:
        broken = False
        setup = (threads, gpus, registering_modules(pending))
        with ProcessPoolExecutor(workers, context, _start_worker, setup) as pool:
            futures = {pool.submit(_cell_in_worker, cell, db): cell for cell in pending}
            for cell in pending:
                cell.state = "queued"
            on_change()
            for future in as_completed(futures):
                cell = futures[future]
                try:
                    finished = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                cell.take_outcome(finished)
                on_change()
        pending = _after_broken_pool(plan, db) if broken else []
        on_change()


def _after_broken_pool(plan: Plan, db: Path) -> list[Cell]:
    """Mark the runs the dead workers left `running` failed; their cells count an attempt (a
    second one fails the cell), every other unfinished cell is resubmitted."""
    with ResultStore(db) as store:
        stale = store.stale_runs()
        for run_id in stale:
            store.fail_run(run_id, "its worker process died (killed, or out of memory)")
        keys = queries.cell_keys(store, stale)
    again = []
    for cell in (c for c in plan.cells if c.state in ("queued", "running")):
        if cell.key in keys:
            cell.attempts += 1
            if cell.attempts >= 2:
                cell.state, cell.error = "failed", "its worker process died twice (killed, or out of memory)"
                continue
        cell.state = "pending"
        again.append(cell)
    return again


def _gpu_queue(context: Any, devices: set[str], workers: int) -> Any:
    """With several visible GPUs and cells on CUDA, a queue of GPU indices: one worker per GPU."""
    import torch

    if not any(d.startswith("cuda") for d in devices) or torch.cuda.device_count() < 2:
        return None
    queue = context.Queue()
    for index in range(min(workers, torch.cuda.device_count())):
        queue.put(index)
    return queue


def counts(plan: Plan) -> dict[str, int]:
    """Cells per state; cells done before the grid count as skipped."""
    out: dict[str, int] = {}
    for cell in plan.cells:
        state = "skipped (done before)" if cell.state == "done" else cell.state
        out[state] = out.get(state, 0) + 1
    return out


def split_list(text: str, what: str) -> list[str] | None:
    """`all` -> None, else the comma-separated names."""
    if text == "all":
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise XRBenchError(f"--{what}: give names separated by commas, or all")
    return names
