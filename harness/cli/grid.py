"""`xrbench grid`: methods x boards x seeds, resumable, on local processes or Ray."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.cli.common import add_db, console, db_path, seed_list
from harness.core.errors import XRBenchError
from harness.core.precision import PRECISIONS


def add_commands(sub: Any) -> None:
    p = sub.add_parser("grid", help="run methods x boards x seeds; cells already done are skipped")
    p.add_argument("--methods", default=None, help="all (default: every method for the board's task) or m1,m2")
    p.add_argument("--boards", default=None, help="all or b1,b2 (default: synth-cxr-ad)")
    p.add_argument("--seeds", default=None, help="comma-separated (default: each board's seed)")
    p.add_argument(
        "--shots", default=None, metavar="K,K,...",
        help="few-shot track: each seed's variant of each anomaly board with K normal training images "
        "(drawn with the seed, frozen in leaderboards/variants/ when first used: commit them)",
    )  # fmt: skip
    p.add_argument(
        "--noise", default=None, metavar="SHARE,...",
        help="noisy-training track: each seed's variant of each anomaly board whose training images hold this share "
        "of abnormal ones, such as 0,0.05,0.1 (frozen like --shots)",
    )  # fmt: skip
    p.add_argument(
        "--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
        help="a method's parameter; several values sweep it: a|b|c, or a,b,c for a number",
    )  # fmt: skip
    p.add_argument(
        "--config", default=None, metavar="FILE",
        help="an experiment file (experiments/*.toml): methods, their fixed and swept parameters, boards, seeds",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-corruptions", action="store_true", help="clean test sets only")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype of predict")
    p.add_argument("--force", action="store_true", help="run cells again even when done")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes, or Ray tasks")
    p.add_argument(
        "--workers", type=int, default=None,
        help="local: cells at once, each in its own process (default: 1); ray: the local cluster's CPUs (default: all)",
    )  # fmt: skip
    p.add_argument("--address", default=None, help="ray: an existing cluster, HOST:PORT or auto (default: a local one)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and which are done; run nothing")
    p.add_argument(
        "--bundles", default=None, metavar="DIR",
        help="write a submission bundle (with maps where kept) of every finished cell that has none in DIR "
        "(make leaderboard: leaderboards/submissions)",
    )  # fmt: skip
    add_db(p)
    p.set_defaults(func=cmd_grid)


def grid_table(plan: object, started: float) -> Table:

    table = Table(title=f"grid: {len(plan.cells)} cells ({time.perf_counter() - started:.0f} s)")  # type: ignore[attr-defined]
    for col in ("cell", "state", "seconds", "primary metric", "run or error"):
        table.add_column(col, justify="right" if col in ("seconds", "primary metric") else "left")
    styles = {"ok": "green", "failed": "bold red", "running": "yellow", "interrupted": "bold red", "done": "dim"}
    for c in plan.cells:  # type: ignore[attr-defined]
        value = "" if c.value is None else f"{c.value:.3f}"
        seconds = f"{c.seconds:.0f}" if c.seconds else ""
        detail = c.error or c.run_id or ""
        state = "done before" if c.state == "done" else c.state
        table.add_row(*(escape(x) for x in (c.name, state, seconds, value, detail)), style=styles.get(c.state))
    return table


def cmd_grid(args: argparse.Namespace) -> None:

    from harness.api.registry import discover
    from harness.boards.files import available_boards
    from harness.run.grid import mark_done, parse_overrides, plan_grid, split_list
    from harness.run.grid_ray import shutdown, worker_device
    from harness.run.spec import RunOptions

    if args.workers is not None and args.workers < 1:
        raise XRBenchError(f"--workers must be at least 1, not {args.workers}")
    if args.address is not None and args.executor != "ray":
        raise XRBenchError("--address is for --executor ray")
    if args.config:
        methods, boards, seeds, overrides, corruptions, shots, noise = from_experiment(args)
    else:
        methods = split_list(args.methods or "all", "methods")
        boards = split_list(args.boards or "synth-cxr-ad", "boards") or available_boards()
        seeds = seed_list(args.seeds) if args.seeds else None
        overrides, corruptions = parse_overrides(args.param, methods or sorted(discover())), not args.no_corruptions
        shots = seed_list(args.shots, "--shots", low=1) if args.shots else None
        noise = share_list(args.noise) if args.noise else None
    db = db_path(args)
    options = RunOptions(args.device, args.precision, corruptions)
    here = args.executor == "local"  # a local grid refuses cuda on a machine without it, before any cell
    plan = plan_grid(methods, boards, seeds, overrides, options, here, shots, noise)  # refused before Ray starts
    ray = _ray_for_grid(args) if args.executor == "ray" and not args.dry_run else None
    try:
        if ray is not None and (on_workers := worker_device(ray, options)) != options:
            options, plan = on_workers, plan_grid(methods, boards, seeds, overrides, on_workers, False, shots, noise)
        mark_done(plan, db, args.force)
        for method, board, why in plan.skipped:
            console.print(escape(f"skipped {method} on {board}: {why}"), style="dim")
        started = time.perf_counter()
        if args.dry_run:
            console.print(grid_table(plan, started))
            return
        try:
            _run_grid_live(plan, db, started, ray, args.workers or 1)
        finally:  # a failed or interrupted grid still bundles the cells it finished
            if args.bundles:
                _bundle_cells(plan, db, Path(args.bundles))
    finally:
        if ray is not None:
            shutdown(ray)


def _bundle_cells(plan: Any, db: Path, root: Path) -> None:
    from harness.results.store import ResultStore
    from harness.submissions.bundles import write_missing_bundles

    finished = [c.run_id for c in plan.cells if c.state in ("ok", "done") and c.run_id]
    if not finished:
        return
    with ResultStore(db) as store:
        written = write_missing_bundles(store, finished, root)
    console.print(escape(f"{len(written)} new bundles in {root} ({len(finished) - len(written)} cells had one)"))


def from_experiment(args: argparse.Namespace) -> tuple:
    """methods, boards, seeds, overrides and corruptions from `--config`, which names them all."""
    from harness.run.experiments import load_experiment

    given = [f"--{k}" for k in ("methods", "boards", "seeds", "shots", "noise") if getattr(args, k)]
    given += ["--param"] if args.param else []
    if given or args.no_corruptions:
        raise XRBenchError(f"--config names the grid; drop {', '.join(given or ['--no-corruptions'])}")
    e = load_experiment(Path(args.config))
    console.print(escape(f"experiment {args.config}: {e.description}"), style="dim")
    return e.methods, e.boards, e.seeds, e.overrides, e.corruptions, e.shots, e.noise


def share_list(text: str) -> list[float]:
    """`--noise`: shares in [0, 1) separated by commas."""
    try:
        shares = [float(s) for s in text.split(",")]
    except ValueError:
        raise XRBenchError(f"--noise {text!r}: expected shares separated by commas, such as 0,0.05,0.1") from None
    bad = [s for s in shares if not 0 <= s < 1]
    if bad:
        raise XRBenchError(f"--noise: {bad[0]} is outside [0, 1), the share of abnormal training images")
    return shares


def _ray_for_grid(args: argparse.Namespace) -> Any:
    from harness.run.grid_ray import connect

    with console.status("starting Ray" if args.address is None else f"connecting to Ray at {args.address}"):
        return connect(args.address, args.workers)


def _run_grid_live(plan: Any, db: Path, started: float, ray: Any, workers: int) -> None:
    from rich.live import Live

    from harness.run.grid import counts, run_grid
    from harness.run.grid_ray import run_on_ray

    try:
        with Live(grid_table(plan, started), console=console, refresh_per_second=1) as live:
            refresh = lambda: live.update(grid_table(plan, started))  # noqa: E731
            if ray is not None:
                run_on_ray(ray, plan, db, refresh)
            else:
                run_grid(plan, db, refresh, workers=workers)
    finally:
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts(plan).items()))
        console.print(escape(f"grid of {len(plan.cells)} cells: {summary}"))
    if any(c.state == "failed" for c in plan.cells):
        raise XRBenchError("some cells failed; their errors are in the table and in `xrbench runs`")
