"""`xrbench grid`: run methods x boards x seeds, resumably.

Every cell has a key (`harness.runner.cell_key`: method, parameters and code, board edition,
seed, device type, run options). A cell whose key has an `ok` run in the database is done and
skipped; a failed one runs again; `force` re-runs everything. A cell that raises is recorded
failed (by the run itself) and the grid goes on; Ctrl-C stops scheduling and keeps every
finished run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.boards import Board, load_board
from harness.errors import ParameterError, XRBenchError
from harness.registry import create_method, discover
from harness.runner import cell_key, resolve_device, run_bench
from harness.store import ResultStore


@dataclass(frozen=True)
class RunOptions:
    """What `xrbench bench` takes besides method, board and seed; the same for every cell."""

    db: Path
    device: str = "auto"
    corruptions: bool = True
    precision: str = "fp32"


@dataclass
class Cell:
    method: str
    board: str
    seed: int
    params: dict[str, Any]
    key: str = ""
    state: str = "pending"  # pending | done (before the grid) | running | ok | failed | interrupted
    run_id: str | None = None
    seconds: float = 0.0
    value: float | None = None  # the board's primary metric on the clean test split
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.method} · {self.board} · seed {self.seed}"


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # method, board, why


def parse_overrides(pairs: list[str], methods: list[str]) -> dict[str, dict[str, str]]:
    """`method:key=value` options as method -> {key: value}; a method outside the grid is refused."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        method, sep, assignment = pair.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not key:
            raise ParameterError(f"--param {pair!r}: expected METHOD:KEY=VALUE")
        if method not in methods:
            raise ParameterError(f"--param {pair!r}: method {method!r} is not in the grid ({', '.join(methods)})")
        out.setdefault(method, {})[key] = value
    return out


def plan_grid(
    methods: list[str] | None, boards: list[str], seeds: list[int] | None, overrides: dict[str, dict[str, str]],
    options: RunOptions,
) -> Plan:  # fmt: skip
    """The cells of the grid, keyed; `methods=None` is every registered method that supports a
    board's task (the others are listed as skipped with the reason); `seeds=None` is each
    board's own seed."""
    plan = Plan()
    device = resolve_device(options.device).type
    registered = discover()
    for board_name in boards:
        board = load_board(board_name)
        for method_name in methods if methods is not None else sorted(registered):
            method = create_method(method_name, overrides.get(method_name))
            if board.task not in method.card.tasks:
                plan.skipped.append(
                    (method_name, board.name, f"supports {', '.join(method.card.tasks)}, not {board.task}")
                )
                continue
            for seed in seeds if seeds is not None else [board.seed]:
                key = cell_key(board, method, seed, device, options.corruptions, options.precision, None)
                plan.cells.append(Cell(method_name, board_name, seed, dict(overrides.get(method_name, {})), key))
    return plan


def mark_done(plan: Plan, db: Path, force: bool) -> None:
    """Cells whose key has an ok run in the database are done (unless `force`)."""
    if force or not db.exists():
        return
    with ResultStore(db) as store:
        done = store.query("SELECT cell_key, max(run_id) AS run_id FROM runs WHERE status = 'ok' GROUP BY cell_key")
    runs = dict(zip(done["cell_key"], done["run_id"], strict=True))
    for cell in plan.cells:
        if cell.key in runs:
            cell.state, cell.run_id = "done", runs[cell.key]


def primary_value(db: Path, run_id: str, board: Board) -> float | None:
    with ResultStore(db) as store:
        rows = store.query(
            "SELECT value FROM metrics WHERE run_id = ? AND condition = 'clean' AND slice = 'all' AND metric = ?",
            [run_id, board.primary_metric],
        )
    return None if rows.empty else float(rows["value"].iloc[0])


def run_cell(cell: Cell, options: RunOptions) -> None:
    """Run one cell in this process; its outcome is stored on the cell (and in the database)."""
    cell.state, start = "running", time.perf_counter()
    quiet = Console(file=io.StringIO())  # the grid shows its own table, not each run's bars
    try:
        result = run_bench(
            cell.method, cell.board, seed=cell.seed, params=cell.params, db=options.db, device=options.device,
            console=quiet, corruptions=options.corruptions, precision=options.precision,
        )  # fmt: skip
        cell.state, cell.run_id = "ok", result.run_id
        cell.value = primary_value(options.db, result.run_id, load_board(cell.board))
    except KeyboardInterrupt:
        cell.state, cell.error = "interrupted", "interrupted (the run is marked failed)"
        raise
    except Exception as exc:  # any failure of a cell is recorded and the grid goes on
        cell.state, cell.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        cell.seconds = time.perf_counter() - start


def run_grid(plan: Plan, options: RunOptions, on_change: Callable[[], None] = lambda: None) -> None:
    """Run the pending cells in order (Ctrl-C propagates after the running cell is marked)."""
    for cell in plan.cells:
        if cell.state != "pending":
            continue
        cell.state = "running"
        on_change()
        run_cell(cell, options)
        on_change()


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
