"""The GPU in one call: every CUDA path of the harness measured, within a deadline.

    python benchmarks/gpu_check.py          # on a CUDA machine (`make gpu-check`): under 8 minutes
    python benchmarks/gpu_check.py --dry    # the same steps on the CPU, on tiny boards and sizes

The steps, each with a budget of seconds:

1. prepare: the boards' images in a fresh data cache, and the stress suite's test sets;
2. environment: the GPU (name, memory, driver), torch, CUDA and cuDNN;
3. backbone: the floor, timm resnet18 layers 2+3 at 128 px, batch 1/32/128, CUDA events after warm-up;
4. latency: `xrbench latency` of patchcore, padim and knn at batch 1/32/128, in fp32 and bf16;
5. runs: patchcore and padim on synth-cxr-ad with the stress suite, on the GPU: the seconds of
   every stage (and of the coreset), and the whole run against fit + predict;
6. supervised: the supervised recipe on synth-cxr-cls trained in bf16 and in fp32: seconds per
   epoch, peak memory and the macro AUROC of each;
7. scale: `benchmarks/scale.py` at a number of images that fits the time left.

A step still running at its budget, or at the deadline, is stopped; what it measured until then
is kept, and the next step starts (or, past the deadline, every one left is marked skipped).
After every step the report is written again, `gpu-check.json` and `gpu-check.md` (the date,
the commit, the device, every measurement and the targets), in `benchmarks/results/` (--dry:
`build/gpu-check/`). Models train from scratch in a fresh cache, so that no checkpoint of an
earlier run is measured instead of a training.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the deadline counts from here, imports included

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

try:
    import numpy as np
    import torch
    from rich.console import Console
    from scale import TimedRun, scale_board, timed_run

    from harness.api.registry import get_method
    from harness.boards.files import load_board
    from harness.components.backbones import FeatureExtractor
    from harness.components.embedding import CORESET_LOG
    from harness.conformance.tiny import write_tiny_board
    from harness.core.paths import REPO_ROOT
    from harness.core.precision import autocast
    from harness.core.provenance import device_name, git_state
    from harness.core.provenance import environment as run_environment
    from harness.data.loading import load_board_data
    from harness.run.latency import LatencyConfig, time_calls
    from harness.run.runner import run_latency
    from harness.run.spec import RunOptions, RunSpec
    from harness.run.stages import test_conditions
except ModuleNotFoundError as missing:
    sys.exit(f"gpu-check: {missing.name} is not installed here; run it in xrbench's environment (make setup)")

BACKBONE = ("resnet18", "2,3")  # the floor: architecture and layers
LATENCY_METHODS = ("patchcore", "padim", "knn")
RUN_METHODS = ("patchcore", "padim")
PRECISIONS = ("fp32", "bf16")
LATENCY_COLUMNS = ("method", "precision", "batch_size", "p50_ms", "p95_ms", "throughput_ips", "peak_memory_bytes")
MIN_START_S = 5.0  # a step is not started with less time than this left


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the GPU check, or its dry run on the CPU."""

    deadline_s: float
    budgets: dict[str, float]  # seconds each step may take; `scale` gets at most what is left
    backbone_size: int  # the floor's input size
    batches: tuple[int, ...]
    warmup: int
    iterations: int
    smoke: bool  # methods at their smoke parameters (the dry run)
    scale_images: tuple[int, int]  # the fewest and the most images of the scale step
    scale_size: int  # generated image size and board resolution of the scale step
    scale_methods: tuple[str, ...]


