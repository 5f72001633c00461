import pytest

from harness.api import registry
from harness.api.identity import method_origin
from harness.api.params import parse_params
from harness.api.protocol import Method, MethodCard
from harness.core.errors import ParameterError, UnknownMethodError, XRBenchError


def test_shipped_methods_are_discovered_with_cards():
    methods = registry.discover()
    for name in ("patchcore", "knn", "intensity", "random"):
        assert name in methods
        card = methods[name].card
        assert card.name == name and card.description and card.reference and "anomaly" in card.tasks


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(UnknownMethodError) as info:
        registry.get_method("patchcorr")
    assert "patchcore" in str(info.value) and "knn" in str(info.value)


def test_parameters_are_checked_and_coerced():
    method = registry.create_method("patchcore", {"coreset_ratio": "0.2", "neighbourhood": "5"})
    assert method.params["coreset_ratio"] == 0.2 and method.params["neighbourhood"] == 5
    assert method.params["backbone"] == "resnet18"
    with pytest.raises(ParameterError, match="no parameter"):
        registry.create_method("patchcore", {"coreset": "0.2"})
    with pytest.raises(ParameterError, match="expected int"):
        registry.create_method("patchcore", {"neighbourhood": "three"})
    with pytest.raises(ParameterError, match="out of range"):
        registry.create_method("patchcore", {"coreset_ratio": "1.5"})
    with pytest.raises(ParameterError, match="not a finite number"):
        registry.create_method("patchcore", {"smoothing_sigma": "nan"})
    with pytest.raises(ParameterError, match="choose one of none, simclr"):
        registry.create_method("knn", {"pretrain": "byol"})
    assert parse_params(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ParameterError):
        parse_params(["novalue"])


def test_duplicate_names_are_rejected():
    class Impostor(Method):
        card = MethodCard("knn", "x", "x", "x", "x")

    with pytest.raises(XRBenchError, match="registered twice"):
        registry.register(Impostor)


def test_entry_point_methods_are_registered(monkeypatch):
    class External(Method):
        card = MethodCard("external-test-method", "x", "an external method", "x", "MIT")

        def fit(self, train, val, ctx):
            pass

        def predict(self, batch):
            raise NotImplementedError

    class FakeEntryPoint:
        def load(self):
            return External

    monkeypatch.setattr(registry.METHODS, "_discovered", False)
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [FakeEntryPoint()] if group == "xrbench.methods" else []
    )
    try:
        assert registry.discover()["external-test-method"] is External
    finally:
        registry.METHODS.forget("external-test-method")


def test_a_broken_plugin_is_reported_and_does_not_break_the_others(monkeypatch, caplog):
    class Broken:
        name = "broken-plugin"

        def load(self):
            raise ImportError("No module named 'their_dependency'")

    monkeypatch.setattr(registry.METHODS, "_discovered", False)
    monkeypatch.setattr(registry, "_BROKEN", {})
    monkeypatch.setattr(registry, "entry_points", lambda group: [Broken()] if group == "xrbench.methods" else [])
    methods = registry.discover()
    assert "patchcore" in methods and "broken-plugin" not in methods
    assert registry.broken_plugins() == {"broken-plugin": "ImportError: No module named 'their_dependency'"}
    assert "broken-plugin" in caplog.text
    with pytest.raises(UnknownMethodError, match="plugin 'broken-plugin' failed to load: ImportError"):
        registry.get_method("broken-plugin")


def test_plugin_methods_record_their_distribution_and_version(monkeypatch):
    class Plugged(Method):
        card = MethodCard("plugged-test-method", "x", "a plugin method", "x", "MIT")

        def fit(self, train, val, ctx):
            pass

        def predict(self, batch):
            raise NotImplementedError

    class Dist:
        name, version = "xrbench-plugged", "1.2.3"

    class EntryPoint:
        name, dist = "plugged", Dist()

        def load(self):
            return Plugged

    monkeypatch.setattr(registry.METHODS, "_discovered", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group == "xrbench.methods" else [])
    try:
        registry.discover()
        origin = method_origin(Plugged)
        assert origin["plugin"] == {"distribution": "xrbench-plugged", "version": "1.2.3"}
        assert "harness/api/protocol.py" in origin["files"]  # the harness code it imports
        assert not any(path.startswith("tests/") for path in origin["files"])  # its own: by its version
    finally:
        registry.METHODS.forget("plugged-test-method")
        registry._PLUGINS.pop("plugged-test-method", None)


def test_methods_in_the_repository_record_their_files_and_every_module_they_import():
    from harness.core.fingerprints import file_sha256
    from harness.core.paths import REPO_ROOT

    files = method_origin(registry.get_method("cutpaste"))["files"]
    for path in ("methods/cutpaste.py", "methods/mahalanobis.py", "harness/components/embedding.py"):
        assert files[path] == file_sha256(REPO_ROOT / path)
    assert "harness/components/pretrain/cutpaste.py" in files  # imported through the feature extractor
    assert "harness/core/errors.py" in files and "harness/components/__init__.py" in files  # parent packages run too
    assert not any(p.startswith(("harness/run/", "harness/scoring/", "harness/site/")) for p in files)
    assert list(files) == sorted(files)
