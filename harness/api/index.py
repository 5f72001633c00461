"""What `xrbench list` and `xrbench show` read instead of importing every method: each method's
module, card and parameters, written by `harness.api.registry.write_index` after a discovery and
kept in the cache until a file it was read from changes.

The index is keyed by the size and modification time of every Python file of the harness and
of `methods/`, and by the method plugins installed (`xrbench.methods` entry points and their
versions): reading it costs a few hundred `stat` calls and no import of torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.api.params import NO_SMOKE, TYPES, ParamSpec, check_values
from harness.core.paths import cache_root

ENTRY_POINT_GROUP = "xrbench.methods"
INDEX_VERSION = 1
HARNESS = Path(__file__).resolve().parents[1]


def source_folders() -> list[Path]:
    """Where the code that defines methods lives: the harness and the `methods` package."""
    import methods

    return [HARNESS, *(Path(p) for p in methods.__path__)]


def index_key(plugins: list[Any] | None = None) -> str:
    """Changes when a Python file under `source_folders()` or an installed method plugin (of
    `plugins`, the entry points a discovery loaded; by default those installed) does."""
    h = hashlib.sha256(f"{INDEX_VERSION}".encode())
    for folder in source_folders():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(f for f in filenames if f.endswith(".py")):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    installed = entry_points(group=ENTRY_POINT_GROUP) if plugins is None else plugins
    for ep in sorted(installed, key=lambda e: getattr(e, "name", repr(e))):
        dist = getattr(ep, "dist", None)
        h.update(f"{getattr(ep, 'name', ep)}|{getattr(ep, 'value', '')}|{getattr(dist, 'version', '')}\n".encode())
    return h.hexdigest()


def index_path() -> Path:
    return cache_root() / "index" / "methods.json"


def read_index() -> dict[str, Any] | None:
    """The index when it is as new as the code (`{"methods": {name: entry}, "broken": {...}}`);
    None when it is missing, unreadable or stale."""
    try:
        index = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("key") == index_key() else None


def write_index(methods: dict[str, dict[str, Any]], broken: dict[str, str], key: str) -> None:
    """Write the index atomically (a reader never sees half of it); a cache that cannot be written
    only costs the next listing its speed."""
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "methods": methods, "broken": broken}, indent=1, default=str))
        os.replace(tmp, path)
    except OSError:
        pass


def check_params_early(method: str, values: dict[str, Any]) -> None:
    """Refuse unknown or bad parameters of an indexed method from the index alone, before its
    module (and torch) is imported: a typo answers at once. Checks across parameters, and
    methods the index does not know yet, wait for the method itself."""
    index = read_index()
    entry = index["methods"].get(method) if index else None
    if entry is None or not values:
        return
    types = {t.__name__: t for t in TYPES}
    specs = [
        ParamSpec(p["name"], types[p["type"]], p["default"], p["low"], p["high"],
                  tuple(p["choices"]) if p["choices"] is not None else None, NO_SMOKE, p["changes_weights"], p["help"])
        for p in entry["params"]
    ]  # fmt: skip
    check_values(specs, values, f"method {method}")
