"""Method registry: every module in `methods/`, plus third-party packages that declare an
entry point in the group `xrbench.methods` (the entry point names a module or a Method class).

A plugin that fails to load is reported by name with its error (`broken_plugins()`, shown by
`xrbench list`) and never breaks the registry for the other methods.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pkgutil
import sys
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.api.protocol import Method, MethodCard
from harness.core.errors import ParameterError, UnknownMethodError, XRBenchError
from harness.core.fingerprints import file_sha256
from harness.core.paths import REPO_ROOT

ENTRY_POINT_GROUP = "xrbench.methods"
_REGISTRY: dict[str, type[Method]] = {}
_PLUGINS: dict[str, dict[str, str]] = {}  # method name -> distribution and version
_BROKEN: dict[str, str] = {}  # entry point name -> why it could not be loaded
_discovered = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under `cls.card.name`."""
    name = cls.card.name
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise XRBenchError(
            f"method name {name!r} is registered twice: {existing.__module__}.{existing.__name__} "
            f"and {cls.__module__}.{cls.__name__}"
        )
    _REGISTRY[name] = cls
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
        defaults={**base.card.defaults, **defaults},
        smoke_params={**base.card.smoke_params, **(smoke_params or {})},
    )
    class_name = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    caller = sys._getframe(1).f_globals.get("__name__", base.__module__)
    return register(type(class_name, (base,), {"card": card, "__module__": caller}))


def discover() -> dict[str, type[Method]]:
    global _discovered
    if not _discovered:
        import methods

        for info in pkgutil.iter_modules(methods.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"methods.{info.name}")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _load_plugin(ep)
        _discovered = True
    return dict(sorted(_REGISTRY.items()))


def _load_plugin(ep: Any) -> None:
    """Register the methods an entry point brings, remembering their distribution; a plugin
    that raises is recorded in `_BROKEN` and skipped."""
    before, name = set(_REGISTRY), getattr(ep, "name", repr(ep))
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
    for name in set(_REGISTRY) - before:
        _PLUGINS[name] = origin


def broken_plugins() -> dict[str, str]:
    """Entry points of the `xrbench.methods` group that failed to load, with their errors."""
    discover()
    return dict(_BROKEN)


def get_method(name: str) -> type[Method]:
    methods = discover()
    if name not in methods:
        if name in _BROKEN:
            raise UnknownMethodError(f"method plugin {name!r} failed to load: {_BROKEN[name]}")
        close = difflib.get_close_matches(name, methods, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(f"unknown method {name!r}{hint} (registered: {', '.join(methods)})")
    return methods[name]


def method_origin(cls: type[Method]) -> dict[str, Any]:
    """Where a method's code comes from: a plugin's distribution and version, or the SHA-256 of
    each source file of its class hierarchy outside the harness (paths relative to the
    checkout when inside it). The harness's own code is identified by the run's git commit."""
    if cls.card.name in _PLUGINS:
        return {"plugin": _PLUGINS[cls.card.name]}
    files = {}
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, Method)) or klass.__module__.startswith("harness."):
            continue
        path = _source_file(klass)
        if path is None:
            files[klass.__module__] = None  # defined outside a file (an interactive session, exec)
        else:
            shown = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)
            files[shown] = file_sha256(path)
    return {"files": files}


def _source_file(klass: type) -> Path | None:
    try:
        source = inspect.getsourcefile(klass)
    except (TypeError, OSError):
        return None
    return Path(source).resolve() if source and Path(source).is_file() else None


def _coerce(key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return type(default)(value)
    except ValueError:
        raise ParameterError(f"parameter {key}={value!r}: expected {type(default).__name__}") from None


def create_method(name: str, params: dict[str, Any] | None = None) -> Method:
    """The method with `params` (strings from the command line are coerced to the defaults'
    types), refusing unknown parameters and values outside the card's ranges and choices."""
    cls = get_method(name)
    defaults = cls.card.defaults
    params = params or {}
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        suggestions = [s for k in unknown for s in difflib.get_close_matches(k, defaults, n=1)]
        hint = f" (did you mean {', '.join(suggestions)}?)" if suggestions else ""
        raise ParameterError(
            f"method {name} has no parameter {', '.join(unknown)}{hint}; "
            f"its parameters: {', '.join(f'{k}={v}' for k, v in defaults.items()) or 'none'}"
        )
    method = cls(**{k: _coerce(k, v, defaults[k]) for k, v in params.items()})
    check_ranges(method.card, method.params)
    cls.check_params(method.params)
    return method


def check_ranges(card: MethodCard, params: dict[str, Any]) -> None:
    """Refuse a value outside the card's `ranges` (inclusive) or `choices`, naming what is allowed."""
    for key, (low, high) in card.ranges.items():
        value = params[key]
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = [f">= {low}"] if low is not None else []
            bounds += [f"<= {high}"] if high is not None else []
            raise ParameterError(
                f"method {card.name}: {key}={value} is out of range; it must be {' and '.join(bounds)}"
            )
    for key, allowed in card.choices.items():
        if params[key] not in allowed:
            options = ", ".join(map(str, allowed))
            raise ParameterError(f"method {card.name}: {key}={params[key]!r} is not allowed; choose one of {options}")


def parse_params(pairs: list[str]) -> dict[str, str]:
    """Parse `key=value` command-line pairs."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param expects key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params