GPU = Sizes(
    deadline_s=450,
    budgets={
        "prepare": 45,
        "environment": 10,
        "backbone": 30,
        "latency": 90,
        "runs": 150,
        "supervised": 90,
        "scale": 120,
    },
    backbone_size=128,
    batches=(1, 32, 128),
    warmup=10,
    iterations=50,
    smoke=False,
    scale_images=(1000, 20_000),
    scale_size=224,
    scale_methods=("random", "patchcore"),
)
DRY = Sizes(  # about two minutes on two cores; the budgets only stop a step that hangs
    deadline_s=480,
    budgets={
        "prepare": 60,
        "environment": 10,
        "backbone": 40,
        "latency": 90,
        "runs": 120,
        "supervised": 90,
        "scale": 60,
    },
    backbone_size=64,
    batches=(1, 4),
    warmup=1,
    iterations=3,
    smoke=True,
    scale_images=(100, 100),
    scale_size=64,
    scale_methods=("random",),
)
DRY_CORRUPTIONS = {"gaussian_noise": [10, 50], "jpeg": [50]}


class OutOfTime(BaseException):
    """A step ran into its budget or the deadline (a BaseException, so that no `except
    Exception` on the way swallows it)."""


@dataclass
class Check:
    """What the steps share: the sizes, the device, the boards and where results go."""

    sizes: Sizes
    device: torch.device
    boards: dict[str, str | Path]  # anomaly | multilabel -> board name or file
    work: Path  # a temporary folder: the results database, the scale board
    deadline: float  # on time.monotonic()
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.work / "results.duckdb"

    def params(self, method: str) -> dict[str, Any]:
        return dict(get_method(method).card.smoke_params) if self.sizes.smoke else {}

    def left(self) -> float:
        return self.deadline - time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


# --- the steps: each fills `out` as it goes, so that a stopped step keeps what it measured ----


def prepare(check: Check, out: dict[str, Any]) -> None:
    """Load each board once (generating its images into the fresh cache) and render the stress suite."""
    for task, board in check.boards.items():
        started = time.perf_counter()
        data = load_board_data(load_board(board))
        spec = RunSpec.build("random", board, options=RunOptions(device=check.device.type))
        conditions = test_conditions(spec, data)
        out[task] = {
            "board": data.board.name,
            "seconds": time.perf_counter() - started,
            "images": {k: len(v.images) for k, v in data.splits.items()},
            "conditions": len(conditions),
            "resolution": data.board.resolution,
        }
        say(f"prepare: {data.board.name} ready in {out[task]['seconds']:.1f} s")


def environment(check: Check, out: dict[str, Any]) -> None:
    """The device and the versions every number depends on: what every stored run records
    (`harness.core.provenance.environment`), the CPU count and, on a GPU, its memory, CUDA,
    cuDNN and the driver."""
    recorded = run_environment(check.device)
    out |= {k: v for k, v in recorded.items() if k not in ("git_commit", "git_dirty", "versions")}
    out |= json.loads(recorded["versions"]) | {"cpus": os.cpu_count()}
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        out |= {
            "gpu_memory_gib": props.total_memory / 2**30,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": _nvidia_smi("driver_version"),
        }
    say(
        f"environment: {out['device']}, torch {out['torch_version']}"
        + (f", CUDA {out['cuda']}" if "cuda" in out else "")
    )


def backbone(check: Check, out: dict[str, Any]) -> None:
    """The floor every feature method stands on: the frozen backbone alone, per batch size and precision."""
    (arch, layers), size = BACKBONE, check.sizes.backbone_size
    extractor = FeatureExtractor(arch, "none", 0, layers, check.device, size)
    rows = out.setdefault("rows", [])
    for precision in PRECISIONS:
        for batch_size in check.sizes.batches:
            batch = torch.rand(batch_size, 1, size, size, generator=torch.Generator().manual_seed(0))
            batch = batch.to(check.device)

            def call(batch: torch.Tensor = batch, precision: str = precision) -> None:
                with autocast(check.device, precision):
                    extractor(batch)

            device_ms, _ = time_calls(call, check.device, check.sizes.warmup, check.sizes.iterations)
            mean_ms = float(device_ms.mean())
            throughput = batch_size / (mean_ms / 1000)
            rows.append(
                {
                    "precision": precision,
                    "batch_size": batch_size,
                    "p50_ms": float(np.median(device_ms)),
                    "mean_ms": mean_ms,
                    "throughput_ips": throughput,
                }
            )
            say(f"backbone: {arch} {precision} batch {batch_size}: {rows[-1]['throughput_ips']:,.0f} images/s")


