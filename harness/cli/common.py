"""What every command group shares: the consoles, number formatting, common options."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.core.errors import XRBenchError, printable

# Messages stay one line however long (a path is copied whole); tables fit the terminal.
# Emoji codes stay as written: a message may quote a bundle's text (`:skull:`).
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


def safe(text: str) -> str:
    """Text quoted from a file or bundle, printable as written: no markup, no terminal control."""
    return escape(printable(text))


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


def seed_list(text: str, option: str = "--seeds", low: int = 0) -> list[int]:
    """Whole numbers separated by commas (`--seeds`, `--shots`), each from `low` to 2^31 - 1."""
    from harness.core.limits import INT32_MAX

    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise XRBenchError(f"{option} {text!r}: expected integers separated by commas, such as 0,1,2") from None
    bad = [s for s in seeds if not low <= s <= INT32_MAX]
    if bad:
        raise XRBenchError(f"{option}: {bad[0]} is out of range ({low} to {INT32_MAX})")
    return seeds


def board_files(paths: list[str]) -> dict[str, Path]:
    """--board FILE options: board name -> file, for boards that are not in leaderboards/."""
    from harness.boards.files import load_board

    return {load_board(p).name: Path(p) for p in paths}
