"""The static leaderboard site: DuckDB in, Jinja2 templates out, browsable from file://.

Everything a page shows comes from the results database, downstream of the run and of the
leaderboard's assembly (`harness.results.leaderboard`): ranks, tie marks and corruption errors are
read from the `leaderboard` table, method cards from the runs that used them, board editions
from the `boards` table. Building the site imports neither torch nor the method registry and
reads no board file. Plots are SVG files made at build time and loaded through <img> (so
nothing in them can run), every table is also written as CSV and JSON, and the pages need no
network. One module per page: `board_page`, `method_page`, `run_page`.

A build never deletes what it did not write: it goes into a new hidden sibling of `--out` and
is swapped in at the end, so an interruption leaves the previous site whole, and an existing
`--out` is replaced only when it is an xrbench site (it holds `MARKER`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from harness.core.errors import XRBenchError, noted
from harness.core.paths import project_root
from harness.results import queries
from harness.results.store import ResultStore
from harness.site.backbones_page import backbones_page
from harness.site.board_page import TRACKS, board_page, board_table, track_rows, variant_of
from harness.site.compare_page import compare_index, compare_page, top_pairs
from harness.site.glossary import glossary_page
from harness.site.method_page import method_page, methods_index
from harness.site.render import Pages
from harness.site.run_page import run_page

INDEX_COLUMNS = ("board", "task", "primary", "methods", "best_method", "best_value", "updated")
MARKER = ".xrbench-site"
"""The file that marks a folder as a site xrbench built, which a rebuild may replace."""


def build_site(db: Path, out: Path, repository: str = "") -> Path:
    """Build the site and put it at `out` (a new folder, or a site built before, replaced
    whole at the end); returns its index page. With a `repository` URL, code references link
    to its files at each run's commit."""
    out = Path(os.path.abspath(out))
    check_site_folder(Path(db), out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        with ResultStore(db) as store:
            build(store, building, repository)
        building.chmod(0o755)  # a temporary folder is private; a site is read by a web server
        (building / MARKER).write_text("built by xrbench site; a rebuild replaces this folder whole\n")
        swap_in(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return out / "index.html"


def check_site_folder(db: Path, out: Path) -> None:
    """Refuse an `--out` whose replacement would delete something that is not a site."""
    if Path(os.path.abspath(db)).is_relative_to(out) or db.resolve().is_relative_to(out.resolve()):
        raise XRBenchError(f"--out {out} holds the results database {db}; choose a folder beside it")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise XRBenchError(f"--out {out} is not a folder; choose a new folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise XRBenchError(
            f"--out {out} is not empty and is not a site xrbench built (no {MARKER} in it); "
            "choose a new or empty folder"
        )


def swap_in(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`, replacing the previous site only now."""
    if not out.exists():
        os.replace(new, out)
        return
    previous = out.parent / f".{out.name}.previous-{os.getpid()}"
    os.replace(out, previous)
    os.replace(new, out)
    shutil.rmtree(previous, ignore_errors=True)


def build(store: ResultStore, out: Path, repository: str = "") -> Path:
    """Write every page into the empty folder `out`."""
    shutil.copytree(project_root() / "site" / "static", out / "static")
    pages = Pages(out, project_root() / "site" / "templates", repository)
    runs = queries.ok_runs(store)
    ranked = set(runs["board"]) if not runs.empty else set()
    variants = {b: v for b in ranked if (v := variant_of(store, b))}  # few-shot variants: shown under their parent
    parents = {v["parent"] for v in variants.values()}
    board_names = sorted(ranked | parents | set(queries.boards_with_reported_numbers(store)))
    tables = {board: board_table(store, board) for board in board_names}
    pairs = top_pairs({b: t for b, t in tables.items() if b not in variants})
    boards = []
    for board in board_names:
        own = {b: tables[b] for b, v in variants.items() if v["parent"] == board}
        tracks = {key: track_rows(own, variants, key) for key in TRACKS}
        with noted(f"building the page of board {board}"):
            boards.append(board_page(pages, store, board, tables[board], pairs, tracks))
    index = pd.DataFrame([{k: b[k] for k in INDEX_COLUMNS} for b in boards if b["board"] not in variants])
    shown = [b for b in boards if b["board"] not in variants]
    pages.write("index.html", "index.html", boards=shown, index=pages.export(index, "boards"))
    glossary_page(pages)
    backbones_page(pages)
    methods_index(pages, store)
    for method in sorted(runs["method"].unique()) if not runs.empty else []:
        with noted(f"building the page of method {method}"):
            method_page(pages, store, method, tables)
    compare_index(pages, pairs)
    for a, b in pairs:
        with noted(f"building the comparison of {a} and {b}"):
            compare_page(pages, store, a, b, tables)
    for run in runs.itertuples():
        with noted(f"building the page of run {run.run_id}"):
            run_page(pages, store, run.run_id)
    pages.render_plots()
    return out / "index.html"
