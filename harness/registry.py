"""Method registry: every module in `methods/`, plus third-party packages that declare an
entry point in the group `xrbench.methods` (the entry point names a module or a Method class).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

from harness.errors import ParameterError, UnknownMethodError, XRBenchError
from harness.protocol import Method

ENTRY_POINT_GROUP = "xrbench.methods"
_REGISTRY: dict[str, type[Method]] = {}
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
    base: type[Method], name: str, description: str, reference: str | None = None, **defaults: Any
) -> type[Method]:
    """Register `base` again under a new name with other defaults (e.g. `simclr-knn` is `knn`
    with `pretrain=simclr`): one implementation, several leaderboard entries."""
    card = replace(
        base.card,
        name=name,
        description=description,
        reference=reference or base.card.reference,
        defaults={**base.card.defaults, **defaults},
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
            loaded = ep.load()
            if isinstance(loaded, type) and issubclass(loaded, Method):
                register(loaded)
        _discovered = True
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> type[Method]:
    methods = discover()
    if name not in methods:
        raise UnknownMethodError(f"unknown method {name!r}; registered: {', '.join(methods)}")
    return methods[name]


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
    cls = get_method(name)
    defaults = cls.card.defaults
    params = params or {}
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ParameterError(
            f"method {name} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(f'{k}={v}' for k, v in defaults.items()) or 'none'}"
        )
    return cls(**{k: _coerce(k, v, defaults[k]) for k, v in params.items()})


def parse_params(pairs: list[str]) -> dict[str, str]:
    """Parse `key=value` command-line pairs."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param expects key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params
