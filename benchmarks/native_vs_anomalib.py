"""Native methods against their anomalib implementations, side by side under one protocol.

    python benchmarks/native_vs_anomalib.py [--board synth-cxr-ad] [--db results/native-vs-anomalib.duckdb]

For every method xrbench has both natively and through the anomalib bridge (PatchCore, PaDiM,
FastFlow, reverse distillation, STFPM), both run on the board with the same backbone
(ResNet-18, seeded random initialisation), the same seed and the clean test set. The table
gives each side's image AUROC with its patient-bootstrap interval, pixel AUROC, fit seconds and
predict images per second, and the paired comparison (difference, DeLong p-value). Every fit
trains from scratch, with an empty checkpoint and tensor cache, so fit times compare; a cell
already in the database (same method, parameters, code, board and seed) is read, not run
again. `make benchmark-anomalib` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.core.errors import XRBenchError
from harness.core.paths import data_root
from harness.results import queries
from harness.results.compare import compare_runs
from harness.results.store import ResultStore
from harness.run.runner import run_bench
from harness.run.spec import RunOptions, RunSpec

PAIRS = {  # native method -> (its anomalib bridge, the native's and the bridge's parameters that match)
    # PatchCore at a 1% coreset on both sides: anomalib's greedy selection runs one Python step
    # per kept patch (7,576 at 5%, about 25 minutes on two cores at 5 steps/s)
    "patchcore": ("anomalib-patchcore", {"coreset_ratio": 0.01}, {"coreset_sampling_ratio": 0.01}),
    "padim": ("anomalib-padim", {}, {}),
    "fastflow": ("anomalib-fastflow", {}, {}),
    "rd4ad": ("anomalib-reverse-distillation", {}, {}),
    "stfpm": ("anomalib-stfpm", {}, {}),
}


@contextlib.contextmanager
def fresh_checkpoints() -> Iterator[None]:
    """A fit that trains from scratch: an empty cache folder for checkpoints and preprocessed
    tensors (the generated datasets stay where they are), removed afterwards."""
    saved = {k: os.environ.get(k) for k in ("XRBENCH_CACHE", "XRBENCH_DATA")}
    os.environ["XRBENCH_DATA"] = str(data_root())
    with tempfile.TemporaryDirectory(prefix="xrbench-fresh-") as folder:
        os.environ["XRBENCH_CACHE"] = folder
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def stored_or_run(method: str, params: dict, board: str, db: Path, console: Console) -> str:
    """The run id of the cell, run now (training from scratch) if the database lacks it; or
    the one-line refusal."""
    options = RunOptions(device="cpu", corruptions=False)
    try:
        spec = RunSpec.build(method, board, None, params, options)
        with ResultStore(db) as store:
            done = queries.done_cells(store)
        if spec.key in done:
            return done[spec.key]
        console.print(f"running {method} on {board}")
        with fresh_checkpoints():
            return run_bench(spec, db, console).run_id
    except XRBenchError as exc:
        return f"refused: {exc}"


def summary(store: ResultStore, run_id: str) -> dict:
    metrics = store.query(
        "SELECT metric, value, ci_low, ci_high FROM metrics WHERE run_id = ? AND condition = 'clean' "
        "AND slice = 'all' AND metric IN ('auroc', 'pixel_auroc')",
        [run_id],
    ).set_index("metric")
    run = store.query("SELECT fit_seconds, predict_seconds FROM runs WHERE run_id = ?", [run_id]).iloc[0]
    images = store.query("SELECT count(*) AS n FROM predictions WHERE run_id = ?", [run_id])["n"][0]
    auroc = metrics.loc["auroc"]
    pixel = metrics["value"].get("pixel_auroc", float("nan"))
    return {
        "auroc": f"{auroc.value:.3f} [{auroc.ci_low:.3f}, {auroc.ci_high:.3f}]",
        "pixel": f"{pixel:.3f}",
        "fit": f"{run.fit_seconds:.0f} s",
        "predict": f"{images / run.predict_seconds:,.0f}/s",
        "fit_seconds": run.fit_seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="synth-cxr-ad")
    parser.add_argument("--db", type=Path, default=Path("results/native-vs-anomalib.duckdb"))
    parser.add_argument("--methods", default=",".join(PAIRS), help="native methods to compare, comma-separated")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"native vs anomalib on {args.board} (ResNet-18, random init, seed of the board)")
    for column in ("method", "side", "AUROC [95% CI]", "pixel AUROC", "fit", "predict", "difference, p"):
        table.add_column(column)
    for native in args.methods.split(","):
        bridged, native_params, bridged_params = PAIRS[native]
        ids = [stored_or_run(native, native_params, args.board, args.db, console),
               stored_or_run(bridged, bridged_params, args.board, args.db, console)]  # fmt: skip
        with ResultStore(args.db) as store:
            rows = [None if i.startswith("refused") else summary(store, i) for i in ids]
            comparison = "n/a"
            if all(rows):
                c = compare_runs(store, ids[0], ids[1])
                speed = rows[1]["fit_seconds"] / rows[0]["fit_seconds"]
                comparison = f"{c.difference:+.3f}, p = {c.delong_p:.3g}; native fits {speed:.1f}x faster"
        for side, name, row, run_id in zip(("native", "anomalib"), (native, bridged), rows, ids, strict=True):
            cells = (row["auroc"], row["pixel"], row["fit"], row["predict"]) if row else (run_id, "", "", "")
            table.add_row(name, side, *cells, comparison if side == "anomalib" else "")
    Console(width=max(Console().width, 140)).print(table)


if __name__ == "__main__":
    main()
