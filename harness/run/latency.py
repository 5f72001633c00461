"""Latency, throughput, memory and compute of a fitted method, measured the same way for all.

The timed region is `method.predict(batch)` on a preprocessed batch already on the device,
in the harness's inference context (`harness.run.inference.inference`: eval mode,
`torch.inference_mode()`, autocast), after a fixed number of warm-up calls. On CUDA each call is
timed with CUDA events and synchronised; the host clock is recorded beside it. On CPU the
clock is `time.perf_counter_ns` and the thread count is recorded. `torch.compile` time is
measured separately, on the first call, never inside the timed loop. Data loading is timed
on its own (`data_pipeline_speed`).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.api.protocol import Method
from harness.core.limits import INT32_MAX, check_int
from harness.core.provenance import device_name
from harness.run.inference import inference


@dataclass(frozen=True)
class LatencyConfig:
    batch_size: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = 5
    iterations: int = 30

    def __post_init__(self) -> None:
        """A batch of no image, negative warm-up or no timed call would store a timing of nothing."""
        check_int(self.batch_size, "the batch size", 1, 1_000_000)
        check_int(self.warmup, "the warm-up calls", 0, INT32_MAX)
        check_int(self.iterations, "the timed calls (iterations)", 1, INT32_MAX)


@dataclass
class LatencyResult:
    device: str
    timer: str  # cuda_events | perf_counter
    threads: int
    resolution: int
    batch_size: int
    precision: str
    channels_last: bool
    compile: bool
    warmup: int
    iterations: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    host_p50_ms: float  # the host clock around the same calls (equal to p50_ms on CPU)
    throughput_ips: float  # images per second: batch size / mean batch time
    peak_memory_bytes: int
    memory_kind: str  # cuda_max_allocated | cpu_peak_rss_increase
    param_count: int
    bank_bytes: int
    flops_per_image: float | None
    compile_seconds: float | None

    def row(self) -> dict:
        return asdict(self)


# --- memory -------------------------------------------------------------------------------


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Peak memory of the enclosed block: `torch.cuda.max_memory_allocated` on CUDA; on CPU the
    rise of the process's peak resident set (Linux resets it through /proc/self/clear_refs)."""
    out = {"bytes": 0, "kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss_increase"}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["bytes"] = int(torch.cuda.max_memory_allocated(device) - before)
        return
    reset = False
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set
        reset = True
    before = _rss_bytes("VmRSS:") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield out
    after = _rss_bytes("VmHWM:") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["bytes"] = max(0, int((after or 0) - (before or 0)))


# --- timing -------------------------------------------------------------------------------


def time_calls(
    fn: Callable[[], object], device: torch.device, warmup: int, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """(device_ms, host_ms) per call; device time from CUDA events on CUDA, else the host clock."""
    for _ in range(warmup):
        fn()
    device_ms, host_ms = [], []
    cuda = device.type == "cuda"
    for _ in range(iterations):
        if cuda:
            torch.cuda.synchronize(device)
            start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start_event.record()
        t0 = time.perf_counter_ns()
        fn()
        if cuda:
            end_event.record()
            torch.cuda.synchronize(device)
        t1 = time.perf_counter_ns()
        host_ms.append((t1 - t0) / 1e6)
        device_ms.append(start_event.elapsed_time(end_event) if cuda else (t1 - t0) / 1e6)
    return np.array(device_ms), np.array(host_ms)


def count_flops(method: Method, batch: torch.Tensor) -> float | None:
    """FLOPs per image of the torch operations in `predict` (search in faiss is not counted)."""
    if not method.torch_modules():
        return None
    counter = FlopCounterMode(display=False)
    try:
        with inference(method, batch.device), counter:
            method.predict(batch)
    except (AttributeError, RuntimeError) as exc:  # the counter's module hooks fail on some modules
        logging.getLogger("xrbench").warning("FLOPs of %s not counted: %s", method.card.name, exc)
        return None
    total = counter.get_total_flops()
    return float(total) / len(batch) if total else None


def measure(method: Method, images: torch.Tensor, device: torch.device, config: LatencyConfig) -> LatencyResult:
    """Measure a fitted method on `images` (N, 1, H, W) uint8; batches repeat images as needed."""
    n = config.batch_size
    index = torch.arange(n) % len(images)
    batch = (images[index].to(device, torch.float32) / 255.0).contiguous()
    if config.channels_last:
        batch = batch.to(memory_format=torch.channels_last)
        for module in method.torch_modules():
            module.to(memory_format=torch.channels_last)
    compile_seconds = None
    if config.compile:
        for module in method.torch_modules():
            module.compile()
        start = time.perf_counter()
        with inference(method, device, config.precision):
            method.predict(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_seconds = time.perf_counter() - start

    def call() -> None:
        with inference(method, device, config.precision):
            method.predict(batch)

    # The memory window includes warm-up: the first calls are where buffers get allocated.
    with peak_memory(device) as memory:
        device_ms, host_ms = time_calls(call, device, config.warmup, config.iterations)
    p50, p95, p99 = np.percentile(device_ms, [50, 95, 99])
    return LatencyResult(
        device=device_name(device),
        timer="cuda_events" if device.type == "cuda" else "perf_counter",
        threads=torch.get_num_threads(),
        resolution=int(images.shape[-1]),
        batch_size=n,
        precision=config.precision,
        channels_last=config.channels_last,
        compile=config.compile,
        warmup=config.warmup,
        iterations=config.iterations,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(device_ms.mean()),
        host_p50_ms=float(np.percentile(host_ms, 50)),
        throughput_ips=float(n / (device_ms.mean() / 1000.0)),
        peak_memory_bytes=memory["bytes"],
        memory_kind=memory["kind"],
        param_count=sum(p.numel() for m in method.torch_modules() for p in m.parameters()),
        bank_bytes=method.memory_bank_bytes(),
        flops_per_image=count_flops(method, batch[:1]),
        compile_seconds=compile_seconds,
    )


def data_pipeline_speed(decode: Callable[[], int], read_cache: Callable[[], int]) -> dict[str, float]:
    """Images per second for decoding + preprocessing, and for reading the preprocessed cache.

    Each callable does its work once and returns the number of images it handled.
    """
    out = {}
    for name, fn in (("decode_ips", decode), ("cache_read_ips", read_cache)):
        start = time.perf_counter()
        count = fn()
        out[name] = count / (time.perf_counter() - start)
    return out
