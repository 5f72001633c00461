"""The anomalib bridge: every bridged model that runs here keeps the method contract (under the
`bridge` marker: `make test-bridge`, run once by CI), and the bridge's refusals, parameters,
offline guard and code identity (always)."""

import pytest
import torch

from harness.api.identity import method_origin
from harness.api.registry import discover, get_method
from harness.conformance.checks import parametrize_with_checks
from harness.core.errors import ParameterError, WeightsUnavailable, XRBenchError
from harness.run.runner import bench

pytest.importorskip("anomalib", reason="the dev install carries anomalib; `pip install 'xrbench[anomalib]'`")
import methods.anomalib_bridge as bridge

RUNS_HERE = sorted(n for n, cls in discover().items() if n.startswith("anomalib-") and not cls.recipe.needs)


@pytest.mark.bridge
@parametrize_with_checks([get_method(name) for name in RUNS_HERE])
def test_every_bridged_model_keeps_the_contract(method, check):
    check(method)


def test_the_bridged_and_refused_models_are_the_recipes():
    assert {f"anomalib-{n}" for n in bridge.RECIPES} <= set(discover())
    refused = {n for n, r in bridge.RECIPES.items() if r.needs}
    assert {"stfpm", "csflow", "draem", "efficientad", "winclip"} <= refused
    assert {"padim", "patchcore", "fastflow", "cflow", "reverse-distillation", "ganomaly"}.isdisjoint(refused)


def test_parameters_come_from_the_anomalib_constructor():
    import inspect

    from anomalib.models import Patchcore

    card = get_method("anomalib-patchcore").card
    defaults = card.params.defaults()
    signature = inspect.signature(Patchcore.__init__).parameters
    assert defaults["num_neighbors"] == signature["num_neighbors"].default
    assert defaults["coreset_sampling_ratio"] == 0.05  # the recipe's CPU budget, not anomalib's 0.1
    assert defaults["backbone"] == "resnet18" and defaults["weights"] == "none"
    assert "pre_processor" not in defaults and "post_processor" not in defaults


def test_a_refused_model_says_what_to_provide_before_anything_runs(tiny_board, tmp_path):
    with pytest.raises(WeightsUnavailable, match="anomalib-draem cannot run here: it needs the DTD texture set"):
        bench("anomalib-draem", tiny_board, db=tmp_path / "r.duckdb", device="cpu")
    with pytest.raises(WeightsUnavailable, match="resnet18"):  # imagenet asked for, not in the cache
        stfpm = get_method("anomalib-stfpm")
        stfpm.check_params(stfpm.card.params.parse({"weights": "imagenet"}))


def test_a_parameter_anomalib_rejects_is_named_before_fitting():
    cls = get_method("anomalib-fastflow")
    params = cls.card.params.parse({"hidden_ratio": -1.0, "flow_steps": 4})
    with pytest.raises(ParameterError, match=r"anomalib-fastflow: anomalib rejects hidden_ratio=-1.0: .*negative"):
        cls.check_params(params)


def test_without_anomalib_the_method_answers_with_the_install_line(monkeypatch):
    monkeypatch.setattr(bridge, "anomalib_version", lambda: None)
    with pytest.raises(XRBenchError, match=r"anomalib-padim needs anomalib, which is not installed: pip install"):
        bridge.require_anomalib("anomalib-padim")
    monkeypatch.setattr(bridge, "anomalib_version", lambda: "1.2.0")
    with pytest.raises(XRBenchError, match=r"needs anomalib >=2\.0,<3, found 1\.2\.0"):
        bridge.require_anomalib("anomalib-padim")


def test_nothing_is_downloaded_while_a_model_is_built(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with bridge.offline("anomalib-x"):
        import os

        assert os.environ["HF_HUB_OFFLINE"] == "1"
        with pytest.raises(WeightsUnavailable, match="anomalib-x: anomalib tried to download https://example"):
            torch.hub.download_url_to_file("https://example.org/w.pth", "/tmp/never")
    assert "HF_HUB_OFFLINE" not in os.environ and torch.hub.download_url_to_file.__name__ != "refuse"


def test_the_code_identity_holds_anomalibs_version():
    import importlib.metadata

    origin = method_origin(get_method("anomalib-padim"))
    assert origin["libraries"] == {"anomalib": importlib.metadata.version("anomalib")}
    assert "methods/anomalib_bridge.py" in origin["files"]
    assert "libraries" not in method_origin(get_method("padim"))


@pytest.mark.bridge
def test_a_bridged_run_stores_raw_scores_and_the_trained_states_hash(tiny_board, tmp_path):
    from conftest import check_clean_auroc

    db = tmp_path / "r.duckdb"
    smoke = get_method("anomalib-padim").card.smoke_params
    first = bench("anomalib-padim", tiny_board, db=db, device="cpu", params=smoke)
    check_clean_auroc(db, first.run_id)
    from harness.results.store import ResultStore

    with ResultStore(db) as store:
        run = store.query("SELECT weights_id, weights_sha256, diagnostics FROM runs")
    assert run["weights_id"][0] == "anomalib-padim:none+trained" and len(run["weights_sha256"][0]) == 64
    from harness.boards.files import load_board

    assert f'"input_size": {load_board(tiny_board).resolution}' in run["diagnostics"][0]
