"""The schema of a bundle's text files, `submission.toml` and `reported.json`.

A bundle comes from a stranger's pull request, so every field is checked before anything uses
it: its type, its range, finiteness, the integer widths the results database stores, dates and
hashes. Everything `xrbench import` stores is checked here, so a bundle that verifies always
imports. A schema is a dict of key -> checker; a key ending in `?` is optional. A checker takes
(value, where) and raises `BundleError` naming the file and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from harness.core.errors import XRBenchError
from harness.core.limits import INT32_MAX, INT64_MAX, check_int
from harness.core.names import NAME_RULE, is_name
from harness.core.precision import PRECISIONS

Checker = Callable[[Any, str], None]
MAX_TEXT = 4096
"""The longest string a field may hold (a description, a device name)."""
MAX_ITEMS = 1_000_000
"""The most items a list or table may hold."""


class BundleError(XRBenchError):
    """A bundle that cannot be written or read as a bundle."""


def _fail(where: str, problem: str) -> None:
    file, _, key = where.partition(":")
    raise BundleError(f"{file}: {key or 'the file'} {problem}")


def _join(where: str, key: str) -> str:
    return f"{where}{key}" if where.endswith(":") else f"{where}.{key}"


def text(max_len: int = MAX_TEXT) -> Checker:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            _fail(where, f"must be a string, not {type(value).__name__}")
        if len(value) > max_len:
            _fail(where, f"is {len(value)} characters long, over {max_len}")

    return check


def choice(*allowed: str) -> Checker:
    def check(value: Any, where: str) -> None:
        if value not in allowed:
            _fail(where, f"must be one of {', '.join(allowed)}, not {value!r}")

    return check


def name(value: Any, where: str) -> None:
    if not is_name(value):
        _fail(where, f"{value!r} is not {NAME_RULE}")


def sha256(value: Any, where: str) -> None:
    if not isinstance(value, str) or re.fullmatch(r"[0-9a-f]{64}", value) is None:
        _fail(where, f"must be a SHA-256 (64 lower-case hex digits), not {value!r}")


def boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        _fail(where, f"must be true or false, not {value!r}")


def integer(low: int = 0, high: int = INT32_MAX) -> Checker:
    """A whole number within [low, high] (the store's INTEGER is 32 bits, BIGINT 64)."""

    def check(value: Any, where: str) -> None:
        file, _, key = where.partition(":")
        check_int(value, f"{file}: {key}", low, high)

    return check


def number(low: float = -math.inf, high: float = math.inf) -> Checker:
    """A finite number within [low, high]."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            _fail(where, f"must be a number, not {value!r}")
        if not math.isfinite(value):
            _fail(where, f"= {value} is not finite")
        if not low <= value <= high:
            _fail(where, f"= {value} is out of range ({low:g} to {high:g})")

    return check


def scalar(value: Any, where: str) -> None:
    """A method parameter's value: a string, a whole number, a finite number or a boolean."""
    if isinstance(value, float):
        number()(value, where)
    elif isinstance(value, str):
        text()(value, where)
    elif not isinstance(value, (int, bool)):
        _fail(where, f"must be a string, number or boolean, not {type(value).__name__}")
    elif isinstance(value, int) and not isinstance(value, bool):
        integer(-INT64_MAX, INT64_MAX)(value, where)


def timestamp(value: Any, where: str) -> None:
    text(64)(value, where)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        _fail(where, f"{value!r} is not a date and time (such as 2026-11-23 19:04:35)")


def nullable(inner: Checker) -> Checker:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def anything(value: Any, where: str) -> None:
    """Free-form JSON (a method's diagnostics): only its size is limited, by the file's."""


def list_of(inner: Checker, max_items: int = MAX_ITEMS) -> Checker:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            _fail(where, f"must be a list, not {type(value).__name__}")
        if len(value) > max_items:
            _fail(where, f"holds {len(value)} items, over {max_items}")
        for k, item in enumerate(value):
            inner(item, f"{where}[{k}]")

    return check


def map_of(inner: Checker, max_items: int = 10_000) -> Checker:
    """A table of any keys (short strings), each value checked by `inner`."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, f"must be a table, not {type(value).__name__}")
        if len(value) > max_items:
            _fail(where, f"holds {len(value)} keys, over {max_items}")
        for key, item in value.items():
            text(200)(key, f"{where} key")
            inner(item, _join(where, key))

    return check


def table(schema: dict[str, Any]) -> Checker:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, f"must be a table, not {type(value).__name__}")
        check_fields(value, schema, where)

    return check


def check_fields(data: dict, schema: dict[str, Any], where: str) -> None:
    """Refuse an unknown key, a missing required key or a value its checker refuses."""
    wanted = {k.rstrip("?"): (checker, k.endswith("?")) for k, checker in schema.items()}
    unknown = sorted(set(data) - set(wanted), key=str)
    if unknown:
        file, _, _ = where.partition(":")
        raise BundleError(f"{file}: unknown key {_join(where, str(unknown[0])).partition(':')[2]}")
    for key, (checker, optional) in wanted.items():
        at = _join(where, key)
        if key not in data:
            if not optional:
                _fail(at, "is missing")
            continue
        checker(data[key], at)


def check_file(data: Any, schema: dict[str, Any], file: str) -> None:
    """Check a whole file's content against its schema; errors start with the file's name."""
    if not isinstance(data, dict):
        raise BundleError(f"{file}: must hold a table of keys, not {type(data).__name__}")
    check_fields(data, schema, f"{file}:")


# --- submission.toml ----------------------------------------------------------------------
TASKS = ("anomaly", "multilabel")
SUBMISSION_SCHEMA: dict[str, Any] = {
    "format": integer(1, 1000),
    "run_id": name,
    "seed": integer(0, INT32_MAX),
    "device": text(200),
    "precision": choice(*PRECISIONS),
    "corruptions": boolean,
    "finished_at": timestamp,
    "scoring_version": integer(1, 1000),
    "predictions_sha256": sha256,
    "maps_sha256?": sha256,
    "explain?": text(64),
    "cpu?": map_of(text(2000), 10),
    "board": table(
        {
            "name": name,
            "version": integer(1, INT32_MAX),
            "task": choice(*TASKS),
            "split_sha256": sha256,
            "dataset_sha256?": sha256,
            "stress_sha256?": sha256,
            "targets?": list_of(text(200), 1000),
        }
    ),
    "method": table(
        {
            "name": name,
            "params": map_of(scalar, 1000),
            "card": table(
                {
                    "name": name,
                    "family": text(200),
                    "description": text(),
                    "reference": text(),
                    "license": text(200),
                    "learning": text(200),
                    "produces_maps": boolean,
                    "tasks": list_of(choice(*TASKS), 2),
                }
            ),
        }
    ),
    "code": table({"commit": text(64), "dirty?": boolean, "files?": map_of(sha256), "plugin?": map_of(text(200), 10)}),
    "weights": table({"id": text(500), "sha256?": sha256, "card?": text(100)}),
    "environment": table(
        {"python": text(64), "torch": text(64), "timm": text(64), "xrbench": text(64), "versions": map_of(text(64))}
    ),
}

# --- reported.json ------------------------------------------------------------------------
COUNT = nullable(integer(0, INT32_MAX))
VALUE = nullable(number())
SECONDS = nullable(number(0))
METRIC_ROW = table(
    {
        "condition": text(200),
        "severity": integer(0, 1000),
        "slice": text(500),
        "metric": text(200),
        "value": VALUE,
        "ci_low": VALUE,
        "ci_high": VALUE,
        "n": COUNT,
        "n_pos": COUNT,
        "flag": nullable(text(200)),
    }
)
LATENCY_ROW = table(
    {
        "board": name,
        "method": name,
        "params": nullable(text(100_000)),
        "device": nullable(text(200)),
        "timer": choice("cuda_events", "perf_counter"),
        "threads": COUNT,
        "resolution": integer(1, 65536),
        "batch_size": integer(1, 1_000_000),
        "precision": choice(*PRECISIONS),
        "channels_last": boolean,
        "compile": boolean,
        "warmup": integer(0, INT32_MAX),
        "iterations": integer(1, INT32_MAX),
        **{f"{k}_ms": number(1e-6, 1e9) for k in ("p50", "p95", "p99", "mean")},
        "host_p50_ms": nullable(number(1e-6, 1e9)),
        "throughput_ips": number(1e-9, 1e12),
        "peak_memory_bytes": nullable(integer(0, INT64_MAX)),
        "memory_kind": nullable(text(200)),
        "param_count": nullable(integer(0, INT64_MAX)),
        "bank_bytes": nullable(integer(0, INT64_MAX)),
        "flops_per_image": nullable(number(0)),
        "compile_seconds": SECONDS,
    }
)
REPORTED_SCHEMA: dict[str, Any] = {
    "scoring_version?": integer(1, 1000),
    "run_values?": map_of(VALUE, 100),
    "metrics": list_of(METRIC_ROW),
    "robustness?": table(
        {
            "clean_auroc?": VALUE,
            "mean_corrupted_auroc?": VALUE,
            "worst_condition?": nullable(text(200)),
            "worst_severity?": COUNT,
            "worst_auroc?": VALUE,
            "auroc_drop?": VALUE,
        }
    ),
    "measured?": table(
        {
            "fit_seconds?": SECONDS,
            "predict_seconds?": SECONDS,
            "fit_peak_memory_bytes?": nullable(integer(0, INT64_MAX)),
            "decode_ips?": SECONDS,
            "cache_read_ips?": SECONDS,
        }
    ),
    "latency?": list_of(LATENCY_ROW, 10_000),
    "diagnostics?": nullable(anything),
}


def check_latency_row(row: dict, where: str) -> None:
    """A latency row's numbers agree with each other: percentiles in order, and throughput the
    batch size over the mean batch time (as `harness.run.latency` computes it)."""
    if not row["p50_ms"] <= row["p95_ms"] * (1 + 1e-9) <= row["p99_ms"] * (1 + 2e-9):
        _fail(where, f"has percentiles out of order (p50 {row['p50_ms']}, p95 {row['p95_ms']}, p99 {row['p99_ms']})")
    expected = row["batch_size"] / (row["mean_ms"] / 1000.0)
    if not math.isclose(row["throughput_ips"], expected, rel_tol=1e-6):
        _fail(
            where,
            f"claims {row['throughput_ips']:.6g} images/s; batch {row['batch_size']} at a mean of "
            f"{row['mean_ms']:.6g} ms is {expected:.6g}",
        )