def latency(check: Check, out: dict[str, Any]) -> None:
    """`xrbench latency`: fit each method once, then measure every batch size and precision."""
    configs = tuple(
        LatencyConfig(batch_size=b, precision=p, warmup=check.sizes.warmup, iterations=check.sizes.iterations)
        for p in PRECISIONS
        for b in check.sizes.batches
    )
    rows = out.setdefault("rows", [])
    for method in LATENCY_METHODS:
        spec = RunSpec.build(
            method,
            check.boards["anomaly"],
            None,
            check.params(method),
            RunOptions(check.device.type, corruptions=False),
        )
        frame = run_latency(spec, configs, check.db, _quiet())
        rows += [{"method": method, **row} for row in frame[list(LATENCY_COLUMNS[1:])].to_dict("records")]
        best = frame["throughput_ips"].max()
        say(f"latency: {method} measured at {len(frame)} settings, at best {best:,.0f} images/s")


def runs(check: Check, out: dict[str, Any]) -> None:
    """Whole runs with the stress suite: the seconds of every stage, and of the coreset inside the fit."""
    for method in RUN_METHODS:
        with coreset_seconds(method) as coreset:
            run = timed_run(
                check.boards["anomaly"], method, check.db, True, params=check.params(method), device=check.device.type
            )
        out[method] = {**run.row(), **coreset, **_auroc(run, "auroc")}
        out[method]["predict_ips"] = run.predicted_images / run.seconds["predict"]
        say(f"runs: {method} took {run.seconds['total']:.1f} s, {run.overhead:.2f} x fit + predict")


def supervised(check: Check, out: dict[str, Any]) -> None:
    """The supervised recipe trained in bf16 and in fp32 (on a CPU both train in fp32)."""
    params = check.params("supervised")
    epochs = params.get("epochs", get_method("supervised").card.params.defaults()["epochs"])
    for precision in ("bf16", "fp32"):
        run = timed_run(
            check.boards["multilabel"],
            "supervised",
            check.db,
            False,
            params=params,
            device=check.device.type,
            precision=precision,
        )
        fit = run.result.fit_seconds
        out[precision] = {
            "epochs": epochs,
            "seconds_per_epoch": fit / epochs,
            "fit_seconds": fit,
            "fit_peak_memory_bytes": run.result.fit_peak_memory_bytes,
            **_auroc(run, "macro_auroc"),
        }
        say(f"supervised: {precision} {fit / epochs:.2f} s an epoch, macro AUROC {out[precision]['macro_auroc']:.3f}")


def scale(check: Check, out: dict[str, Any]) -> None:
    """The scale benchmark at the most images the time left allows (judged from the runs step)."""
    n = scale_images(check)
    size = check.sizes.scale_size
    board, generated = scale_board(check.work / "scale", n, size, size, bootstrap=200)
    out |= {"images": n, "size": size, "generated_seconds": generated}
    say(f"scale: {n} images at {size} px generated in {generated:.1f} s")
    for method in check.sizes.scale_methods:
        run = timed_run(board, method, check.work / "scale.duckdb", True, device=check.device.type)
        out[method] = run.row()
        say(f"scale: {method} took {run.seconds['total']:.1f} s, {run.overhead:.2f} x fit + predict")


STEPS: tuple[tuple[str, Callable[[Check, dict[str, Any]], None]], ...] = (
    ("prepare", prepare),
    ("environment", environment),
    ("backbone", backbone),
    ("latency", latency),
    ("runs", runs),
    ("supervised", supervised),
    ("scale", scale),
)


