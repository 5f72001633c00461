"""The static leaderboard site: DuckDB in, Jinja2 templates out, browsable from file://.

Everything a page shows comes from the results database, downstream of the run and of the
leaderboard's assembly (`harness.results.leaderboard`): ranks, tie marks and corruption errors are
read from the `leaderboard` table, method cards from the runs that used them, board editions
from the `boards` table. Building the site imports neither torch nor the method registry and
reads no board file. Plots are SVG files made at build time and loaded through <img> (so
nothing in them can run), every table is also written as CSV and JSON, and the pages need no
network. One module per page: `board_page`, `method_page`, `run_page`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from harness.core.paths import project_root
from harness.results import queries
from harness.results.store import ResultStore
from harness.site.board_page import board_page, board_table
from harness.site.method_page import method_page
from harness.site.render import Pages
from harness.site.run_page import run_page

INDEX_COLUMNS = ("board", "task", "primary", "methods", "best_method", "best_value", "updated")


def build_site(db: Path, out: Path) -> Path:
    """Write the site into `out` (emptied first); returns its index page."""
    with ResultStore(db) as store:
        return build(store, out)


def build(store: ResultStore, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(project_root() / "site" / "static", out / "static")
    pages = Pages(out, project_root() / "site" / "templates")
    runs = queries.ok_runs(store)
    board_names = sorted(runs["board"].unique()) if not runs.empty else []
    tables = {board: board_table(store, board) for board in board_names}
    boards = [board_page(pages, store, board, tables[board]) for board in board_names]
    index = pd.DataFrame([{k: b[k] for k in INDEX_COLUMNS} for b in boards])
    pages.write("index.html", "index.html", boards=boards, index=pages.export(index, "boards"))
    for method in sorted(runs["method"].unique()) if not runs.empty else []:
        method_page(pages, store, method, tables)
    for run in runs.itertuples():
        run_page(pages, store, run.run_id)
    pages.render_plots()
    return out / "index.html"
