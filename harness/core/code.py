"""The code a result depends on: a module's source file and every project module it imports,
transitively, each with its SHA-256.

The closure is read from the source (imports anywhere in a module's body, inside functions
too, but not those made only for type checking, which never run), so an edit to any file a
method runs (a building block in `harness/components/`, say) changes the identity of every
method that imports it, and nothing else does. A project module's file is named after the
module (`harness/components/coreset.py`), the same in a checkout and in an installed wheel.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from harness.core.fingerprints import file_sha256
from harness.core.paths import REPO_ROOT

PROJECT_PACKAGES = ("harness", "methods")


def module_file(name: str) -> Path | None:
    """The source file of a module (None for a module that is not a Python file)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec else None
    return Path(origin).resolve() if origin and origin.endswith(".py") else None


@lru_cache(maxsize=4096)
def _imports(path: Path, size: int, mtime_ns: int) -> frozenset[str]:
    """The module names a file imports at run time (cached per file version)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return frozenset(found)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path) -> frozenset[str]:
    st = path.stat()
    return _imports(path, st.st_size, st.st_mtime_ns)


def _project(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def closure(modules: list[str], packages: tuple[str, ...] = PROJECT_PACKAGES) -> dict[str, Path]:
    """`modules` and every module of `packages` that importing them runs: what they import
    (recursively) and the packages above each; by module name, with its file."""
    seen: dict[str, Path] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in seen or (name not in modules and not _project(name, packages)):
            continue
        path = module_file(name)
        if path is None:  # an attribute imported from a module (`from a.b import C`), not a module
            continue
        seen[name] = path
        parent = name.rpartition(".")[0]
        pending += [parent] if parent else []
        pending += [m for m in runtime_imports(path) if _project(m, packages)]
    return seen


def shown_path(module: str, path: Path) -> str:
    """A module's file as a code reference names it: from its name for a project module
    (`harness/components/coreset.py`, whether it lies in a checkout or in site-packages), else
    relative to the checkout, or absolute."""
    if _project(module, PROJECT_PACKAGES):
        folder = module.replace(".", "/")
        return f"{folder}/__init__.py" if path.name == "__init__.py" else f"{folder}.py"
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def files_sha256(modules: dict[str, Path]) -> dict[str, str]:
    """{shown path: SHA-256} of modules by name, sorted by path."""
    return dict(sorted((shown_path(name, path), file_sha256(path)) for name, path in modules.items()))
