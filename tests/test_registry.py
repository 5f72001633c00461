import pytest

from harness import registry
from harness.errors import ParameterError, UnknownMethodError, XRBenchError
from harness.protocol import Method, MethodCard


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
    assert registry.parse_params(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ParameterError):
        registry.parse_params(["novalue"])


def test_duplicate_names_are_rejected():
    class Impostor(Method):
        card = MethodCard("knn", "x", "x", "x", "x")

    with pytest.raises(XRBenchError, match="registered twice"):
        registry.register(Impostor)


def test_entry_point_methods_are_registered(monkeypatch):
    class External(Method):
        card = MethodCard("external-test-method", "x", "an external method", "x", "MIT")

    class FakeEntryPoint:
        def load(self):
            return External

    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [FakeEntryPoint()] if group == "xrbench.methods" else []
    )
    assert registry.discover()["external-test-method"] is External
    monkeypatch.delitem(registry._REGISTRY, "external-test-method")
