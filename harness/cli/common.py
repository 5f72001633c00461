"""What every command group shares: the consoles, number formatting, common options."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.core.errors import XRBenchError

# Messages stay one line however long (a path is copied whole); tables fit the terminal.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fmt(x: float | str | None) -> str:
    """A metric for a table: three decimals, `n/a` when missing."""
    if isinstance(x, str):  # "(absent)" in a verification
        return x
    return "n/a" if x is None or x != x else f"{x:.3f}"


def db_path(args: argparse.Namespace) -> Path:
    """The results database of a command: `--db`, else $XRBENCH_DB or the workspace's."""
    from harness.core.paths import default_db

    return Path(args.db) if getattr(args, "db", None) else default_db()


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="DuckDB file (default: $XRBENCH_DB or results/xrbench.duckdb)")


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise XRBenchError(f"--seeds {text!r}: expected integers separated by commas, such as 0,1,2") from None


def board_files(paths: list[str]) -> dict[str, Path]:
    """--board FILE options: board name -> file, for boards that are not in leaderboards/."""
    from harness.boards.files import load_board

    return {load_board(p).name: Path(p) for p in paths}
