"""Typed method parameters: one frozen dataclass per method, one field per parameter.

A field's metadata (set with `param`) says everything the harness needs to know about it: its
range or choices, the value that makes a smoke test fast, whether it changes the weights a
method trains (so that it is part of every checkpoint key), and what it means. The command
line's coercion (`--param k=10`), the card `xrbench show` prints, the checks before a run and
the checkpoint keys all derive from it:

    @dataclass(frozen=True)
    class KNNParams(ExtractorParams):
        k: int = param(5, low=1, help="neighbours averaged", weights=False)

A method reads its parameters as `self.params.k` or `self.params["k"]`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import ParameterError

NO_SMOKE = object()
"""A field without a smoke-test value keeps its default in smoke tests."""
TYPES = (bool, int, float, str)
RESERVED = {"keys", "items", "values", "get", "specs", "names", "defaults", "smoke", "parse", "with_defaults",
            "as_dict", "weight_key", "redefault"}  # fmt: skip


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[Any, ...] | None = None,
    smoke: Any = NO_SMOKE,
    weights: bool = True,
    help: str = "",
) -> Any:
    """A parameter field: inclusive bounds `low` and `high` (None: unbounded), or the values it
    allows (`choices`); `smoke`: its value in smoke tests; `weights`: whether it changes the
    weights a method trains (False for what only acts at prediction or in a memory bank)."""
    meta = {"low": low, "high": high, "choices": choices, "smoke": smoke, "weights": weights, "help": help}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as the card and the command line describe it."""

    name: str
    type: type
    default: Any
    low: float | None
    high: float | None
    choices: tuple[Any, ...] | None
    smoke: Any
    changes_weights: bool
    help: str

    def allowed(self) -> str:
        """What values it takes, in words: 'int >= 1', 'one of l1, l2', 'float from 0 to 1'."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            return f"{self.type.__name__} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{self.type.__name__} >= {self.low:g}"
        if self.high is not None:
            return f"{self.type.__name__} <= {self.high:g}"
        return self.type.__name__


@dataclass(frozen=True)
class Params(Mapping):
    """Base class of every method's parameters (a method without any uses it as is). Instances
    are checked when made (types, ranges, choices) and read like a mapping too."""

    def __post_init__(self) -> None:
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.type in (int, float) and isinstance(value, numbers.Real) and not isinstance(value, bool):
                if spec.type is float or isinstance(value, numbers.Integral):
                    object.__setattr__(self, spec.name, spec.type(value))  # 1 and 1.0 store alike
            _check(spec, getattr(self, spec.name))

    # --- reading ------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self.names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def as_dict(self) -> dict[str, Any]:
        """Plain values by name: what a run stores (as JSON) and a bundle carries."""
        return {name: getattr(self, name) for name in self.names()}

    def weight_key(self) -> dict[str, Any]:
        """The parameters that change trained weights: every checkpoint key holds them all."""
        return {s.name: getattr(self, s.name) for s in self.specs() if s.changes_weights}

    # --- describing ---------------------------------------------------------------------------
    @classmethod
    def specs(cls) -> list[ParamSpec]:
        return list(_specs(cls))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {s.name: s.default for s in cls.specs()}

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        """The values that make a method fit in seconds on a tiny board (where they differ)."""
        return {s.name: s.smoke for s in cls.specs() if s.smoke is not NO_SMOKE}

    # --- making -------------------------------------------------------------------------------
    @classmethod
    def redefault(cls, name: str, default: Any) -> Any:
        """Field `name` of this class with another default (same checks and meaning), for a
        subclass that changes it: `layers: str = ExtractorParams.redefault("layers", "4")`."""
        meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
        return field(default=default, metadata=meta)

    @classmethod
    def parse(cls, values: Mapping[str, Any] | None = None, method: str = "") -> Params:
        """Parameters from `values` over the defaults: strings (from the command line) are
        coerced to each field's type; an unknown name is refused with the closest one. Errors
        name `method`."""
        where = f"method {method}" if method else cls.__name__
        coerced = coerce_values(cls.specs(), dict(values or {}), where)
        try:
            return cls(**coerced)
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from None

    @classmethod
    def with_defaults(cls, method: str, smoke: Mapping[str, Any] | None = None, **defaults: Any) -> type[Params]:
        """A subclass with other defaults (and smoke-test values): a configured variant of a
        method, checked like any."""
        smoke = dict(smoke or {})
        unknown = sorted((set(defaults) | set(smoke)) - set(cls.names()))
        if unknown:
            raise ParameterError(f"{cls.__name__} has no parameter {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            if f.name in defaults or f.name in smoke:
                meta = {**f.metadata, **({"smoke": smoke[f.name]} if f.name in smoke else {})}
                fields.append((f.name, hints[f.name], field(default=defaults.get(f.name, f.default), metadata=meta)))
        made = dataclasses.make_dataclass(f"{_title(method)}Params", fields, bases=(cls,), frozen=True)
        made.__module__ = cls.__module__
        try:
            made()  # the new defaults must pass the checks too
        except ParameterError as exc:
            raise ParameterError(f"method {method}: {exc}") from None
        return made


@functools.cache
def _specs(cls: type[Params]) -> tuple[ParamSpec, ...]:
    """Each field of a parameters class as a `ParamSpec` (read once per class)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        kind = hints[f.name]
        if f.name in RESERVED:
            raise TypeError(f"{cls.__name__}.{f.name}: the name is taken by the parameters' own methods")
        if kind not in TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: parameters are bool, int, float or str, not {kind}")
        out.append(
            ParamSpec(f.name, kind, f.default, meta.get("low"), meta.get("high"), meta.get("choices"),
                      meta.get("smoke", NO_SMOKE), meta.get("weights", True), meta.get("help", ""))
        )  # fmt: skip
    return tuple(out)


