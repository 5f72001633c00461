"""The documentation is true to the code: the site builds offline with no warning, its examples
run, and every module, command, make target and file it names exists."""

import argparse
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import xrbench
from harness.cli.main import build_parser
from harness.conformance.checks import check_method
from harness.run.runner import bench

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "adding-a-method.md"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


def example(name: str) -> types.ModuleType:
    """The guide's code block that starts with `# methods/<name>.py`, as a module."""
    code = re.search(rf"```python\n(# methods/{name}\.py\n.*?)```", GUIDE.read_text(), re.S).group(1)
    module = types.ModuleType(f"guide_example.{name}")
    exec(compile(code, str(GUIDE), "exec"), module.__dict__)
    return module


def test_the_smallest_example_runs_through_a_whole_run(tiny_board, tmp_path):
    example("mean_distance")
    result = bench("mean-distance", tiny_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert "auroc" in set(result.metrics["metric"])


def test_the_training_example_passes_every_check():
    (report,) = check_method(example("tiny_ae").TinyAutoencoder)
    assert report.task == "anomaly" and report.maps_shape == (52, 64, 64)  # (B, h, w), as the contract says
    assert report.weights.id == "none+trained" and len(report.weights.sha256) == 64


def test_the_site_builds_offline_and_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "docs")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    methods = (tmp_path / "docs" / "methods" / "index.html").read_text()
    assert "patchcore" in methods and "flowdiff-normalizer" in methods  # the table read from the cards
    assert "xrbench data prepare" in (tmp_path / "docs" / "cli" / "index.html").read_text()
    api = (tmp_path / "docs" / "python-api" / "index.html").read_text()
    assert all(
        f"xrbench.{name}" in api or f"<code>{name}</code>" in api for name in xrbench.__all__ if name != "__version__"
    )
    assert "Run.compare" in api and "paired patient-bootstrap interval" in api  # a method's docstring
    from harness.core.metrics import METRICS

    glossary = (tmp_path / "docs" / "glossary" / "index.html").read_text()
    assert all(f"<code>{name}</code>" in glossary for name in METRICS.names())  # every metric, from the catalogue
    assert "image AP" in glossary and "F1-max (optimistic)" in glossary


def resolves(dotted: str) -> bool:
    """A module, or an attribute of one (`harness.api.protocol.Method`, `harness.core.maps.decode`)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attribute in parts[k:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_named_exists(page):
    named = set(re.findall(r"`(harness(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", page.read_text()))
    assert [name for name in sorted(named) if not resolves(name)] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_named_exists(page):
    named = set(re.findall(r"`((?:harness|methods|tests|benchmarks|leaderboards|datasets|docs|site)/[\w./-]+\.\w+)`",
                           page.read_text()))  # fmt: skip
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out |= {f"{prefix}{name}"} | commands(sub, f"{prefix}{name} ")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_and_make_target_named_exists(page):
    text = page.read_text()
    known = commands(build_parser())
    used = set(re.findall(r"(?:`|^|bin/)xrbench ([a-z]+(?: [a-z]+)?)", text, re.M))  # in code, not prose
    unknown = [u for u in sorted(used) if u not in known and u.split(" ")[0] not in known]
    assert unknown == [], f"not xrbench commands: {unknown}"
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]*)", text)) | set(re.findall(r"^make ([a-z][a-z-]*)", text, re.M))
    assert sorted(named - targets) == []