def scale_images(check: Check) -> int:
    """Images for the scale step: 40% of its time (the rest generates the images and runs
    `random`) at patchcore's whole-run speed in the runs step, scaled to the scale board's
    pixels (a scale board predicts about 6.7 images per image: validation and 22 test conditions)."""
    low, high = check.sizes.scale_images
    steps = check.report.get("steps", {})
    measured = steps.get("runs", {}).get("patchcore", {})
    resolution = steps.get("prepare", {}).get("anomaly", {}).get("resolution")
    if "total" not in measured or not resolution:
        return low
    per_second = measured["predicted_images"] / measured["total"] * (resolution / check.sizes.scale_size) ** 2
    room = min(check.left(), check.sizes.budgets["scale"])
    return int(min(high, max(low, 0.4 * room * per_second / 6.7)))


# --- helpers --------------------------------------------------------------------------------


def _quiet() -> Console:
    return Console(file=io.StringIO())


def _auroc(run: TimedRun, name: str) -> dict[str, float]:
    """The clean AUROC of a run over all its images (macro over findings on a multi-label board)."""
    m = run.result.metrics
    row = m[(m["condition"] == "clean") & (m["metric"] == "auroc") & (m["slice"] == "all")].iloc[0]
    return {name: float(row["value"]), f"{name}_ci": [float(row["ci_low"]), float(row["ci_high"])]}


@contextlib.contextmanager
def coreset_seconds(method: str) -> Iterator[dict[str, float]]:
    """The seconds of the coreset selection inside a method's fit, read from its log line."""
    found: dict[str, float] = {}

    class Reader(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == CORESET_LOG:
                kept, patches, seconds = record.args
                found.update(coreset_seconds=seconds, coreset_kept=kept, coreset_patches=patches)

    logger, reader = logging.getLogger(f"xrbench.method.{method}"), Reader()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(reader)
    try:
        yield found
    finally:
        logger.removeHandler(reader)
        logger.setLevel(level)


def _nvidia_smi(field_name: str) -> str | None:
    try:
        found = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field_name}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip().splitlines()[0] if found.stdout.strip() else None


# --- the targets ------------------------------------------------------------------------------


