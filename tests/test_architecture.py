"""The shape of the code: each stage's folder imports only the stages below it, and no module
imports another that imports it back, counting every edge Python follows: imports inside
functions, imports only made for type checking, and the import of a module's parent package
(importing `harness.data.cache` runs `harness/data/__init__.py` first)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A layer -> the layers it may import besides itself (every layer may import the `harness`
# package itself, which holds the version only).
LAYERS = {
    "harness.core": set(),
    "harness.api": {"harness.core", "methods"},  # `methods`: the package discovery looks in
    "harness.components": {"harness.api", "harness.core"},
    "harness.boards": {"harness.core"},
    "harness.data": {"harness.boards", "harness.core"},
    "harness.scoring": {"harness.data", "harness.boards", "harness.core"},
    "harness.results": {"harness.scoring", "harness.data", "harness.boards", "harness.core"},
    "harness.run": {"harness.results", "harness.scoring", "harness.data", "harness.boards", "harness.api",
                    "harness.core"},
    "harness.conformance": {"harness.run", "harness.scoring", "harness.data", "harness.boards", "harness.api",
                            "harness.core"},
    "harness.submissions": {"harness.run", "harness.results", "harness.scoring", "harness.data", "harness.boards",
                            "harness.api", "harness.core"},
    "harness.site": {"harness.results", "harness.core"},
    "harness.public": {"harness.submissions", "harness.run", "harness.results", "harness.scoring", "harness.api",
                       "harness.core"},
    "harness.cli": {"harness.public", "harness.site", "harness.submissions", "harness.conformance", "harness.run",
                    "harness.results", "harness.scoring",
                    "harness.data", "harness.boards", "harness.api", "harness.core"},
    "methods": {"harness.api", "harness.components"},
    "xrbench": {"harness.public", "harness.submissions", "harness.core"},  # the public API's one import
}  # fmt: skip


def module_files() -> dict[str, Path]:
    files = {}
    for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("methods/*.py"), *ROOT.glob("xrbench/*.py")]:
        files[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return files


def imported(tree: ast.AST, files: dict[str, Path]) -> set[str]:
    """The project modules a module's body imports anywhere (functions and type-checking blocks too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                out.add(target if target in files else node.module)
    return out & set(files)


def module_graph() -> dict[str, set[str]]:
    """Every module of harness/ and methods/ -> the project modules whose import it causes:
    what it imports, each of those modules' parent packages, and its own parent package."""
    files = module_files()
    graph = {name: imported(ast.parse(path.read_text()), files) for name, path in files.items()}
    for name in files:
        parent = name.rpartition(".")[0]
        if parent in files:
            graph[name].add(parent)
        for target in list(graph[name]):
            while (target := target.rpartition(".")[0]) in files:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str | None:
    return next((name for name in LAYERS if module == name or module.startswith(name + ".")), None)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b` for every import of a layer the importing module's layer may not import."""
    out = []
    for source, targets in sorted(graph.items()):
        own = layer(source)
        if own is None:  # the `harness` package
            continue
        for target in sorted(targets):
            other = layer(target)
            if other not in (None, own) and other not in LAYERS[own]:
                out.append(f"{source} -> {target}")
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_counts_parent_packages_and_type_checking_imports():
    graph = module_graph()
    assert "harness.data" in graph["harness.data.cache"]  # its parent package
    assert "harness.boards.spec" in graph["harness.scoring.evaluation"]  # imported for type checking only


def test_no_import_cycles():
    graph = module_graph()
    assert len(graph) > 80
    assert cycles(graph) == []


def test_every_module_is_in_a_layer():
    assert [m for m in module_graph() if m != "harness" and layer(m) is None] == []


def test_each_layer_imports_only_the_layers_below_it():
    assert violations(module_graph()) == []


def test_the_layer_check_finds_a_violation():
    graph = {"harness.data.cache": {"harness.scoring.metrics"}, "harness.site.builder": {"harness.core.paths"}}
    assert violations(graph) == ["harness.data.cache -> harness.scoring.metrics"]


def test_importing_the_image_cache_loads_only_data_boards_and_core():
    code = "import sys, harness.data.cache; print(' '.join(sorted(m for m in sys.modules if m.startswith('harness'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {layer(m) for m in loaded} - {None} <= {"harness.data", "harness.boards", "harness.core"}
    assert "harness.data.cache" in loaded


SQL_HOMES = {"harness/results/store.py", "harness/results/queries.py"}
PARQUET_FILES = {"harness/submissions/bundles.py"}  # DuckDB reads and writes a bundle's parquet files, no database


def test_the_results_database_is_queried_in_one_module():
    """Every SQL statement on the results database is in the store (schema, writes) or in
    `harness.results.queries` (named questions)."""
    found = []
    for path in sorted(ROOT.glob("harness/**/*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in SQL_HOMES | PARQUET_FILES:
            continue
        source = path.read_text()
        found += [name for call in (".query(", ".execute(") if call in source]
    assert found == []
