"""A method's code identity, as a run records it (`runs.method_code`) and a bundle carries it.

For a method of `methods/`: the SHA-256 of its own source files (its class and the classes it
extends) and of every project module they import, transitively (`harness.core.code`). For a
plugin: its distribution and version, and the harness modules its code imports. Why the
import closure and not the git commit: a commit changes with every unrelated edit (a page of
the docs, the site), so a grid keyed by it would run every cell again, and an uncommitted edit
(the dirty flag) would not say which method it touches; the closure changes exactly when code
the method runs does, committed or not. The run still records the commit for provenance.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from harness.api.protocol import Method
from harness.api.registry import plugin_origin
from harness.core.code import closure, files_sha256


def _own_modules(cls: type[Method]) -> list[tuple[str, Path | None]]:
    """The modules defining `cls` and the classes it extends, outside the harness."""
    out = []
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, Method)) or klass.__module__.startswith("harness."):
            continue
        out.append((klass.__module__, _source_file(klass)))
    return out


def _source_file(klass: type) -> Path | None:
    try:
        source = inspect.getsourcefile(klass)
    except (TypeError, OSError):
        return None
    return Path(source).resolve() if source and Path(source).is_file() else None


def method_origin(cls: type[Method]) -> dict[str, Any]:
    """Where a method's code comes from (see the module docstring)."""
    plugin = plugin_origin(cls.card.name)
    own = _own_modules(cls)
    found = closure([module for module, path in own if path is not None])
    if plugin:  # its own files are identified by its version
        found = {name: path for name, path in found.items() if name.startswith("harness.")}
    files: dict[str, str | None] = {module: None for module, path in own if path is None}  # defined outside a file
    files.update(files_sha256(found))
    origin: dict[str, Any] = {"plugin": plugin, "files": files} if plugin else {"files": files}
    if cls.libraries():
        origin["libraries"] = dict(sorted(cls.libraries().items()))
    return origin
