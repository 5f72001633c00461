"""`xrbench submit`, `verify` and `import`: submission bundles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from harness.cli.common import add_db, board_files, console, db_path, err_console, fmt, safe
from harness.core.errors import XRBenchError, noted


def add_commands(sub: Any) -> None:
    p = sub.add_parser("submit", help="write a run's submission bundle (predictions, metrics, provenance)")
    p.add_argument("run_id", help="a run of the results database (see xrbench runs)")
    p.add_argument(
        "--out", default=None, help="folder (default: leaderboards/submissions/<board>/<method>/<date>-<id>)"
    )
    p.add_argument("--maps", action="store_true", help="include the run's maps (to verify its localization metrics)")
    p.add_argument(
        "--external-url", default=None, metavar="URL",
        help="keep the parquet files outside the repository: move them to --external-dir and name them in "
        "external.toml with their address URL/<bundle folder>/<file> (upload them there)",
    )  # fmt: skip
    p.add_argument("--external-dir", default=None, metavar="DIR", help="where --external-url's files are moved")
    add_db(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("verify", help="verify submission bundles: checksums, ids, re-scoring, reported vs verified")
    p.add_argument("paths", nargs="+", metavar="PATH", help="bundle folders, or folders holding bundles")
    p.add_argument("--rerun", action="store_true", help="also run the method again on CPU and compare predictions")
    p.add_argument("--board", action="append", default=[], metavar="FILE", help="a board file not in leaderboards/")
    p.add_argument("--quiet", action="store_true", help="no reported-vs-verified tables, one line per bundle")
    p.add_argument(
        "--external", default=None, metavar="DIR",
        help="local copies of bundles' external files, as DIR/<bundle folder name>/<file> (nothing is downloaded)",
    )  # fmt: skip
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("import", help="load verified bundles into the results database (for the site)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="bundle folders, or folders holding bundles")
    p.add_argument(
        "--unverified",
        action="store_true",
        help="import failing bundles too, flagged and never ranked (one that cannot be read is skipped)",
    )
    p.add_argument("--board", action="append", default=[], metavar="FILE", help="a board file not in leaderboards/")
    p.add_argument(
        "--external", default=None, metavar="DIR",
        help="local copies of bundles' external files, as DIR/<bundle folder name>/<file> (nothing is downloaded)",
    )  # fmt: skip
    add_db(p)
    p.set_defaults(func=cmd_import)


def cmd_submit(args: argparse.Namespace) -> None:
    from harness.results.store import ResultStore
    from harness.submissions.bundles import write_bundle

    if bool(args.external_url) != bool(args.external_dir):
        raise XRBenchError("--external-url and --external-dir go together")
    with ResultStore(db_path(args)) as store:
        out = write_bundle(store, args.run_id, Path(args.out) if args.out else None, maps=args.maps)
    size = sum(p.stat().st_size for p in out.iterdir())
    console.print(safe(f"bundle written to {out} ({size / 1024:.0f} KiB); check it with: xrbench verify {out}"))
    if args.external_url:
        from harness.submissions.external import externalize

        moved = externalize(out, Path(args.external_dir), args.external_url)
        where = f"{args.external_url.rstrip('/')}/{out.name}/"
        console.print(safe(
            f"moved {', '.join(p.name for p in moved)} to {moved[0].parent}: upload them to {where}; "
            f"verify with: xrbench verify {out} --external {args.external_dir}"
        ))  # fmt: skip


def verification_table(v: object) -> Table:
    """The clean test metrics of a bundle: reported beside verified."""
    frame = v.comparison  # type: ignore[attr-defined]
    shown = frame[frame["key"].str.startswith("clean s0 all ") & (frame["column"] == "value")]
    shown = shown[~shown["key"].str.endswith(("_platt", "_isotonic"))]  # calibrated variants: in the CSVs
    b = v.bundle  # type: ignore[attr-defined]
    table = Table(title=safe(f"{b.board} · {b.method} · run {b.run_id}: reported vs verified, clean test"))
    for col in ("metric", "reported", "verified", "difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in shown.itertuples():
        a, b = r.reported, r.verified
        numbers = all(isinstance(x, (int, float)) and x == x for x in (a, b))
        diff = f"{b - a:+.2e}" if numbers else ""
        style = "bold red" if r.differs else None
        table.add_row(safe(r.key.removeprefix("clean s0 all ")), fmt(a), fmt(b), diff, style=style)
    return table


def cmd_verify(args: argparse.Namespace) -> None:
    from harness.public import verify
    from harness.submissions.verify import bundle_folders

    bundles = bundle_folders([Path(p) for p in args.paths])
    if not bundles:
        console.print(safe(f"no bundles under {', '.join(args.paths)}"))
        return
    boards = board_files(args.board)
    failed = []
    for path in bundles:
        with err_console.status(safe(f"verifying {path}")):
            v = verify(path, rerun=args.rerun, boards=boards, external=args.external)
        if v.comparison is not None and not args.quiet:
            console.print(verification_table(v))
        for note in v.notes:
            console.print(safe(f"  note: {note}"), style="dim")
        console.print(("[green]ok[/] " if v.ok else "[bold red]FAILED[/] ") + safe(v.summary()))
        if not v.ok:
            failed.append(v)
    if failed:
        raise XRBenchError(f"{len(failed)} of {len(bundles)} bundles failed verification")
    console.print(f"all {len(bundles)} bundles verified")


def cmd_import(args: argparse.Namespace) -> None:
    from harness.results.store import ResultStore
    from harness.submissions.importing import import_bundle
    from harness.submissions.verify import bundle_folders

    bundles = bundle_folders([Path(p) for p in args.paths])
    boards = board_files(args.board)
    counts: dict[str, int] = {}
    refused = []
    with ResultStore(db_path(args)) as store:
        for path in bundles:
            try:
                with err_console.status(safe(f"verifying {path}")), noted(f"importing the bundle {path}"):
                    outcome, v = import_bundle(
                        store, path, boards, unverified=args.unverified,
                        external=Path(args.external) if args.external else None,
                    )  # fmt: skip
            except XRBenchError as exc:  # unreadable, or failed without --unverified: the others go on
                refused.append(path)
                err_console.print(f"[bold red]not imported:[/] {safe(str(exc))}")
                continue
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            shown = "imported" if outcome.status != "unchanged" else "already imported"
            flag = "" if v.ok else f" (flagged: check '{v.failed}' failed: {v.message})"
            console.print(safe(f"{shown}: {path} as run {outcome.run_id}{flag}"))
    counts.update({"not imported": len(refused)} if refused else {})
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"
    console.print(safe(f"{len(bundles)} bundles: {summary}"))
    if refused and not args.unverified:
        raise XRBenchError(f"{len(refused)} of {len(bundles)} bundles were not imported (first: {refused[0]})")
