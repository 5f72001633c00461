"""Every shipped method runs end to end on the reduced board; shared pieces behave."""

import json
import logging

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf
from sklearn.svm import OneClassSVM

from harness.protocol import FitContext
from harness.registry import discover, get_method
from harness.runner import prepare, run_bench, split_batches
from harness.store import ResultStore

FAST = {"pretrain_epochs": "1", "coreset_ratio": "0.05", "epochs": "1", "augment": "0"}
NEEDS_REAL_WEIGHTS = {"clip-zero-shot"}


def _fast_params(name: str) -> dict[str, str]:
    defaults = get_method(name).card.defaults
    params = {k: v for k, v in FAST.items() if k in defaults}
    if defaults.get("weights") not in (None, "none"):
        params["weights"] = "none"  # pretrained weights are not reachable in tests
    return params


SHIPPED = set(discover()) - NEEDS_REAL_WEIGHTS - {"intensity", "random"} - {n for n in discover() if "test" in n}
ZOO = sorted(n for n in SHIPPED if "anomaly" in get_method(n).card.tasks)
MULTILABEL_ZOO = sorted(n for n in SHIPPED if "multilabel" in get_method(n).card.tasks)


@pytest.mark.parametrize("name", MULTILABEL_ZOO)
def test_multilabel_method_runs_on_the_reduced_board(tiny_multilabel_board, tmp_path, name):
    result = run_bench(
        name,
        tiny_multilabel_board,
        params=_fast_params(name),
        db=tmp_path / "r.duckdb",
        device="cpu",
        corruptions=False,
    )
    m = result.metrics
    per_finding = m[(m["metric"] == "auroc") & m["slice"].str.startswith("finding=") & m["value"].notna()]
    assert len(per_finding) >= 2 and per_finding["value"].between(0, 1).all()
    assert result.weights_id == "none+trained"


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_method_runs_on_the_reduced_board(tiny_board, tmp_path, name):
    db = tmp_path / "r.duckdb"
    result = run_bench(name, tiny_board, params=_fast_params(name), db=db, device="cpu", corruptions=False)
    m = result.metrics
    auroc = m[(m["metric"] == "auroc") & (m["slice"] == "all") & (m["condition"] == "clean")]["value"].item()
    assert 0.0 <= auroc <= 1.0
    with ResultStore(db) as store:
        run = store.query("SELECT status, params, weights_id, weights_sha256 FROM runs").iloc[0]
    assert run["status"] == "ok"
    if json.loads(run["params"]).get("pretrain", "none") != "none":
        assert run["weights_sha256"] and len(run["weights_sha256"]) == 64


def test_variants_share_one_implementation():
    knn, simclr = get_method("knn"), get_method("simclr-knn")
    assert issubclass(simclr, knn) and simclr.fit is knn.fit and simclr.make_scorer is knn.make_scorer
    assert simclr.card.defaults["pretrain"] == "simclr" and knn.card.defaults["pretrain"] == "none"
    assert get_method("cutpaste").card.defaults["pretrain"] == "cutpaste"


def test_gaussian_scorer_matches_scikit_learn():
    rng = np.random.default_rng(0)
    from harness.scorers import GaussianScorer

    normal, queries = rng.normal(size=(50, 80)), rng.normal(size=(7, 80)) * 2
    expected = np.sqrt(LedoitWolf().fit(normal).mahalanobis(queries))
    np.testing.assert_allclose(GaussianScorer().fit(normal).score(queries), expected, rtol=1e-10)


def test_ocsvm_scorer_is_minus_the_decision_function():
    rng = np.random.default_rng(1)
    from sklearn.preprocessing import StandardScaler

    from harness.scorers import OneClassSVMScorer

    normal, queries = rng.normal(size=(60, 5)), rng.normal(size=(9, 5)) * 3
    scaler = StandardScaler().fit(normal)
    svm = OneClassSVM(nu=0.2).fit(scaler.transform(normal))
    got = OneClassSVMScorer(nu=0.2).fit(normal).score(queries)
    np.testing.assert_allclose(got, -svm.decision_function(scaler.transform(queries)))
    assert got[np.argmax(np.abs(queries).sum(1))] > np.median(got)


def test_knn_scorer_matches_brute_force():
    rng = np.random.default_rng(2)
    from harness.scorers import KNNScorer

    normal, queries = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    d = np.sqrt(((queries[:, None] - normal[None]) ** 2).sum(-1))
    np.testing.assert_allclose(KNNScorer(k=3).fit(normal).score(queries), np.sort(d, 1)[:, :3].mean(1), rtol=1e-4)


def test_padim_gaussians_equal_numpy_mean_and_covariance(tiny_board, tmp_path):
    board, method, device, data = prepare("padim", tiny_board, {"channels": "20"}, "cpu")
    train = split_batches(data.splits["train"].images, data.splits["train"], board, device)
    ctx = FitContext(seed=0, device=device, cache_dir=tmp_path, log=logging.getLogger("test"), resolution=64)
    method.fit(train, train, ctx)
    features = torch.cat([method._patches(x) for x in train]).double().numpy()  # (N, P, d)
    position = features.shape[1] // 2
    cov = np.cov(features[:, position], rowvar=False) + 0.01 * np.eye(features.shape[2])
    np.testing.assert_allclose(method.mean[position], features[:, position].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(method.precision[position], np.linalg.inv(cov), rtol=1e-3, atol=1e-3)
    scores = method.predict(next(iter(train))).scores
    assert scores.shape == (board.batch_size,) and torch.isfinite(scores).all()
