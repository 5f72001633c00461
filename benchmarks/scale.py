"""The harness at scale: a synthetic chest board of N images through the whole protocol.

    python benchmarks/scale.py --images 20000 --size 224 --methods random,patchcore

generates the phantoms (in parallel processes, once: they stay in the data cache), freezes an
anomaly board over them (patient-disjoint: 35% of the images normal training, 5% + 5%
validation, 15% + 15% test), runs each method through `xrbench bench` (the stress suite, slices,
calibration, maps, latency, storing) and prints the images per second of every stage. The
`random` method has no model compute: its run is the harness's own cost. `make benchmark-scale`
runs the default; judge a change with it before it meets NIH-size data.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.boards.files import load_board
from harness.boards.spec import DatasetSpec
from harness.boards.splits import anomaly_split
from harness.conformance.tiny import write_synthetic_board
from harness.data.adapters import synthetic
from harness.results.store import ResultStore
from harness.run.runner import bench

IMAGES_PER_PATIENT = 1.7  # the synthetic cohort's mean (1 + Binomial(2, 0.35))


def scale_board(folder: Path, n_images: int, size: int, resolution: int, bootstrap: int) -> tuple[Path, float]:
    """The board file of about `n_images` images and the seconds spent generating them."""
    dataset = {"seed": 11, "n_patients": math.ceil(n_images / IMAGES_PER_PATIENT), "image_size": size}
    started = time.perf_counter()
    source = synthetic.prepare(DatasetSpec("synth-cxr", dataset))
    generated = time.perf_counter() - started
    share = lambda fraction: max(2, int(fraction * n_images))  # noqa: E731
    frame = anomaly_split(source.entries, share(0.35), (share(0.05), share(0.05)), (share(0.15), share(0.15)), seed=0)
    settings = {"description": f"scale benchmark, {n_images} images", "resolution": resolution, "batch_size": 32}
    settings |= {"bootstrap": bootstrap, "slices": ["view", "sex", "age_bin", "site"], "min_slice_class": 10}
    settings |= {"reference_method": "random", "corruptions": load_board("synth-cxr-ad").corruptions}  # default suite
    board = write_synthetic_board(folder, f"scale-{n_images}", "anomaly", frame, source, dataset, settings)
    return board, generated


def stage_rows(board: Path, method: str, db: Path, corruptions: bool) -> dict[str, float]:
    """Seconds of each stage of one run: load (board, cache, method), fit, predict, and the
    rest of the run (scoring, calibration, maps, latency, storing)."""
    started = time.perf_counter()
    quiet = Console(file=io.StringIO())
    result = bench(method, board, db=db, device="auto", console=quiet, corruptions=corruptions)
    total = time.perf_counter() - started
    with ResultStore(db) as store:
        run = store.run(result.run_id)
        images = store.query("SELECT count(*) AS n FROM predictions WHERE run_id = ?", [result.run_id])["n"].item()
    ran = (run["finished_at"] - run["started_at"]).total_seconds()
    rest = ran - result.fit_seconds - result.predict_seconds
    return {"load": total - ran, "fit": result.fit_seconds, "predict": result.predict_seconds, "rest": rest,
            "total": total, "predicted images": images}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=224, help="generated image size (default: 224)")
    parser.add_argument("--resolution", type=int, default=224, help="the board's resolution (default: 224)")
    parser.add_argument("--methods", default="random,patchcore")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-corruptions", action="store_true")
    args = parser.parse_args(argv)
    if args.images < 100:
        parser.error(f"--images must be at least 100, not {args.images}")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="xrbench-scale-") as tmp:
        board, generated = scale_board(Path(tmp), args.images, args.size, args.resolution, args.bootstrap)
        console.print(f"{args.images} images at {args.size} px ready in {generated:.1f} s (0 when cached)")
        table = Table(title=f"scale benchmark: {board.stem}, seconds (predicted images per second)")
        for column in ("method", "load", "fit", "predict", "rest", "total"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method in args.methods.split(","):
            row = stage_rows(board, method, Path(tmp) / "results.duckdb", not args.no_corruptions)
            n = row["predicted images"]  # every test and validation image under every condition
            cells = [f"{row[k]:.1f}" + (f" ({n / row[k]:,.0f})" if k != "fit" and row[k] > 0 else "")
                     for k in ("load", "fit", "predict", "rest", "total")]  # fmt: skip
            table.add_row(method, *cells)
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