def coerce_values(specs: list[ParamSpec], values: dict[str, Any], where: str) -> dict[str, Any]:
    """`values` as the specs' types, refusing an unknown name with the closest one and
    (after coercion) a value its spec does not allow; errors start with `where`."""
    names = [s.name for s in specs]
    unknown = sorted(set(values) - set(names))
    if unknown:
        hints = [s for k in unknown for s in difflib.get_close_matches(k, names, n=1)]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        listed = ", ".join(f"{s.name}={s.default}" for s in specs) or "none"
        raise ParameterError(f"{where} has no parameter {', '.join(unknown)}{hint}; its parameters: {listed}")
    by_name = {s.name: s for s in specs}
    try:
        return {k: _coerce(k, v, by_name[k].type) for k, v in values.items()}
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None


def check_values(specs: list[ParamSpec], values: dict[str, Any], where: str) -> None:
    """Refuse what `Params.parse` would refuse value by value, from specs alone (the method
    index's: no import of the method)."""
    by_name = {s.name: s for s in specs}
    for key, value in coerce_values(specs, values, where).items():
        spec = by_name[key]
        if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        try:
            _check(spec, value)
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from None


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def _coerce(key: str, value: Any, kind: type) -> Any:
    """A command-line string as the field's type (other values are checked as they are)."""
    if not isinstance(value, str) or kind is str:
        return float(value) if kind is float and type(value) is int else value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return kind(value)
    except ValueError:
        raise ParameterError(f"parameter {key}={value!r}: expected {kind.__name__}") from None


def _check(spec: ParamSpec, value: Any) -> None:
    """Refuse a value of the wrong type, outside the bounds or choices, or not finite."""
    if type(value) is not spec.type:
        raise ParameterError(f"{spec.name}={value!r} is a {type(value).__name__}; it must be a {spec.type.__name__}")
    if spec.type is float and not math.isfinite(value):
        raise ParameterError(f"{spec.name}={value} is not a finite number")
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(f"{spec.name}={value!r} is not allowed; choose {spec.allowed()}")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ParameterError(f"{spec.name}={value} is out of range; it must be {spec.allowed()}")


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`key=value` command-line pairs (`--param k=10`) as a dict of strings."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param expects key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params
