"""The method registry: every module in `methods/`, plus third-party packages that declare an
entry point in the group `xrbench.methods` (the entry point names a module or a Method class).

Methods are found lazily: `get_method(name)` imports only the module that defines `name`, as
the index (`harness.api.index`) recorded it; `discover()` imports them all (and rewrites the
index). A plugin that fails to load is reported by name with its error (`broken_plugins()`,
shown by `xrbench list`) and never breaks the registry for the other methods.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from dataclasses import asdict, replace
from importlib.metadata import entry_points
from typing import Any

from harness.api.index import ENTRY_POINT_GROUP, index_key, read_index, write_index
from harness.api.params import NO_SMOKE
from harness.api.protocol import Method
from harness.core.errors import UnknownMethodError, XRBenchError
from harness.core.names import check_name
from harness.core.registry import Registry

_PLUGINS: dict[str, dict[str, str]] = {}  # method name -> distribution and version
_BROKEN: dict[str, str] = {}  # entry point name -> why it could not be loaded


def _discover_all() -> None:
    """Import every module of `methods/` and load every plugin, then rewrite the index."""
    import methods

    plugins = list(entry_points(group=ENTRY_POINT_GROUP))
    key = index_key(plugins)  # before importing: a file changed meanwhile makes the index stale, not wrong
    for info in pkgutil.iter_modules(methods.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"methods.{info.name}")
    for ep in plugins:
        _load_plugin(ep)
    _write_index(key)


def _write_index(key: str) -> None:
    """The index of the methods of `methods/` and of plugins (not those a script registers)."""
    found = {name: cls for name, cls in METHODS.items() if cls.__module__.startswith("methods.") or name in _PLUGINS}
    write_index({name: describe(cls) for name, cls in found.items()}, dict(_BROKEN), key)


def _find(name: str) -> None:
    """Import the one module that registers `name`, as the index recorded it."""
    index = read_index()
    entry = index["methods"].get(name) if index else None
    if entry is None:
        return
    if entry.get("plugin"):
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == entry["entry_point"]:
                _load_plugin(ep)
        return
    try:
        importlib.import_module(entry["module"])
    except ImportError:  # moved since the index was written: a whole discovery will say what is there
        return


METHODS: Registry[type[Method]] = Registry("method", UnknownMethodError, discover=_discover_all, find=_find)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under `cls.card.name`."""
    name = check_name(cls.card.name, "method", f"{cls.__module__}.{cls.__name__}")
    existing = METHODS.find_registered(name)
    if existing is not None and existing is not cls:
        raise XRBenchError(
            f"method name {name!r} is registered twice: {existing.__module__}.{existing.__name__} "
            f"and {cls.__module__}.{cls.__name__}"
        )
    METHODS.add(name, cls, replace=True)
    return cls


def variant(
    base: type[Method],
    name: str,
    description: str,
    reference: str | None = None,
    smoke_params: dict[str, Any] | None = None,
    **defaults: Any,
) -> type[Method]:
    """Register `base` again under a new name with other defaults (e.g. `simclr-knn` is `knn`
    with `pretrain=simclr`): one implementation, several leaderboard entries."""
    card = replace(
        base.card,
        name=name,
        description=description,
        reference=reference or base.card.reference,
        params=base.card.params.with_defaults(name, smoke=smoke_params, **defaults),
    )
    class_name = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    caller = sys._getframe(1).f_globals.get("__name__", base.__module__)
    return register(type(class_name, (base,), {"card": card, "__module__": caller}))


def discover() -> dict[str, type[Method]]:
    """Every method, each module imported (slow: their dependencies load too)."""
    return dict(sorted(METHODS.items()))


def _load_plugin(ep: Any) -> None:
    """Register the methods an entry point brings, remembering their distribution; a plugin
    that raises is recorded in `_BROKEN` and skipped."""
    before, name = set(METHODS.registered()), getattr(ep, "name", repr(ep))
    try:
        loaded = ep.load()
        if isinstance(loaded, type) and issubclass(loaded, Method):
            register(loaded)
    except Exception as exc:
        _BROKEN[name] = f"{type(exc).__name__}: {exc}"
        logging.getLogger("xrbench").warning("method plugin %r could not be loaded: %s", name, _BROKEN[name])
        return
    dist = getattr(ep, "dist", None)
    origin = {"distribution": getattr(dist, "name", name), "version": getattr(dist, "version", "unknown")}
    for method in set(METHODS.registered()) - before:
        _PLUGINS[method] = {**origin, "entry_point": name}


def plugin_origin(name: str) -> dict[str, str] | None:
    """A plugin method's distribution and version (None for a method of `methods/`)."""
    origin = _PLUGINS.get(name)
    return None if origin is None else {k: v for k, v in origin.items() if k != "entry_point"}


def broken_plugins() -> dict[str, str]:
    """Entry points of the `xrbench.methods` group that failed to load, with their errors."""
    discover()
    return dict(_BROKEN)


def get_method(name: str) -> type[Method]:
    if name in _BROKEN:
        raise UnknownMethodError(f"method plugin {name!r} failed to load: {_BROKEN[name]}")
    try:
        return METHODS.get(name)
    except UnknownMethodError:
        if name in _BROKEN:
            raise UnknownMethodError(f"method plugin {name!r} failed to load: {_BROKEN[name]}") from None
        raise


def create_method(name: str, params: dict[str, Any] | None = None) -> Method:
    """The method with `params` over its defaults (strings from the command line are coerced to
    each parameter's type), refusing unknown parameters, values of the wrong type or outside
    their range or choices, and combinations the method's `check_params` refuses."""
    cls = get_method(name)
    method = cls(**(params or {}))
    cls.check_params(method.params)
    return method


def describe(cls: type[Method]) -> dict[str, Any]:
    """What the index keeps of a method: where it is, its card and its parameters."""
    card = cls.card
    plugin = _PLUGINS.get(card.name)
    params = [
        {**asdict(s), "type": s.type.__name__, "smoke": None if s.smoke is NO_SMOKE else s.smoke, "has_smoke":
         s.smoke is not NO_SMOKE, "choices": list(s.choices) if s.choices is not None else None}
        for s in card.params.specs()
    ]  # fmt: skip
    return {
        "module": cls.__module__,
        "class": cls.__qualname__,
        "plugin": plugin,
        "entry_point": plugin.get("entry_point") if plugin else None,
        "card": {**card.summary(), "needs_grad": card.needs_grad, "exceptions": dict(card.exceptions)},
        "params": params,
    }


def method_index() -> dict[str, Any]:
    """The index of every method (`harness.api.index`), rebuilt by a discovery when stale."""
    index = read_index()
    if index is None:
        discover()
        index = read_index()
    if index is None:  # discovered before the code changed, in this process: write what it knows
        _write_index(index_key())
        index = read_index() or {}
    return index
