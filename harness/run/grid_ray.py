"""`xrbench grid --executor ray`: each cell a Ray task, the driver the database's only writer.

A task runs its cell (load, fit, predict, score) into a private DuckDB file on its worker and
returns that file's rows; the driver adds them to the results database in one transaction,
so no two processes ever write it. Ray retries a task whose worker died once; a second death
fails the cell. Ray is an optional extra (`pip install 'xrbench[ray]'`).
"""

from __future__ import annotations

import importlib
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.core.errors import DatabaseLocked, XRBenchError
from harness.results.store import ResultStore, keep_exported
from harness.run.grid import Cell, Plan, registering_modules, run_cell
from harness.run.spec import RunOptions

CONNECT_TIMEOUT_SECONDS = 5.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise XRBenchError(
            "--executor ray needs the ray package: pip install 'xrbench[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


def connect(address: str | None, cpus: int | None) -> Any:
    """Start a local Ray cluster (`address=None`, with `cpus` CPUs) or join an existing one;
    an address that does not answer is refused before Ray is asked (it would wait forever)."""
    ray = import_ray()
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad cluster
        raise XRBenchError(f"cannot connect to the Ray cluster at {address}: {exc}; nothing was started") from exc
    return ray


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise XRBenchError(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise XRBenchError(
            f"cannot reach the Ray cluster at {address} ({exc}); nothing was started. Start one with "
            "`ray start --head` on its head node, or check the address"
        ) from None


def gpu_cells(ray: Any, options: RunOptions) -> bool:
    """Whether each cell asks Ray for a GPU: `cuda` always, `auto` when the cluster has one."""
    if options.device == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return options.device.startswith("cuda")


def worker_device(ray: Any, options: RunOptions) -> RunOptions:
    """The options as the workers run them: `auto` resolved from the cluster, not this machine."""
    if options.device != "auto":
        return options
    return replace(options, device="cuda" if gpu_cells(ray, options) else "cpu")


def cell_task(cell: Cell, paths: list[str], modules: list[str]) -> tuple[Cell, dict]:
    """Run on a Ray worker: the cell into a private database, returned as its tables."""
    sys.path.extend(p for p in paths if p not in sys.path)
    for module in modules:
        importlib.import_module(module)
    folder = Path(tempfile.mkdtemp(prefix="xrbench-cell-"))
    try:
        run_cell(cell, folder / "cell.duckdb")
        with ResultStore(folder / "cell.duckdb") as store:
            return cell, store.export_runs()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_on_ray(ray: Any, plan: Plan, db: Path, on_change: Callable[[], None]) -> None:
    """Submit every pending cell as a task; store each result as it arrives (Ctrl-C cancels
    what is unfinished and keeps what was stored)."""
    pending = [c for c in plan.cells if c.state == "pending"]
    gpus = 1 if any(c.spec.options.device.startswith("cuda") for c in pending) else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(cell_task)
    setup = (list(sys.path), registering_modules(pending))
    refs = {task.remote(cell, *setup): cell for cell in pending}
    for cell in pending:
        cell.state = "queued"
    on_change()
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            _finish(ray, ready[0], refs.pop(ready[0]), db)
            on_change()
    except KeyboardInterrupt:
        for ref, cell in refs.items():
            ray.cancel(ref, force=True)
            cell.state, cell.error = "interrupted", "stopped by Ctrl-C before it finished; nothing of it was stored"
        raise


def _finish(ray: Any, ref: Any, cell: Cell, db: Path) -> None:
    """Copy a finished task's outcome onto its cell and its rows into the database."""
    try:
        finished, tables = ray.get(ref)
    except ray.exceptions.RayError as exc:
        cell.state, cell.error = "failed", _ray_failure(exc)
        return
    cell.take_outcome(finished)
    try:
        with ResultStore(db) as store:
            store.import_runs(tables)
    except DatabaseLocked as exc:
        kept = keep_exported(db, tables)
        cell.state = "failed"
        cell.error = f"{exc}; the finished run is kept in {kept}: load it with `xrbench runs --load-pending`"


def _ray_failure(exc: Exception) -> str:
    name = type(exc).__name__
    if "WorkerCrashed" in name or "NodeDied" in name or "OutOfMemory" in name:
        return f"its Ray worker died twice ({name}: killed, out of memory, or its node was lost)"
    return f"{name}: {str(exc).splitlines()[0] if str(exc) else ''}"


def shutdown(ray: Any) -> None:
    if ray.is_initialized():
        ray.shutdown()
