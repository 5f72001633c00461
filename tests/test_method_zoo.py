"""Every shipped method runs end to end on the reduced board; shared pieces behave."""

import logging

import numpy as np
import pytest
import torch
from conftest import check_clean_auroc
from sklearn.covariance import LedoitWolf
from sklearn.svm import OneClassSVM

from harness.api.protocol import FitContext
from harness.api.registry import discover, get_method
from harness.conformance.checks import check_method, parametrize_with_checks, skipped_because
from harness.data.loading import load_board_data
from harness.run.batches import split_batches
from harness.run.runner import bench
from harness.run.spec import RunOptions, RunSpec

SHIPPED = sorted(
    n for n, cls in discover().items() if cls.__module__.startswith("methods.") and not n.startswith("anomalib-")
)  # the bridged anomalib models are checked in test_anomalib_bridge.py, under the `bridge` marker


@pytest.mark.slow
@parametrize_with_checks([get_method(name) for name in SHIPPED])
def test_every_shipped_method_keeps_the_contract(method, check):
    check(method)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHIPPED if not skipped_because(get_method(n), "scores")])
def test_check_reports_shapes_as_the_contract_states_them(name):
    cls = get_method(name)
    reports = check_method(cls)
    assert [r.task for r in reports] == list(cls.card.tasks)
    for report in reports:
        if report.task == "anomaly":  # tiny board: 20 validation and 32 test images; maps (B, h, w)
            assert report.scores_shape == (52,)
            if cls.card.produces_maps:  # the board's 64 px, or a method's own internal size (smoke: 32 px)
                assert len(report.maps_shape) == 3 and report.maps_shape[1] == report.maps_shape[2] <= 64
        trained = "+trained" in report.weights.id or cls.card.learning == "supervised"
        if cls.card.defaults.get("pretrain", "none") != "none" or trained:
            assert report.weights.sha256 and len(report.weights.sha256) == 64


def test_multilabel_methods_run_end_to_end(tiny_multilabel_board, tmp_path):
    for name in (n for n in SHIPPED if "multilabel" in get_method(n).card.tasks):
        result = bench(
            name,
            tiny_multilabel_board,
            params=get_method(name).card.smoke_params,
            db=tmp_path / "r.duckdb",
            device="cpu",
            corruptions=False,
        )
        check_clean_auroc(tmp_path / "r.duckdb", result.run_id)


def test_variants_share_one_implementation():
    knn, simclr = get_method("knn"), get_method("simclr-knn")
    assert issubclass(simclr, knn) and simclr.fit is knn.fit and simclr.make_scorer is knn.make_scorer
    assert simclr.card.defaults["pretrain"] == "simclr" and knn.card.defaults["pretrain"] == "none"
    assert get_method("cutpaste").card.defaults["pretrain"] == "cutpaste"


def test_gaussian_scorer_matches_scikit_learn():
    rng = np.random.default_rng(0)
    from harness.components.scorers import GaussianScorer

    normal, queries = rng.normal(size=(50, 80)), rng.normal(size=(7, 80)) * 2
    expected = np.sqrt(LedoitWolf().fit(normal).mahalanobis(queries))
    np.testing.assert_allclose(GaussianScorer().fit(normal).score(queries), expected, rtol=1e-10)


def test_ocsvm_scorer_is_minus_the_decision_function():
    rng = np.random.default_rng(1)
    from sklearn.preprocessing import StandardScaler

    from harness.components.scorers import OneClassSVMScorer

    normal, queries = rng.normal(size=(60, 5)), rng.normal(size=(9, 5)) * 3
    scaler = StandardScaler().fit(normal)
    svm = OneClassSVM(nu=0.2).fit(scaler.transform(normal))
    got = OneClassSVMScorer(nu=0.2).fit(normal).score(queries)
    np.testing.assert_allclose(got, -svm.decision_function(scaler.transform(queries)))
    assert got[np.argmax(np.abs(queries).sum(1))] > np.median(got)


def test_knn_scorer_matches_brute_force():
    rng = np.random.default_rng(2)
    from harness.components.scorers import KNNScorer

    normal, queries = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    d = np.sqrt(((queries[:, None] - normal[None]) ** 2).sum(-1))
    np.testing.assert_allclose(KNNScorer(k=3).fit(normal).score(queries), np.sort(d, 1)[:, :3].mean(1), rtol=1e-4)


def test_padim_gaussians_equal_numpy_mean_and_covariance(tiny_board, tmp_path):
    spec = RunSpec.build("padim", tiny_board, params={"channels": "20"}, options=RunOptions("cpu"))
    board, method, device, data = spec.board, spec.create_method(), spec.device, load_board_data(spec.board)
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


def test_check_method_catches_an_unseeded_method():
    from harness.api.protocol import Method, MethodCard, Prediction
    from harness.conformance.checks import MethodCheckError

    class Unseeded(Method):
        card = MethodCard("test-unseeded", "test", "-", "-", "-")

        def fit(self, train, val, ctx):
            self.offset = float(np.random.default_rng().normal())  # not drawn from ctx.seed

        def predict(self, batch):
            return Prediction(scores=batch.mean(dim=(1, 2, 3)) + self.offset)

    with pytest.raises(MethodCheckError, match="two fits with seed 0 on the CPU gave different scores"):
        check_method(Unseeded)


def test_check_method_catches_missing_maps_and_weights_without_a_hash():
    from harness.api.protocol import Method, MethodCard, Prediction, WeightsInfo
    from harness.conformance.checks import MethodCheckError

    class NoHash(Method):
        card = MethodCard("test-no-hash", "test", "-", "-", "-")

        def fit(self, train, val, ctx):
            pass

        def predict(self, batch):
            return Prediction(scores=batch.mean(dim=(1, 2, 3)))

        def weights(self):
            return WeightsInfo(id="resnet18:my-file.pth")

    with pytest.raises(MethodCheckError, match="reported without their SHA-256"):
        check_method(NoHash)

    class BadCard(NoHash):
        card = MethodCard("Bad Name", "test", "-", "-", "-", tasks=("segmentation",), exceptions={"speed": "slow"})

    with pytest.raises(MethodCheckError, match=r"name 'Bad Name'.*tasks.*exceptions name no check: speed"):
        check_method(BadCard)


def test_check_method_reports_wrong_scores_as_a_check_failure():
    from harness.api.protocol import Method, MethodCard, Prediction
    from harness.conformance.checks import MethodCheckError

    class TwoScores(Method):
        card = MethodCard("test-two-scores", "test", "-", "-", "-")

        def fit(self, train, val, ctx):
            pass

        def predict(self, batch):
            return Prediction(scores=batch.mean(dim=(2, 3)).repeat(1, 2))  # (B, 2), not (B,)

    with pytest.raises(MethodCheckError, match=r"check 'scores'.*shape \(16, 2\).*expected \(16,\)"):
        check_method(TwoScores)


def test_a_card_excuses_a_check_with_its_reason():
    from harness.conformance.checks import run_check

    clip = get_method("clip-zero-shot")
    assert "real CLIP weights" in skipped_because(clip, "determinism")
    assert skipped_because(clip, "card") is None
    run_check(clip, "scores")  # excused: nothing is fitted, nothing is downloaded
