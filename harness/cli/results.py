"""`xrbench runs`, `score`, `compare` and `explain`: what the results database holds."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.cli.common import add_db, console, db_path, fmt
from harness.core.errors import XRBenchError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("runs", help="list recent runs in the results database")
    add_db(p)
    p.add_argument("--limit", type=int, default=20, help="runs shown, newest first (default: 20)")
    p.add_argument("--mark-stale", action="store_true", help="mark runs whose process is gone as failed")
    p.add_argument("--load-pending", action="store_true", help="load runs kept aside while the database was locked")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("score", help="recompute a stored run's metrics from its stored predictions")
    p.add_argument("run_id", help="a run of the results database (see xrbench runs)")
    add_db(p)
    p.add_argument("--limit", type=int, default=30, help="differences shown (default: 30)")
    p.add_argument("--board", default=None, help="the board file, when it is not leaderboards/<run's board>.toml")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "compare", help="paired test of two runs on the same test images, or of two methods across seeds (--seeds)"
    )
    p.add_argument("run_a", metavar="A", help="a run id (with --seeds: a method)")
    p.add_argument("run_b", metavar="B", help="a run id (with --seeds: a method)")
    p.add_argument("--seeds", action="store_true", help="compare methods A and B across their seeds, paired by seed")
    p.add_argument("--board", default=None, help="with --seeds: the board")
    p.add_argument("--condition", default="clean", help="clean or a corruption name (default: clean)")
    p.add_argument("--severity", type=int, default=0, help="the corruption's severity (default: 0, clean)")
    p.add_argument("--metric", default="auroc", help="auroc (default), auprc, sens@95spec; anomaly: spec@95sens, f1max")
    add_db(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="one image of a run: the input, its map and its ground truth, as a PNG")
    p.add_argument("run_id", help="a run of the results database (see xrbench runs)")
    p.add_argument("image_id", help="a validation or test image of the run's board")
    p.add_argument("--out", default=None, help="PNG file (default: <run id>-<image id>.png here)")
    p.add_argument("--board", default=None, help="the board file, when it is not leaderboards/<run's board>.toml")
    p.add_argument("--finding", default=None, help="multi-label boards: whose map (default: the image's first finding)")
    add_db(p)
    p.set_defaults(func=cmd_explain)


def cmd_runs(args: argparse.Namespace) -> None:
    from harness.results import queries
    from harness.results.store import ResultStore

    with ResultStore(db_path(args)) as store:
        if args.load_pending:
            loaded = store.load_pending()
            console.print(escape(f"loaded {len(loaded)} pending runs: {', '.join(loaded) or 'none'}"))
        stale = store.stale_runs()
        if args.mark_stale:
            for run_id in stale:
                store.fail_run(run_id, "the process running it ended without recording an outcome (killed?)")
            console.print(escape(f"marked {len(stale)} stale runs failed: {', '.join(stale) or 'none'}"))
            stale = []
        frame = queries.recent_runs(store, args.limit)
    table = Table(title="recent runs (clean test AUROC)")
    table.add_column("run id", no_wrap=True)
    for col in ("board", "method", "status", "started"):
        table.add_column(col)
    table.add_column("AUROC", justify="right", no_wrap=True, min_width=5)  # never cut to "0.…"
    table.add_column("error", overflow="ellipsis", no_wrap=True, ratio=1)
    for r in frame.itertuples(index=False):
        auroc = "" if r.auroc is None or r.auroc != r.auroc else f"{r.auroc:.3f}"
        error = "" if not isinstance(r.error, str) else r.error.splitlines()[0][:80]
        status = "running (stale: its process is gone)" if r.run_id in stale else r.status
        started = f"{r.started_at:%Y-%m-%d %H:%M}"
        table.add_row(*map(escape, (r.run_id, r.board, r.method, status, started, auroc, error)))
    console.print(table)
    if stale:
        console.print(f"{len(stale)} stale runs: mark them failed with `xrbench runs --mark-stale`")


def cmd_compare(args: argparse.Namespace) -> None:
    from harness.results.compare import compare_runs
    from harness.results.store import ResultStore

    if args.seeds:
        _compare_seeds(args)
        return
    if args.board:
        raise XRBenchError("--board is for --seeds (two methods across seeds); two runs need no board")
    with ResultStore(db_path(args)) as store:
        c = compare_runs(store, args.run_a, args.run_b, args.condition, args.severity, metric=args.metric)
    title = f"{args.run_a} vs {args.run_b} ({args.condition}, severity {args.severity}, test split)"
    table = Table(title=escape(title))
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row(escape(f"{c.metric} A"), fmt(c.value_a))
    table.add_row(escape(f"{c.metric} B"), fmt(c.value_b))
    table.add_row("difference A - B", f"{c.difference:+.3f}  [{c.ci_low:+.3f}, {c.ci_high:+.3f}]")
    no_delong = math.isnan(c.delong_p)
    table.add_row("DeLong p", "n/a (for the AUROC of one score per image)" if no_delong else f"{c.delong_p:.4g}")
    table.add_row("paired patient-bootstrap p", f"{c.bootstrap_p:.4g}")
    console.print(table)
    verdict = "different" if max(p for p in (c.delong_p, c.bootstrap_p) if p == p) < 0.05 else "not distinguishable"
    rule = "the bootstrap decides" if no_delong else "both tests must agree to call a difference"
    console.print(f"At the 5% level the two runs are [bold]{verdict}[/] ({rule}).")


def _compare_seeds(args: argparse.Namespace) -> None:
    from harness.results.seeds import compare_seeds
    from harness.results.store import ResultStore

    if not args.board:
        raise XRBenchError("--seeds compares two methods on a board: give --board NAME")
    with ResultStore(db_path(args)) as store:
        c = compare_seeds(store, args.board, args.run_a, args.run_b)
    table = Table(title=escape(f"{args.run_a} vs {args.run_b} on {args.board}: clean test {c.metric}, by seed"))
    for col in ("seed", args.run_a, args.run_b, "difference"):
        table.add_column(escape(col), justify="right")
    for r in c.pairs.itertuples():
        table.add_row(str(r.seed), fmt(r.value_a), fmt(r.value_b), f"{r.difference:+.3f}")
    console.print(table)
    n = len(c.pairs)
    spread = "" if n < 2 else f" ± {c.std_difference:.3f} (sd across seeds)"
    test = "n/a (needs two seeds that differ)" if math.isnan(c.t_p) else f"{c.t_p:.4g}"
    console.print(escape(f"mean difference {c.mean_difference:+.3f}{spread}; {args.run_a} higher on {c.wins_a} of "
                         f"{n} seeds; paired t-test across seeds p = {test}"))  # fmt: skip


def cmd_score(args: argparse.Namespace) -> None:
    from harness.results.rescore import rescore_run
    from harness.results.store import ResultStore

    with ResultStore(db_path(args)) as store:
        report = rescore_run(store, args.run_id, args.board)
    counted = ", ".join(f"{n} {table}" for table, n in report.compared.items())
    if report.identical:
        console.print(f"run {escape(args.run_id)}: identical ({counted} values recomputed from its predictions)")
        return
    table = Table(title=escape(f"run {args.run_id}: {len(report.differences)} values differ ({counted} compared)"))
    for col in ("table", "key", "column", "stored", "now"):
        table.add_column(col)
    for d in report.differences[: args.limit]:
        table.add_row(*(escape(str(d[k])) for k in ("table", "key", "column", "stored", "now")))
    console.print(table)
    raise XRBenchError(f"run {args.run_id}: {len(report.differences)} stored values differ from a fresh scoring")


def cmd_explain(args: argparse.Namespace) -> None:
    from harness.results.explain import explain_image
    from harness.results.store import ResultStore

    with ResultStore(db_path(args)) as store:
        out, note = explain_image(
            store, args.run_id, args.image_id, args.board, Path(args.out) if args.out else None, args.finding
        )
    console.print(escape(f"wrote {out}" + (f" ({note})" if note else "")))