def targets(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value (None: not measured) and whether it is met."""
    found = []

    def target(name: str, value: float | None, limit: float, at_most: bool, extra: bool = True) -> None:
        met = None if value is None else ((value <= limit) if at_most else (value >= limit)) and extra
        found.append({"target": name, "value": value, "limit": limit, "met": met})

    for method in RUN_METHODS:
        run = steps.get("runs", {}).get(method, {})
        target(f"{method}: the whole run at most 1.25 x fit + predict", run.get("overhead"), 1.25, True)
    floor = _best(steps.get("backbone", {}).get("rows", []), "fp32")
    padim = _best([r for r in steps.get("latency", {}).get("rows", []) if r["method"] == "padim"], "fp32")
    target("padim: backbone throughput / padim throughput at most 2", _ratio(floor, padim), 2.0, True)
    coreset = steps.get("runs", {}).get("patchcore", {})
    train = steps.get("prepare", {}).get("anomaly", {}).get("images", {}).get("train")
    coreset_ips = train / coreset["coreset_seconds"] if train and coreset.get("coreset_seconds") else None
    target("coreset: backbone throughput / coreset throughput at most 2", _ratio(floor, coreset_ips), 2.0, True)
    bf16, fp32 = steps.get("supervised", {}).get("bf16"), steps.get("supervised", {}).get("fp32")
    speedup = fp32["seconds_per_epoch"] / bf16["seconds_per_epoch"] if bf16 and fp32 else None
    equal = bool(bf16 and fp32 and _within(bf16, fp32) and _within(fp32, bf16))
    target(
        "supervised: bf16 at least 1.5 x faster than fp32, macro AUROC each within the other's interval",
        speedup,
        1.5,
        False,
        equal,
    )
    return found


def _best(rows: list[dict[str, Any]], precision: str) -> float | None:
    """Throughput at the largest batch measured in `precision`."""
    rows = [r for r in rows if r["precision"] == precision]
    return max(rows, key=lambda r: r["batch_size"])["throughput_ips"] if rows else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _within(a: dict[str, Any], b: dict[str, Any]) -> bool:
    low, high = b["macro_auroc_ci"]
    return low <= a["macro_auroc"] <= high


# --- running the steps and writing the report ----------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise OutOfTime in the main thread after `seconds` (no limit in another thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_step(check: Check, name: str, step: Callable[[Check, dict[str, Any]], None]) -> dict[str, Any]:
    """One step within min(its budget, the time left); failures are recorded, not raised."""
    budget = check.sizes.budgets[name]
    out: dict[str, Any] = {"budget_s": budget}
    if check.left() < MIN_START_S:
        return out | {"status": "skipped: the deadline had passed"}
    say(f"{name}: started, budget {budget:.0f} s, {check.left():.0f} s left")
    started, by_budget = time.monotonic(), budget <= check.left()
    try:
        with time_limit(min(budget, check.left())):
            step(check, out)
        out["status"] = "ok"
    except OutOfTime:
        out["status"] = "stopped at its budget" if by_budget else "stopped at the deadline"
    except Exception as exc:  # a failed step is a finding, and the next step still runs
        out["status"] = f"failed: {type(exc).__name__}: {exc}"
    out["seconds"] = time.monotonic() - started
    say(f"{name}: {out['status']} after {out['seconds']:.1f} s")
    return out


def run_check(check: Check, out_dir: Path) -> dict[str, Any]:
    commit, dirty = git_state()
    check.report |= {
        "check": "gpu-check",
        "dry": check.sizes.smoke,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "dirty": dirty,
        "device": device_name(check.device),
        "deadline_s": check.sizes.deadline_s,
        "sizes": asdict(check.sizes),
        "steps": {},
    }
    for name, step in STEPS:
        check.report["steps"][name] = run_step(check, name, step)
        check.report["elapsed_s"] = time.monotonic() - STARTED
        check.report["targets"] = targets(check.report["steps"])
        write_report(check.report, out_dir)
    return check.report


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """gpu-check.json and gpu-check.md, each replaced whole (never left half written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"gpu-check.json": json.dumps(report, indent=1, default=str), "gpu-check.md": markdown(report)}
    for name, text in texts.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text + "\n")
        os.replace(tmp, out_dir / name)


def markdown(report: dict[str, Any]) -> str:
    """The summary the performance page cites."""
    steps = report["steps"]
    kind = "GPU check"
    if report["dry"]:
        kind = "dry run on the CPU (tiny boards and sizes: its numbers say nothing of a GPU)"
    commit = report["commit"][:12] + (" (with local changes)" if report["dirty"] else "")
    when = f"{report['date']}, commit {commit}, {report['elapsed_s']:.0f} s of a {report['deadline_s']:.0f} s deadline"
    lines = [f"# gpu-check: {report['device']}", "", f"{kind}; {when}.", ""]
    lines += ["| step | status | seconds | budget |", "| --- | --- | ---: | ---: |"]
    for name, step in steps.items():
        lines.append(f"| {name} | {step.get('status')} | {step.get('seconds', 0):.1f} | {step['budget_s']:.0f} |")
    lines += ["", "## Targets", "", "| target | measured | limit | met |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {t['target']} | {_num(t['value'])} | {t['limit']} | {_yes(t['met'])} |" for t in report["targets"]]
    lines += _environment_lines(steps.get("environment", {}))
    lines += _table(
        f"Backbone floor (resnet18, layers 2+3, {report['sizes']['backbone_size']} px)",
        steps.get("backbone", {}).get("rows", []),
        ("precision", "batch_size", "p50_ms", "throughput_ips"),
    )
    lines += _table("Latency (`xrbench latency`)", steps.get("latency", {}).get("rows", []), LATENCY_COLUMNS)
    lines += _keyed("Whole runs with the stress suite (seconds)", steps.get("runs", {}), RUN_METHODS)
    lines += _keyed("Supervised training, bf16 against fp32", steps.get("supervised", {}), ("bf16", "fp32"))
    scale_title = f"Scale benchmark, {steps.get('scale', {}).get('images')} images (seconds)"
    lines += _keyed(scale_title, steps.get("scale", {}), ("random", "patchcore"))
    return "\n".join(lines)


