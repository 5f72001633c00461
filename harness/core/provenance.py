"""Where a result came from: code version, environment and device."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

import torch

from harness import __version__
from harness.core.paths import REPO_ROOT

LIBRARIES = ("numpy", "scikit-learn", "faiss-cpu", "duckdb", "pandas", "pillow", "scipy", "torchvision")


def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the xrbench checkout; ('unknown', None) outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {name}"


def environment(device: torch.device) -> dict:
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "timm_version": _version("timm"),
        "xrbench_version": __version__,
        "versions": json.dumps({lib: _version(lib) for lib in LIBRARIES}, sort_keys=True),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_features": json.dumps(cpu_features(), sort_keys=True),
    }


def cpu_features() -> dict[str, str]:
    """The instruction-set levels the numerical libraries run at here: torch's CPU capability
    (its kernels' vector width) and numpy's SIMD extensions (baseline and found). Runs on two
    machines with the same levels and library versions give byte-identical predictions."""
    import numpy as np

    simd = np.show_config(mode="dicts").get("SIMD Extensions", {})  # type: ignore[union-attr]
    levels = [*simd.get("baseline", []), *simd.get("found", [])]
    return {"torch": torch.backends.cpu.get_cpu_capability(), "numpy": " ".join(levels)}
