"""`xrbench bench` and `xrbench latency`: run a method on a board, print what it measured."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from harness.cli.common import add_db, console, err_console, fmt
from harness.core.errors import XRBenchError
from harness.core.precision import PRECISIONS
from harness.run.explainers import EXPLAINERS

if TYPE_CHECKING:
    import pandas as pd

    from harness.run.runner import BenchResult


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench", help="run one method on one board and store the results")
    p.add_argument("--method", required=True, help="a registered method (see xrbench list)")
    p.add_argument(
        "--board", default="synth-cxr-ad", help="board name or path to a board .toml (default: synth-cxr-ad)"
    )
    p.add_argument("--seed", type=int, default=None, help="default: the board's seed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter (repeatable)")
    add_db(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-corruptions", action="store_true", help="skip the stress suite (clean test set only)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype of predict")
    p.add_argument("--explain", choices=list(EXPLAINERS), default=None, help="keep saliency maps of the method's score")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("latency", help="fit a method, then measure latency, throughput, memory and FLOPs")
    p.add_argument("--method", required=True, help="a registered method (see xrbench list)")
    p.add_argument("--board", default="synth-cxr-ad", help="board name or path to a board .toml")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated (default: 1,32)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype")
    p.add_argument(
        "--channels-last", action="store_true", help="channels_last memory format for the modules and inputs"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the method's modules (timed separately)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default: 10)")
    p.add_argument("--iterations", type=int, default=50, help="timed calls per batch size (default: 50)")
    p.add_argument("--seed", type=int, default=None, help="default: the board's seed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_db(p)
    p.set_defaults(func=cmd_latency)


def cmd_bench(args: argparse.Namespace) -> None:
    from harness.api.params import parse_params
    from harness.public import bench

    run = bench(
        args.method, args.board, params=parse_params(args.param), seed=args.seed, device=args.device,
        corruptions=not args.no_corruptions, precision=args.precision, explain=args.explain, db=args.db,
    )  # fmt: skip
    from harness.results import queries
    from harness.results.leaderboard import assemble, run_entry
    from harness.results.store import ResultStore

    result = run.result
    with ResultStore(result.db_path) as store:
        assemble(store, result.board)
        entry = run_entry(store, result.run_id)
        reference = queries.reference_method(store, result.board)
    print_summary(result, entry)
    corrupted = "mean_corrupted_auroc" in result.robustness
    if corrupted and entry.get("mce") is None and reference:
        console.print(
            f"[yellow]note:[/] mCE needs a run of the reference method with the same conditions: "
            f"make bench METHOD={reference} BOARD={result.board}"
        )


def localization_table(rows: pd.DataFrame) -> Table:
    """Where the maps point: every image's map against the ground truth, all findings."""
    import pandas as pd

    table = Table(title="localization (maps against the ground truth), 95% patient-bootstrap CI")
    for col in ("metric", "value", "95% CI", "n (with a finding)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in rows.itertuples():
        ci = f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]" if pd.notna(r.ci_low) else "[dim]n/a[/]"
        table.add_row(r.metric, fmt(r.value), ci, f"{r.n} ({r.n_pos})")
    return table


def print_summary(result: BenchResult, entry: dict) -> None:
    import pandas as pd

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
    headline = ["auroc", "auprc", "sens@95spec", "spec@95sens", "f1", "f1max"]
    shown = clean[(clean["slice"] == "all") & clean["metric"].isin(headline)]
    shown = pd.concat([shown, clean[(clean["slice"] != "all") & (clean["metric"] == "auroc")]])
    for r in shown.itertuples():
        ci = f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]" if pd.notna(r.ci_low) else "[dim]too few cases[/]"
        name = r.metric + (" (test-set threshold: optimistic)" if r.metric == "f1max" else "")
        table.add_row(escape(r.slice), name, fmt(r.value), ci, f"{r.n} ({r.n_pos})")
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
    summary.add_row("clean AUROC", fmt(rob["clean_auroc"]))
    if "mean_corrupted_auroc" in rob:
        summary.add_row("mean corrupted AUROC", fmt(rob["mean_corrupted_auroc"]))
        worst = f"{rob['worst_condition']} s{rob['worst_severity']}: {fmt(rob['worst_auroc'])}"
        summary.add_row("worst case", escape(worst))
        summary.add_row("mCE (vs reference method)", fmt(entry.get("mce")))
    if ("ece_temperature", "clean") in value:  # multi-label: macro AUROC, logits calibrated by temperature
        summary.add_row("ECE before calibration (sigmoid)", fmt(value[("ece_none", "clean")]))
        summary.add_row("ECE after temperature scaling", fmt(value[("ece_temperature", "clean")]))
    else:
        summary.add_row("ECE before calibration (min-max)", fmt(value[("ece_none", "clean")]))
        summary.add_row(
            "ECE after Platt / isotonic",
            f"{fmt(value[('ece_platt', 'clean')])} / {fmt(value[('ece_isotonic', 'clean')])}",
        )
        summary.add_row("AURC (Platt)", fmt(value[("aurc", "clean")]))
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
        where = f"rank among the {entry['ranked']} ranked runs of {result.db_path.name}"
        summary.add_row(where, f"{int(entry['rank'])}{tied}")
    console.print(summary)
    console.print(
        f"run [bold]{escape(result.run_id)}[/] stored in {escape(str(result.db_path))}  "
        f"(fit {result.fit_seconds:.1f}s, predict {result.predict_seconds:.1f}s, weights {escape(result.weights_id)})"
    )


def cmd_latency(args: argparse.Namespace) -> None:
    from harness.api.index import check_params_early
    from harness.api.params import parse_params
    from harness.run.latency import LatencyConfig
    from harness.run.runner import run_latency
    from harness.run.spec import RunOptions, RunSpec

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
    params = parse_params(args.param)
    check_params_early(args.method, params)
    spec = RunSpec.build(args.method, args.board, args.seed, params, RunOptions(args.device))
    frame = run_latency(spec, configs, Path(args.db) if args.db else None, err_console)
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
