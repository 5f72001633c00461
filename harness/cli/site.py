"""`xrbench site`: the static leaderboard site."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.cli.common import add_db, console, db_path, err_console
from harness.core.errors import XRBenchError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("site", help="build the static leaderboard site from the results database")
    add_db(p)
    p.add_argument(
        "--out",
        default=None,
        help="output folder: new, empty or a site built before, replaced whole at the end (default: site/_build)",
    )
    p.add_argument(
        "--repository",
        default=os.environ.get("XRBENCH_REPOSITORY", ""),
        help="the project's repository URL (https://github.com/OWNER/NAME): run pages link each code file there "
        "at the run's commit (default: $XRBENCH_REPOSITORY; none: no links)",
    )
    p.set_defaults(func=cmd_site)


def cmd_site(args: argparse.Namespace) -> None:
    from harness.boards.files import available_boards, load_board
    from harness.boards.spec import board_edition
    from harness.core.paths import workspace_root
    from harness.results.leaderboard import assemble_all
    from harness.results.store import ResultStore
    from harness.site.builder import build_site, check_site_folder

    db = db_path(args)
    if not db.exists():
        raise XRBenchError(f"no results database at {db}; run a method first: make bench METHOD=patchcore")
    out = Path(args.out) if args.out else workspace_root() / "site" / "_build"
    check_site_folder(db, Path(os.path.abspath(out)))
    with ResultStore(db) as store:
        for board in available_boards():  # their reported numbers are shown, runs or not
            store.record_board(board_edition(load_board(board)))
        assembled = assemble_all(store)
    if assembled:
        err_console.print(f"leaderboards assembled from the stored runs: {escape(', '.join(assembled))}")
    if args.repository and not args.repository.startswith(("https://", "http://")):
        raise XRBenchError(f"--repository {args.repository!r} is not an http(s) URL")
    index = build_site(db, out, args.repository)
    console.print(escape(f"site written to {out}; open file://{index.resolve()}"))
