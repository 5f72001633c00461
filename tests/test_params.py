"""Typed method parameters: coercion and checks from the field metadata, variants, and the
checkpoint keys of every method that trains."""

import dataclasses
import math

import pytest

from harness.api.params import Params, param
from harness.api.registry import discover
from harness.components import training
from harness.conformance.checks import fit_and_predict
from harness.core.code import closure
from harness.core.errors import ParameterError, XRBenchError


@dataclasses.dataclass(frozen=True)
class Example(Params):
    size: int = param(64, low=16, high=1024, smoke=32, help="internal size")
    lr: float = param(1e-3, low=1e-12, help="learning rate")
    residual: str = param("l2", choices=("l2", "l1"), help="map")
    clahe: bool = param(False, help="equalise")
    sigma: float = param(4.0, low=0.0, weights=False, help="smoothing")


def test_values_from_the_command_line_take_each_fields_type():
    p = Example.parse({"size": "128", "lr": "0.5", "residual": "l1", "clahe": "yes", "sigma": "0"}, "m")
    assert (p.size, p.lr, p.residual, p.clahe, p.sigma) == (128, 0.5, "l1", True, 0.0)
    assert type(p.sigma) is float and p["size"] == 128 and dict(p) == p.as_dict()
    assert Example.parse({"lr": 1}).lr == 1.0 and type(Example.parse({"lr": 1}).lr) is float  # 1 and 1.0 store alike


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": "8"}, r"method m: size=8 is out of range; it must be int from 16 to 1024"),
        ({"size": "1.5"}, r"method m: parameter size='1.5': expected int"),
        ({"size": True}, r"size=True is a bool; it must be a int"),
        ({"lr": "nan"}, r"lr=nan is not a finite number"),
        ({"lr": math.inf}, r"lr=inf is not a finite number"),
        ({"residual": "l3"}, r"residual='l3' is not allowed; choose one of l2, l1"),
        ({"clahe": "perhaps"}, r"parameter clahe='perhaps': expected bool"),
        ({"sizes": "32"}, r"method m has no parameter sizes \(did you mean size\?\); its parameters: size=64"),
    ],
)
def test_bad_values_are_refused_naming_the_method_and_the_parameter(values, message):
    with pytest.raises(ParameterError, match=message):
        Example.parse(values, "m")


def test_the_metadata_gives_defaults_smoke_values_and_the_weight_key():
    assert Example.defaults() == {"size": 64, "lr": 1e-3, "residual": "l2", "clahe": False, "sigma": 4.0}
    assert Example.smoke() == {"size": 32}
    assert set(Example().weight_key()) == {"size", "lr", "residual", "clahe"}  # sigma acts after training
    spec = next(s for s in Example.specs() if s.name == "size")
    assert spec.allowed() == "int from 16 to 1024" and spec.help == "internal size"


def test_a_variant_changes_defaults_and_is_checked():
    variant = Example.with_defaults("m-l1", smoke={"lr": 0.1}, residual="l1")
    assert variant().residual == "l1" and variant.smoke() == {"size": 32, "lr": 0.1}
    assert Example().residual == "l2"  # the base is untouched
    with pytest.raises(ParameterError, match="method m-bad: residual='l9' is not allowed"):
        Example.with_defaults("m-bad", residual="l9")


def test_a_field_cannot_shadow_the_mapping_interface():
    @dataclasses.dataclass(frozen=True)
    class Shadowing(Params):
        keys: int = param(1, help="x")

    with pytest.raises(TypeError, match="taken by the parameters' own methods"):
        Shadowing.specs()


def trains(cls):
    """Whether the method's code runs the training loop of `harness.components.training`."""
    return "harness.components.training" in closure([cls.__module__])


TRAINING = sorted(name for name, cls in discover().items() if trains(cls) and cls.__module__.startswith("methods."))


class KeyTaken(XRBenchError):
    """Stops a fit once its checkpoint key is taken (an XRBenchError: the fit stage lets it through)."""


@pytest.mark.parametrize("name", TRAINING)
def test_every_weight_changing_parameter_is_in_the_checkpoint_key(name, tiny_board, tiny_multilabel_board, monkeypatch):
    """The key the method hands to the checkpoint cache holds exactly its parameters that change
    the weights, by value, apart from the harness's own parts (so none can shadow another)."""
    keys = []

    def take(kind, label, key, train, log):
        keys.append(key)
        raise KeyTaken

    monkeypatch.setattr(training, "cached_checkpoint", take)
    cls = discover()[name]
    board = tiny_board if "anomaly" in cls.card.tasks else tiny_multilabel_board
    with pytest.raises(KeyTaken):
        fit_and_predict(cls, board, cls.card.smoke_params, 0)
    params = cls.card.params.parse(cls.card.smoke_params)
    weight_fields = {s.name for s in params.specs() if s.changes_weights}
    assert keys[0]["params"] == params.weight_key() and set(keys[0]["params"]) == weight_fields
    assert {"seed", "data", "resolution", "device", "precision", "code"} <= set(keys[0])
    assert keys[0]["code"] == ctx_code(cls)  # the method's code identity: an edit trains again


def test_the_training_methods_are_found():
    assert {"ae", "supervised", "flowdiff-normalizer", "ddpm-recon", "mae-recon", "reversed-ae"} <= set(TRAINING)
    assert "patchcore" not in TRAINING


@pytest.mark.parametrize(
    ("method", "values"),
    [
        ("patchcore", {"coreset_ratio": "2"}),
        ("patchcore", {"k": "1"}),
        ("knn", {"k": "five"}),
        ("knn", {"pretrain": "byol"}),
        ("supervised", {"clahe": "perhaps"}),
        ("ae", {"lr": "nan"}),
    ],
)
def test_the_index_refuses_what_the_method_refuses_with_the_same_words(method, values):
    """A bad parameter is refused from the method index, before the method's module is imported."""
    from harness.api.index import check_params_early
    from harness.api.registry import create_method, method_index

    method_index()  # written by a discovery when stale
    with pytest.raises(ParameterError) as early:
        check_params_early(method, values)
    with pytest.raises(ParameterError) as late:
        create_method(method, values)
    assert str(early.value) == str(late.value)
    check_params_early(method, {})  # nothing to check


def ctx_code(cls) -> str:
    """The code part of a checkpoint key, computed apart from the fit stage."""
    import hashlib
    import json

    from harness.api.identity import method_origin

    return hashlib.sha256(json.dumps(method_origin(cls), sort_keys=True).encode()).hexdigest()
