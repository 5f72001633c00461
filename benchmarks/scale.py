"""The harness at scale: a synthetic chest board of N images through the whole protocol.

    python benchmarks/scale.py --images 20000 --size 224 --methods random,patchcore

generates the phantoms (in parallel processes, once: they stay in the data cache), freezes an
anomaly board over them (patient-disjoint: 35% of the images normal training, 5% + 5%
validation, 15% + 15% test), runs each method through `xrbench bench` (the stress suite, slices,
calibration, maps, latency, storing) and prints the seconds of every stage, the images per
second of the main ones, and the whole run against the method's own work (fit + predict). The
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.boards.files import load_board
from harness.boards.spec import DatasetSpec
from harness.boards.splits import anomaly_split
from harness.conformance.tiny import write_synthetic_board
from harness.data.adapters import synthetic
from harness.results import queries
from harness.results.store import ResultStore
from harness.run.runner import BenchResult, bench

IMAGES_PER_PATIENT = 1.7  # the synthetic cohort's mean (1 + Binomial(2, 0.35))
STAGES = ("load", "fit", "predict", "score", "gallery", "latency", "store")
PER_IMAGE = ("predict", "score", "total")  # stages shown with their predicted images per second


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


@dataclass
class TimedRun:
    """One stored run and the seconds of its stages (those of `BenchResult.stages`, then
    `total`: the whole call, from reading the board to the stored result)."""

    result: BenchResult
    seconds: dict[str, float]
    predicted_images: int  # every validation and test image under every condition

    @property
    def overhead(self) -> float:
        """The whole run against the method's own work: total / (fit + predict)."""
        return self.seconds["total"] / (self.seconds["fit"] + self.seconds["predict"])

    def row(self) -> dict[str, float]:
        """What a report keeps: the stage seconds, the overhead and the images predicted."""
        return {**self.seconds, "overhead": self.overhead, "predicted_images": self.predicted_images}


def timed_run(board: Path | str, method: str, db: Path, corruptions: bool, **options: Any) -> TimedRun:
    """Run `method` on `board` as `xrbench bench` does (`options`: params, device, precision)
    and time it."""
    started = time.perf_counter()
    result = bench(method, board, db=db, console=Console(file=io.StringIO()), corruptions=corruptions, **options)
    seconds = {**result.stages, "total": time.perf_counter() - started}
    with ResultStore(db) as store:
        images = queries.prediction_count(store, result.run_id)
    return TimedRun(result, seconds, images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=224, help="generated image size (default: 224)")
    parser.add_argument("--resolution", type=int, default=224, help="the board's resolution (default: 224)")
    parser.add_argument("--methods", default="random,patchcore")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-corruptions", action="store_true")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    args = parser.parse_args(argv)
    if args.images < 100:
        parser.error(f"--images must be at least 100, not {args.images}")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="xrbench-scale-") as tmp:
        board, generated = scale_board(Path(tmp), args.images, args.size, args.resolution, args.bootstrap)
        console.print(f"{args.images} images at {args.size} px ready in {generated:.1f} s (0 when cached)")
        table = Table(title=f"scale benchmark: {board.stem}, seconds (predicted images per second)")
        for column in ("method", *STAGES, "total", "total / (fit + predict)"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method in args.methods.split(","):
            run = timed_run(board, method, Path(tmp) / "results.duckdb", not args.no_corruptions, device=args.device)
            n = run.predicted_images
            cells = [f"{run.seconds[k]:.1f}" + (f" ({n / run.seconds[k]:,.0f})" if k in PER_IMAGE else "")
                     for k in (*STAGES, "total")]  # fmt: skip
            table.add_row(method, *cells, f"{run.overhead:.2f}")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