def _environment_lines(env: dict[str, Any]) -> list[str]:
    shown = {k: v for k, v in env.items() if k not in ("status", "seconds", "budget_s")}
    return ["", "## Environment", "", *(f"- {k}: {_num(v)}" for k, v in shown.items())] if shown else []


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    if not rows:
        return []
    head = [f"| {' | '.join(columns)} |", f"|{' --- |' * len(columns)}"]
    return ["", f"## {title}", "", *head, *(f"| {' | '.join(_num(r.get(c)) for c in columns)} |" for r in rows)]


def _keyed(title: str, step: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """One row per key present in the step (a method or a precision), one column per measurement."""
    rows = [{"": key, **step[key]} for key in keys if key in step]
    columns = tuple(dict.fromkeys(c for r in rows for c in r))
    return _table(title, rows, columns)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, list):
        return "[" + ", ".join(_num(v) for v in value) + "]"
    return "" if value is None else str(value)


def _yes(met: bool | None) -> str:
    return "not measured" if met is None else ("yes" if met else "**no**")


# --- the command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="the dry run: the CPU, tiny boards and sizes")
    parser.add_argument(
        "--out", type=Path, help="folder of the report (default: benchmarks/results; with --dry: build/gpu-check)"
    )
    parser.add_argument(
        "--deadline", type=float, help="seconds for the whole check, from its start (default: 450; with --dry: 480)"
    )
    args = parser.parse_args(argv)
    sizes = DRY if args.dry else GPU
    if args.deadline is not None:
        if not (math.isfinite(args.deadline) and args.deadline > 0):
            parser.error(f"--deadline must be a positive number of seconds, not {args.deadline}")
        sizes = Sizes(**{**asdict(sizes), "deadline_s": args.deadline})
    if not args.dry and not torch.cuda.is_available():
        parser.error("no CUDA device here: the check measures a GPU (--dry runs its steps on the CPU)")
    out_dir = args.out or REPO_ROOT / ("build/gpu-check" if args.dry else "benchmarks/results")
    with tempfile.TemporaryDirectory(prefix="xrbench-gpu-check-") as tmp, fresh_cache(Path(tmp) / "cache"):
        work = Path(tmp)
        device = torch.device("cpu" if args.dry else "cuda")
        check = Check(sizes, device, boards(work, args.dry), work, STARTED + sizes.deadline_s)
        report = run_check(check, out_dir)
    # On a GPU a step stopped at its budget is a finding; the dry run must finish every step.
    bad = [name for name, step in report["steps"].items() if step["status"] != "ok"]
    if not args.dry:
        bad = [name for name in bad if report["steps"][name]["status"].startswith("failed")]
    say(f"report: {out_dir / 'gpu-check.md'}" + (f"; not ok: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def boards(work: Path, dry: bool) -> dict[str, str | Path]:
    """The embedded synthetic boards, or (dry) tiny boards with a small stress suite."""
    if not dry:
        return {"anomaly": "synth-cxr-ad", "multilabel": "synth-cxr-cls"}
    anomaly = write_tiny_board(work, "anomaly", corruptions=DRY_CORRUPTIONS)
    return {"anomaly": anomaly, "multilabel": write_tiny_board(work, "multilabel")}


@contextlib.contextmanager
def fresh_cache(folder: Path) -> Iterator[None]:
    """XRBENCH_CACHE set to an empty folder while the check runs: nothing is measured from an
    earlier run's cache, and the user's cache is left alone."""
    previous = os.environ.get("XRBENCH_CACHE")
    os.environ["XRBENCH_CACHE"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("XRBENCH_CACHE", None)
        else:
            os.environ["XRBENCH_CACHE"] = previous


if __name__ == "__main__":
    sys.exit(main())
