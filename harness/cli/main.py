"""The `xrbench` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from harness.core.errors import XRBenchError
from harness.core.precision import PRECISIONS

if TYPE_CHECKING:
    from harness.run.runner import BenchResult

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


def cmd_list(args: argparse.Namespace) -> None:
    from harness.api.registry import broken_plugins, discover
    from harness.boards.files import available_boards, load_board

    if args.what in ("methods", "all"):
        table = Table(title="methods")
        for col in ("name", "family", "tasks", "learns from", "maps", "description"):
            table.add_column(col)
        for name, cls in discover().items():
            card = cls.card
            maps = "yes" if card.produces_maps else ""
            table.add_row(
                *map(escape, (name, card.family, ", ".join(card.tasks), card.learning, maps, card.description))
            )
        console.print(table)
        for name, error in broken_plugins().items():
            err_console.print(f"[yellow]plugin {escape(name)} could not be loaded:[/] {escape(error)}")
    if args.what in ("boards", "all"):
        table = Table(title="boards")
        for col in ("name", "task", "dataset", "resolution", "description"):
            table.add_column(col)
        for name in available_boards():
            b = load_board(name)
            table.add_row(*map(escape, (b.name, b.task, b.dataset.name, str(b.resolution), b.description)))
        console.print(table)


def _fmt(x: float | str | None) -> str:
    if isinstance(x, str):  # "(absent)" in a verification
        return x
    return "n/a" if x is None or x != x else f"{x:.3f}"


def cmd_bench(args: argparse.Namespace) -> None:
    from harness.api.registry import parse_params
    from harness.results.leaderboard import assemble, run_entry
    from harness.results.store import ResultStore
    from harness.run.runner import run_bench

    result = run_bench(
        args.method,
        args.board,
        seed=args.seed,
        params=parse_params(args.param),
        db=Path(args.db) if args.db else None,
        device=args.device,
        console=err_console,
        corruptions=not args.no_corruptions,
        precision=args.precision,
        explain=args.explain,
    )
    with ResultStore(result.db_path) as store:
        assemble(store, result.board)
        entry = run_entry(store, result.run_id)
        reference = store.query("SELECT reference_method FROM boards WHERE board = ? LIMIT 1", [result.board])
    print_summary(result, entry)
    corrupted = "mean_corrupted_auroc" in result.robustness
    if corrupted and entry.get("mce") is None and not reference.empty and reference.iloc[0, 0]:
        console.print(
            f"[yellow]note:[/] mCE needs a run of the reference method with the same conditions: "
            f"make bench METHOD={reference.iloc[0, 0]} BOARD={result.board}"
        )


def localization_table(rows: pd.DataFrame) -> Table:
    """Where the maps point: every image's map against the ground truth, all findings."""
    table = Table(title="localization (maps against the ground truth), 95% patient-bootstrap CI")
    for col in ("metric", "value", "95% CI", "n (with a finding)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in rows.itertuples():
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if pd.notna(r.ci_low) else "[dim]n/a[/]"
        table.add_row(r.metric, _fmt(r.value), ci, f"{r.n} ({r.n_pos})")
    return table


def print_summary(result: BenchResult, entry: dict) -> None:
    m = result.metrics
    clean = m[m["condition"] == "clean"]
    table = Table(title=escape(f"{result.method} on {result.board}: clean test split, 95% patient-bootstrap CI"))
    for col, justify in (
        ("slice", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("95% CI", "right"),
        ("n (abnormal)", "right"),
    ):
        table.add_column(col, justify=justify)
    shown = clean[(clean["slice"] == "all") & clean["metric"].isin(["auroc", "auprc", "sens@95spec", "f1"])]
    shown = pd.concat([shown, clean[(clean["slice"] != "all") & (clean["metric"] == "auroc")]])
    for r in shown.itertuples():
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if pd.notna(r.ci_low) else "[dim]too few cases[/]"
        table.add_row(escape(r.slice), r.metric, _fmt(r.value), ci, f"{r.n} ({r.n_pos})")
    console.print(table)
    from harness.core.metrics import names

    located = clean[(clean["slice"] == "all") & clean["metric"].isin(names("localization"))]
    if not located.empty:
        console.print(localization_table(located))

    value = {(r.metric, r.condition): r.value for r in m[m["slice"] == "all"].itertuples()}
    rob = result.robustness
    summary = Table(title="robustness and calibration", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("clean AUROC", _fmt(rob["clean_auroc"]))
    if "mean_corrupted_auroc" in rob:
        summary.add_row("mean corrupted AUROC", _fmt(rob["mean_corrupted_auroc"]))
        worst = f"{rob['worst_condition']} s{rob['worst_severity']}: {_fmt(rob['worst_auroc'])}"
        summary.add_row("worst case", escape(worst))
        summary.add_row("mCE (vs reference method)", _fmt(entry.get("mce")))
    if ("ece_temperature", "clean") in value:  # multi-label: macro AUROC, logits calibrated by temperature
        summary.add_row("ECE before calibration (sigmoid)", _fmt(value[("ece_none", "clean")]))
        summary.add_row("ECE after temperature scaling", _fmt(value[("ece_temperature", "clean")]))
    else:
        summary.add_row("ECE before calibration (min-max)", _fmt(value[("ece_none", "clean")]))
        summary.add_row(
            "ECE after Platt / isotonic",
            f"{_fmt(value[('ece_platt', 'clean')])} / {_fmt(value[('ece_isotonic', 'clean')])}",
        )
        summary.add_row("AURC (Platt)", _fmt(value[("aurc", "clean")]))
    lat = result.latency.set_index("batch_size")
    summary.add_row(
        "fit time / peak memory", f"{result.fit_seconds:.1f} s / {result.fit_peak_memory_bytes / 2**20:.0f} MiB"
    )
    if 1 in lat.index:
        summary.add_row("latency p50 / p95 (batch 1)", f"{lat.loc[1, 'p50_ms']:.1f} / {lat.loc[1, 'p95_ms']:.1f} ms")
    for bs in lat.index[lat.index > 1]:
        summary.add_row(f"throughput (batch {bs})", f"{lat.loc[bs, 'throughput_ips']:.0f} images/s")
    summary.add_row("device", escape(str(lat["device"].iloc[0])))
    if result.maps_bytes:
        summary.add_row("maps stored (clean val + test, case study)", f"{result.maps_bytes / 2**20:.1f} MiB")
    if entry.get("rank"):
        tied = " (tied with the leader)" if entry.get("tied") else ""
        summary.add_row("rank on the leaderboard", f"{int(entry['rank'])}{tied}")
    console.print(summary)
    console.print(
        f"run [bold]{escape(result.run_id)}[/] stored in {escape(str(result.db_path))}  "
        f"(fit {result.fit_seconds:.1f}s, predict {result.predict_seconds:.1f}s, weights {escape(result.weights_id)})"
    )


def cmd_latency(args: argparse.Namespace) -> None:
    from harness.api.registry import parse_params
    from harness.run.latency import LatencyConfig
    from harness.run.runner import run_latency

    try:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise XRBenchError(f"--batch-sizes takes comma-separated integers, not {args.batch_sizes!r}") from None
    configs = tuple(
        LatencyConfig(
            batch_size=b,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            warmup=args.warmup,
            iterations=args.iterations,
        )
        for b in sizes
    )
    frame = run_latency(
        args.method,
        args.board,
        configs,
        seed=args.seed,
        params=parse_params(args.param),
        db=Path(args.db) if args.db else None,
        device=args.device,
        console=err_console,
    )
    first = frame.iloc[0]
    title = f"{args.method} on {args.board}: {first['device']}, {first['timer']}, {first['threads']} threads, "
    table = Table(title=escape(title + f"{args.precision}, {first['resolution']} px"))
    for col in (
        "batch",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "host p50 ms",
        "images/s",
        "peak MiB",
        "params",
        "bank MiB",
        "GFLOPs/img",
        "compile s",
    ):
        table.add_column(col, justify="right")
    for r in frame.itertuples():
        table.add_row(
            str(r.batch_size),
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.host_p50_ms:.2f}",
            f"{r.throughput_ips:.1f}",
            f"{r.peak_memory_bytes / 2**20:.1f}",
            f"{r.param_count:,}",
            f"{r.bank_bytes / 2**20:.1f}",
            "n/a"
            if r.flops_per_image is None or r.flops_per_image != r.flops_per_image
            else f"{r.flops_per_image / 1e9:.3f}",
            "-" if r.compile_seconds is None or r.compile_seconds != r.compile_seconds else f"{r.compile_seconds:.1f}",
        )
    console.print(table)
    console.print(
        f"{args.warmup} warm-up and {args.iterations} timed calls of predict() per batch size, on "
        "preprocessed tensors in memory (data loading excluded); stored in the latency table"
    )


def cmd_site(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db, project_root
    from harness.results.leaderboard import assemble_all
    from harness.results.store import ResultStore
    from harness.site.builder import build_site

    db = Path(args.db) if args.db else default_db()
    if not db.exists():
        raise XRBenchError(f"no results database at {db}; run a method first: make bench METHOD=patchcore")
    with ResultStore(db) as store:
        assembled = assemble_all(store)
    if assembled:
        err_console.print(f"leaderboards assembled from the stored runs: {escape(', '.join(assembled))}")
    out = Path(args.out) if args.out else project_root() / "site" / "_build"
    index = build_site(db, out)
    console.print(escape(f"site written to {out}; open file://{index.resolve()}"))


def cmd_runs(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.store import ResultStore

    with ResultStore(args.db or default_db()) as store:
        if args.load_pending:
            loaded = store.load_pending()
            console.print(escape(f"loaded {len(loaded)} pending runs: {', '.join(loaded) or 'none'}"))
        stale = store.stale_runs()
        if args.mark_stale:
            for run_id in stale:
                store.fail_run(run_id, "the process running it ended without recording an outcome (killed?)")
            console.print(escape(f"marked {len(stale)} stale runs failed: {', '.join(stale) or 'none'}"))
            stale = []
        frame = store.query(
            "SELECT r.run_id, r.board, r.method, r.status, r.started_at, m.value AS auroc, r.error FROM runs r "
            "LEFT JOIN metrics m ON m.run_id = r.run_id AND m.metric = 'auroc' AND m.slice = 'all' "
            "AND m.condition = 'clean' ORDER BY r.started_at DESC LIMIT ?",
            [args.limit],
        )
    table = Table(title="recent runs (clean test AUROC)")
    table.add_column("run id", no_wrap=True)
    for col in ("board", "method", "status", "started", "AUROC", "error"):
        table.add_column(col, justify="right" if col == "AUROC" else "left")
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
    from harness.core.paths import default_db
    from harness.results.compare import compare_runs
    from harness.results.store import ResultStore

    if args.seeds:
        _compare_seeds(args)
        return
    if args.board:
        raise XRBenchError("--board is for --seeds (two methods across seeds); two runs need no board")
    with ResultStore(args.db or default_db()) as store:
        c = compare_runs(store, args.run_a, args.run_b, args.condition, args.severity, metric=args.metric)
    title = f"{args.run_a} vs {args.run_b} ({args.condition}, severity {args.severity}, test split)"
    table = Table(title=escape(title))
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row(escape(f"{c.metric} A"), _fmt(c.value_a))
    table.add_row(escape(f"{c.metric} B"), _fmt(c.value_b))
    table.add_row("difference A - B", f"{c.difference:+.3f}  [{c.ci_low:+.3f}, {c.ci_high:+.3f}]")
    no_delong = np.isnan(c.delong_p)
    table.add_row("DeLong p", "n/a (for the AUROC of one score per image)" if no_delong else f"{c.delong_p:.4g}")
    table.add_row("paired patient-bootstrap p", f"{c.bootstrap_p:.4g}")
    console.print(table)
    verdict = "different" if np.nanmax([c.delong_p, c.bootstrap_p]) < 0.05 else "not distinguishable"
    rule = "the bootstrap decides" if no_delong else "both tests must agree to call a difference"
    console.print(f"At the 5% level the two runs are [bold]{verdict}[/] ({rule}).")


def _compare_seeds(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.seeds import compare_seeds
    from harness.results.store import ResultStore

    if not args.board:
        raise XRBenchError("--seeds compares two methods on a board: give --board NAME")
    with ResultStore(args.db or default_db()) as store:
        c = compare_seeds(store, args.board, args.run_a, args.run_b)
    table = Table(title=escape(f"{args.run_a} vs {args.run_b} on {args.board}: clean test {c.metric}, by seed"))
    for col in ("seed", args.run_a, args.run_b, "difference"):
        table.add_column(escape(col), justify="right")
    for r in c.pairs.itertuples():
        table.add_row(str(r.seed), _fmt(r.value_a), _fmt(r.value_b), f"{r.difference:+.3f}")
    console.print(table)
    n = len(c.pairs)
    spread = "" if n < 2 else f" ± {c.std_difference:.3f} (sd across seeds)"
    test = "n/a (needs two seeds that differ)" if np.isnan(c.t_p) else f"{c.t_p:.4g}"
    console.print(escape(f"mean difference {c.mean_difference:+.3f}{spread}; {args.run_a} higher on {c.wins_a} of "
                         f"{n} seeds; paired t-test across seeds p = {test}"))  # fmt: skip


def cmd_score(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.rescore import rescore_run
    from harness.results.store import ResultStore

    with ResultStore(args.db or default_db()) as store:
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


def cmd_submit(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.store import ResultStore
    from harness.submissions.bundles import write_bundle

    with ResultStore(args.db or default_db()) as store:
        out = write_bundle(store, args.run_id, Path(args.out) if args.out else None, maps=args.maps)
    size = sum(p.stat().st_size for p in out.iterdir())
    console.print(escape(f"bundle written to {out} ({size / 1024:.0f} KiB); check it with: xrbench verify {out}"))


def _board_files(paths: list[str]) -> dict[str, Path]:
    """--board FILE options: board name -> file, for boards that are not in leaderboards/."""
    from harness.boards.files import load_board

    return {load_board(p).name: Path(p) for p in paths}


def verification_table(v: object) -> Table:
    """The clean test metrics of a bundle: reported beside verified."""
    frame = v.comparison  # type: ignore[attr-defined]
    shown = frame[frame["key"].str.startswith("clean s0 all ") & (frame["column"] == "value")]
    shown = shown[~shown["key"].str.endswith(("_platt", "_isotonic"))]  # calibrated variants: in the CSVs
    b = v.bundle  # type: ignore[attr-defined]
    table = Table(title=escape(f"{b.board} · {b.method} · run {b.run_id}: reported vs verified, clean test"))
    for col in ("metric", "reported", "verified", "difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in shown.itertuples():
        a, b = r.reported, r.verified
        numbers = all(isinstance(x, (int, float)) and x == x for x in (a, b))
        diff = f"{b - a:+.2e}" if numbers else ""
        style = "bold red" if r.differs else None
        table.add_row(escape(r.key.removeprefix("clean s0 all ")), _fmt(a), _fmt(b), diff, style=style)
    return table


def cmd_verify(args: argparse.Namespace) -> None:
    from harness.submissions.verify import bundle_folders, verify_bundle

    bundles = bundle_folders([Path(p) for p in args.paths])
    if not bundles:
        console.print(escape(f"no bundles under {', '.join(args.paths)}"))
        return
    boards = _board_files(args.board)
    failed = []
    for path in bundles:
        with err_console.status(escape(f"verifying {path}")):
            v = verify_bundle(path, rerun=args.rerun, boards=boards)
        if v.comparison is not None and not args.quiet:
            console.print(verification_table(v))
        for note in v.notes:
            console.print(escape(f"  note: {note}"), style="dim")
        console.print(("[green]ok[/] " if v.ok else "[bold red]FAILED[/] ") + escape(v.summary()))
        if not v.ok:
            failed.append(v)
    if failed:
        raise XRBenchError(f"{len(failed)} of {len(bundles)} bundles failed verification")
    console.print(f"all {len(bundles)} bundles verified")


def cmd_import(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.store import ResultStore
    from harness.submissions.importing import import_bundle
    from harness.submissions.verify import bundle_folders

    bundles = bundle_folders([Path(p) for p in args.paths])
    boards = _board_files(args.board)
    counts: dict[str, int] = {}
    with ResultStore(args.db or default_db()) as store:
        for path in bundles:
            with err_console.status(escape(f"verifying {path}")):
                outcome, v = import_bundle(store, path, boards, unverified=args.unverified)
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            shown = "imported" if outcome.status != "unchanged" else "already imported"
            flag = "" if v.ok else f" (flagged: check '{v.failed}' failed: {v.message})"
            console.print(escape(f"{shown}: {path} as run {outcome.run_id}{flag}"))
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"
    console.print(escape(f"{len(bundles)} bundles: {summary}"))


def grid_table(plan: object, started: float) -> Table:
    import time

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


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise XRBenchError(f"--seeds {text!r}: expected integers separated by commas, such as 0,1,2") from None


def cmd_grid(args: argparse.Namespace) -> None:
    import time

    from harness.api.registry import discover
    from harness.boards.files import available_boards
    from harness.core.paths import default_db
    from harness.run.grid import RunOptions, mark_done, parse_overrides, plan_grid, split_list
    from harness.run.grid_ray import shutdown, worker_device
    from harness.run.runner import resolve_device

    methods = split_list(args.methods, "methods")
    boards = split_list(args.boards, "boards") or available_boards()
    seeds = _seed_list(args.seeds) if args.seeds else None
    if args.workers is not None and args.workers < 1:
        raise XRBenchError(f"--workers must be at least 1, not {args.workers}")
    if args.address is not None and args.executor != "ray":
        raise XRBenchError("--address is for --executor ray")
    overrides = parse_overrides(args.param, methods or sorted(discover()))
    options = RunOptions(
        Path(args.db) if args.db else default_db(), args.device, not args.no_corruptions, args.precision
    )
    if args.executor == "local":
        resolve_device(options.device)  # refuses cuda on a machine without it, before any cell
    plan = plan_grid(methods, boards, seeds, overrides, options)  # bad names are refused before Ray starts
    ray = _ray_for_grid(args) if args.executor == "ray" and not args.dry_run else None
    try:
        if ray is not None and (on_workers := worker_device(ray, options)) != options:
            options, plan = on_workers, plan_grid(methods, boards, seeds, overrides, on_workers)
        mark_done(plan, options.db, args.force)
        for method, board, why in plan.skipped:
            console.print(escape(f"skipped {method} on {board}: {why}"), style="dim")
        started = time.perf_counter()
        if args.dry_run:
            console.print(grid_table(plan, started))
            return
        _run_grid_live(plan, options, started, ray, args.workers or 1)
    finally:
        if ray is not None:
            shutdown(ray)


def _ray_for_grid(args: argparse.Namespace) -> Any:
    from harness.run.grid_ray import connect

    with console.status("starting Ray" if args.address is None else f"connecting to Ray at {args.address}"):
        return connect(args.address, args.workers)


def _run_grid_live(plan: Any, options: Any, started: float, ray: Any, workers: int) -> None:
    from rich.live import Live

    from harness.run.grid import counts, run_grid
    from harness.run.grid_ray import run_on_ray

    try:
        with Live(grid_table(plan, started), console=console, refresh_per_second=1) as live:
            refresh = lambda: live.update(grid_table(plan, started))  # noqa: E731
            if ray is not None:
                run_on_ray(ray, plan, options, refresh)
            else:
                run_grid(plan, options, refresh, workers=workers)
    finally:
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts(plan).items()))
        console.print(escape(f"grid of {len(plan.cells)} cells: {summary}"))
    if any(c.state == "failed" for c in plan.cells):
        raise XRBenchError("some cells failed; their errors are in the table and in `xrbench runs`")


def cmd_explain(args: argparse.Namespace) -> None:
    from harness.core.paths import default_db
    from harness.results.explain import explain_image
    from harness.results.store import ResultStore

    with ResultStore(args.db or default_db()) as store:
        out, note = explain_image(
            store, args.run_id, args.image_id, args.board, Path(args.out) if args.out else None, args.finding
        )
    console.print(escape(f"wrote {out}" + (f" ({note})" if note else "")))


def _check_local(name: str, root: Path, decode: bool):
    """Read a local copy's metadata and check its files: (entries, file report), with a summary."""
    from rich.progress import track

    from harness.data.datasets import read_entries
    from harness.data.local import check_files

    entries = read_entries(name, root)
    report = check_files(
        root,
        entries["path"].drop_duplicates().tolist(),
        lambda it, text: track(it, description=text, console=err_console),
        decode,
    )
    table = Table(title=escape(f"{name} at {root}"))
    columns = ("entries listed", "files", "present", "missing", "unreadable", "normal", "abnormal", "no usable label")
    for column in columns:
        table.add_column(column, justify="right")
    label = entries["label"]
    counts = (
        len(entries),
        entries["path"].nunique(),  # fewer than entries when entries are crops of one file (DENTEX)
        report.present,
        len(report.missing),
        len(report.unreadable),
        int((label == 0).sum()),
        int((label == 1).sum()),
        int(label.isna().sum()),
    )
    table.add_row(*(str(x) for x in counts))
    console.print(table)
    if "official_split" in entries:
        split_counts = entries["official_split"].replace("", "(none)").value_counts().to_dict()
        console.print(escape("official split: " + ", ".join(f"{k} {v}" for k, v in split_counts.items())))
    for line in report.lines():
        console.print(escape(line))
    return entries, report


def cmd_data_check(args: argparse.Namespace) -> None:
    _, report = _check_local(args.name, Path(args.root).expanduser(), decode=not args.quick)
    if report.missing or report.unreadable:
        raise XRBenchError(f"{len(report.missing) + len(report.unreadable)} listed images cannot be used")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from harness.data.prepare import prepare_local_dataset

    root = Path(args.root).expanduser()
    entries, report = _check_local(args.name, root, decode=False)  # preparing decodes every image anyway
    result = prepare_local_dataset(args.name, root, entries, report)
    for line in result.lines():
        console.print(escape(line))


def cmd_split_freeze(args: argparse.Namespace) -> None:
    from harness.data.freeze import freeze_board

    frozen = freeze_board(args.board, force=args.force)
    what = f"{frozen.manifest} ({frozen.images} images), SHA-256 {frozen.sha256}"
    console.print(escape(f"wrote {what}, recorded in {frozen.board_file}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrbench", description="Benchmark harness for X-ray anomaly detection.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered methods and boards")
    p.add_argument("what", nargs="?", choices=("methods", "boards", "all"), default="all")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="run one method on one board and store the results")
    p.add_argument("--method", required=True)
    p.add_argument(
        "--board", default="synth-cxr-ad", help="board name or path to a board .toml (default: synth-cxr-ad)"
    )
    p.add_argument("--seed", type=int, default=None, help="default: the board's seed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--db", default=None, help="DuckDB file (default: $XRBENCH_DB or results/xrbench.duckdb)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-corruptions", action="store_true", help="skip the stress suite (clean test set only)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype of predict")
    p.add_argument(
        "--explain", choices=("gradcam", "gradcam++"), default=None, help="keep Grad-CAM maps of the method's score"
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("explain", help="one image of a run: the input, its map and its ground truth, as a PNG")
    p.add_argument("run_id")
    p.add_argument("image_id")
    p.add_argument("--out", default=None, help="PNG file (default: <run id>-<image id>.png here)")
    p.add_argument("--board", default=None, help="the board file, when it is not leaderboards/<run's board>.toml")
    p.add_argument("--finding", default=None, help="multi-label boards: whose map (default: the image's first finding)")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("score", help="recompute a stored run's metrics from its stored predictions")
    p.add_argument("run_id")
    p.add_argument("--db", default=None)
    p.add_argument("--limit", type=int, default=30, help="differences shown (default: 30)")
    p.add_argument("--board", default=None, help="the board file, when it is not leaderboards/<run's board>.toml")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("grid", help="run methods x boards x seeds; cells already done are skipped")
    p.add_argument("--methods", default="all", help="all (every method supporting the board's task) or m1,m2")
    p.add_argument("--boards", default="synth-cxr-ad", help="all or b1,b2 (default: synth-cxr-ad)")
    p.add_argument("--seeds", default=None, help="comma-separated (default: each board's seed)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE", help="a method's parameter")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-corruptions", action="store_true", help="clean test sets only")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--force", action="store_true", help="run cells again even when done")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes, or Ray tasks")
    p.add_argument(
        "--workers", type=int, default=None,
        help="local: cells at once, each in its own process (default: 1); ray: the local cluster's CPUs (default: all)",
    )  # fmt: skip
    p.add_argument("--address", default=None, help="ray: an existing cluster, HOST:PORT or auto (default: a local one)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and which are done; run nothing")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("submit", help="write a run's submission bundle (predictions, metrics, provenance)")
    p.add_argument("run_id")
    p.add_argument(
        "--out", default=None, help="folder (default: leaderboards/submissions/<board>/<method>/<date>-<id>)"
    )
    p.add_argument("--maps", action="store_true", help="include the run's maps (to verify its localization metrics)")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("verify", help="verify submission bundles: checksums, ids, re-scoring, reported vs verified")
    p.add_argument("paths", nargs="+", metavar="PATH", help="bundle folders, or folders holding bundles")
    p.add_argument("--rerun", action="store_true", help="also run the method again on CPU and compare predictions")
    p.add_argument("--board", action="append", default=[], metavar="FILE", help="a board file not in leaderboards/")
    p.add_argument("--quiet", action="store_true", help="no reported-vs-verified tables, one line per bundle")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("import", help="load verified bundles into the results database (for the site)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="bundle folders, or folders holding bundles")
    p.add_argument("--unverified", action="store_true", help="import failing bundles too, flagged and never ranked")
    p.add_argument("--board", action="append", default=[], metavar="FILE", help="a board file not in leaderboards/")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("latency", help="fit a method, then measure latency, throughput, memory and FLOPs")
    p.add_argument("--method", required=True)
    p.add_argument("--board", default="synth-cxr-ad")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated (default: 1,32)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the method's modules (timed separately)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("site", help="build the static leaderboard site from the results database")
    p.add_argument("--db", default=None, help="DuckDB file (default: $XRBENCH_DB or results/xrbench.duckdb)")
    p.add_argument("--out", default=None, help="output folder (default: site/_build)")
    p.set_defaults(func=cmd_site)

    p = sub.add_parser("runs", help="list recent runs in the results database")
    p.add_argument("--db", default=None)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--mark-stale", action="store_true", help="mark runs whose process is gone as failed")
    p.add_argument("--load-pending", action="store_true", help="load runs kept aside while the database was locked")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "compare", help="paired test of two runs on the same test images, or of two methods across seeds (--seeds)"
    )
    p.add_argument("run_a", metavar="A", help="a run id (with --seeds: a method)")
    p.add_argument("run_b", metavar="B", help="a run id (with --seeds: a method)")
    p.add_argument("--seeds", action="store_true", help="compare methods A and B across their seeds, paired by seed")
    p.add_argument("--board", default=None, help="with --seeds: the board")
    p.add_argument("--condition", default="clean", help="clean or a corruption name (default: clean)")
    p.add_argument("--severity", type=int, default=0)
    p.add_argument("--metric", default="auroc", help="auroc (default), auprc or sens@95spec")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("data", help="local copies of the real datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("check", help="what is there, missing or unreadable (decodes every image; writes nothing)")
    q.add_argument("name", choices=("nih", "chexpert", "mimic", "dental"))
    q.add_argument("--root", required=True, help="the dataset's folder, in its published layout")
    q.add_argument("--quick", action="store_true", help="check presence and file signatures only, without decoding")
    q.set_defaults(func=cmd_data_check)
    q = data_sub.add_parser(
        "prepare", help="check a local copy against the frozen boards, record exclusions, fill the image cache"
    )
    q.add_argument("name", choices=("nih", "chexpert", "mimic", "dental"))
    q.add_argument("--root", required=True, help="the dataset's folder, in its published layout")
    q.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("split", help="maintain frozen split manifests")
    split_sub = p.add_subparsers(dest="split_command", required=True)
    q = split_sub.add_parser("freeze", help="build a board's manifest from its [split] table and record its hash")
    q.add_argument("board")
    q.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    q.set_defaults(func=cmd_split_freeze)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a batch scheduler's kill, a closed terminal): handled like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, markup=False)],
    )
    logging.getLogger("faiss").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        args.func(args)
    except XRBenchError as exc:
        _report(exc, "error", args.verbose)
        return 2
    except OSError as exc:  # a parent path that is a file, a full disk, a permission
        where = f": {exc.filename}" if exc.filename else ""
        _report(exc, "error", args.verbose, f"{exc.strerror or exc}{where}")
        return 2
    except KeyboardInterrupt as exc:
        what = f"terminated by {exc.args[0]}" if isinstance(exc, Terminated) else "interrupted"
        notes = getattr(exc, "__notes__", None) or ["no run had started; nothing was stored"]
        err_console.print(f"[bold red]{what}[/]: {escape(notes[0])}")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _report(exc: BaseException, label: str, verbose: bool, message: str | None = None) -> None:
    """One line naming the problem (and the notes added on the way); the traceback under -v."""
    err_console.print(f"[bold red]{label}:[/] {escape(message or str(exc))}")
    for note in getattr(exc, "__notes__", []):
        err_console.print(f"  {escape(note)}", style="dim")
    if verbose:
        err_console.print(escape("".join(traceback.format_exception(exc))), style="dim")
    elif exc.__cause__ is not None or exc.__context__ is not None:
        err_console.print("  (run with -v for the traceback)", style="dim")


if __name__ == "__main__":
    sys.exit(main())
