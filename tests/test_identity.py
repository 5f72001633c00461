"""A run's code identity and a grid cell's key follow the code the method runs: its own file and
every module it imports, transitively, and the harness code predictions pass through."""

import shutil

import pytest

from harness.api.identity import method_origin
from harness.api.registry import get_method
from harness.core import code
from harness.core.paths import REPO_ROOT
from harness.run.spec import RunOptions, RunSpec


@pytest.fixture
def editable(tmp_path, monkeypatch):
    """`edit(module)`: the module's source is read from a copy from now on; returns the copy to
    edit. (The checkout's own files are never touched.)"""
    copies = {}
    real = code.module_file

    def module_file(name):
        return copies.get(name) or real(name)

    monkeypatch.setattr(code, "module_file", module_file)

    def edit(module):
        copy = tmp_path / (module.replace(".", "_") + ".py")
        shutil.copy(real(module), copy)
        copies[module] = copy
        return copy

    return edit


def key(method="patchcore"):
    return RunSpec.build(method, "synth-cxr-ad", options=RunOptions("cpu")).key


def test_patchcore_records_the_building_blocks_it_runs():
    files = method_origin(get_method("patchcore"))["files"]
    assert "methods/patchcore.py" in files
    for block in ("embedding", "coreset", "neighbors", "features", "backbones"):
        assert f"harness/components/{block}.py" in files
    assert not any(p.startswith(("harness/site/", "harness/results/", "harness/cli/")) for p in files)


def test_editing_a_building_block_changes_patchcores_cell_key(editable):
    before, knn_before = key(), key("intensity")
    coreset = editable("harness.components.coreset")
    assert key() == before  # a copy, unchanged: the same bytes, the same key
    coreset.write_text(coreset.read_text() + "\n# an edit\n")
    assert key() != before
    assert key("intensity") == knn_before  # intensity does not import the coreset


def test_editing_the_inference_path_changes_every_key(editable):
    before = key("intensity")
    inference = editable("harness.run.inference")
    inference.write_text(inference.read_text() + "\n# an edit\n")
    assert key("intensity") != before


def test_editing_what_no_method_runs_changes_no_key(editable):
    before = key()
    site = editable("harness.site.builder")
    site.write_text(site.read_text() + "\n# an edit\n")
    assert key() == before


def test_the_closure_skips_imports_made_only_for_type_checking(tmp_path):
    module = tmp_path / "typed_only.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.run.runner import run_bench\n"
        "def f():\n    from harness.core.errors import XRBenchError\n"
    )
    assert code.runtime_imports(module) >= {"harness.core.errors"}
    assert "harness.run.runner" not in code.runtime_imports(module)


def test_code_paths_are_relative_to_the_checkout():
    files = method_origin(get_method("knn"))["files"]
    assert all(not p.startswith("/") for p in files) and (REPO_ROOT / "methods" / "knn.py").is_file()
