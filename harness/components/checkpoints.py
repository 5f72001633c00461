"""Model checkpoints trained inside the harness, cached by everything that changes them.

A checkpoint is found by a key over its full configuration (algorithm, architecture,
hyperparameters, seed, device type, the board's data fingerprint: whatever the caller puts in
`key`), stored with a JSON record holding that key and the file's SHA-256, and verified
before every use: a checkpoint whose file does not hash to its record, or whose record is
missing or unreadable, is trained again with a notice, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.fingerprints import file_sha256
from harness.core.paths import cache_root, under


def checkpoint_key(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def verified_checkpoint(path: Path, key: str) -> str | None:
    """None when `path` can be used for `key`; otherwise why not ('missing' when absent)."""
    if not path.exists():
        return "missing"
    try:
        record = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        return f"without a readable record ({type(exc).__name__}: {exc})"
    if record.get("key") != key:
        return "recorded for another configuration"
    if record.get("sha256") != file_sha256(path):
        return "damaged or altered (its SHA-256 differs from the one recorded when it was saved)"
    return None


def cached_checkpoint(
    kind: str, name: str, key: dict[str, Any], train: Callable[[], tuple[Any, dict[str, Any]]], log: logging.Logger
) -> Path:
    """The checkpoint for `key` under `$XRBENCH_CACHE/<kind>/`, trained by `train()` (which
    returns a state dict and a record, such as the loss per epoch) when no verified one exists."""
    import torch

    digest = checkpoint_key(key)
    path = under(cache_root(), kind, f"{name}-{digest[:16]}.pth")
    problem = verified_checkpoint(path, digest)
    if problem is None:
        log.info("using cached checkpoint %s", path)
        return path
    if problem != "missing":
        log.warning("checkpoint %s is %s; training it again", path, problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    state, record = train()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    record = {**record, "config": key, "key": digest, "sha256": file_sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return path
