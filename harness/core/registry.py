"""One registry type for every extension point: methods, datasets, metrics, corruptions,
explainers and tasks are each a `Registry` of named entries.

A registry refuses a name registered twice, and an unknown name with one line naming the
closest known one. Entries that would pull in heavy code (a dataset reader, an explainer) hold
a `Ref`, "module:attribute", imported on first use, so that listing what is registered (the
command line's choices, `xrbench list`) stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from harness.core.errors import XRBenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Ref:
    """`module:attribute`, imported when `load()` is first called."""

    path: str

    def load(self) -> Any:
        module, _, attribute = self.path.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split(".") if attribute else ():
            value = getattr(value, part)
        return value


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    `discover`, when given, registers every entry that lives elsewhere (method modules,
    plugins): it is called once, before the first listing or before a lookup that `find` (which
    registers the one entry asked for, when it knows where it is) could not answer."""

    def __init__(
        self,
        kind: str,
        error: type[XRBenchError] = XRBenchError,
        discover: Callable[[], None] | None = None,
        find: Callable[[str], None] | None = None,
    ):
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}
        self._discover = discover
        self._find = find
        self._discovered = discover is None

    def add(self, name: str, entry: T, replace: bool = False) -> T:
        """Register `entry` under `name`; a second entry under one name is refused."""
        existing = self._entries.get(name)
        if existing is not None and existing is not entry and not replace:
            raise XRBenchError(f"{self.kind} {name!r} is registered twice: {existing!r} and {entry!r}")
        self._entries[name] = entry
        return entry

    def _ready(self) -> dict[str, T]:
        if not self._discovered:
            self._discovered = True  # before the call: discovery looks entries up too
            assert self._discover is not None
            self._discover()
        return self._entries

    def get(self, name: str) -> T:
        """The entry, or one line naming the closest known name and every known one."""
        if name not in self._entries and self._find is not None and not self._discovered:
            self._find(name)
        if name not in self._entries:
            self._ready()
        if name not in self._entries:
            raise self._error(self.unknown(name))
        return self._entries[name]

    def find_registered(self, name: str) -> T | None:
        """The entry if it is registered already (no discovery)."""
        return self._entries.get(name)

    def registered(self) -> list[str]:
        """The names registered so far (no discovery)."""
        return list(self._entries)

    def unknown(self, name: str) -> str:
        """What to say about a name that is not registered."""
        names = list(self._ready())
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(names) or 'none'})"

    def names(self) -> list[str]:
        return list(self._ready())

    def items(self) -> list[tuple[str, T]]:
        return list(self._ready().items())

    def __contains__(self, name: object) -> bool:
        return name in self._ready()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ready()))

    def __len__(self) -> int:
        return len(self._ready())

    def forget(self, name: str) -> None:
        """Remove an entry (tests that register a method of their own)."""
        self._entries.pop(name, None)
