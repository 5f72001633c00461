import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from harness.scoring.anomaly import AnomalyTask
from harness.scoring.metrics import auroc
from harness.scoring.significance import delong_covariance, delong_test, tied_with_leader


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 150)
    groups = np.arange(300)
    weak = rng.normal(size=300) + 0.3 * labels
    strong = rng.normal(size=300) + 2.0 * labels
    return labels, groups, weak, strong


def test_identical_scores_are_not_different(data):
    labels, groups, weak, _ = data
    result = AnomalyTask().compare(labels, weak, weak, groups, "auroc", 300, 0)
    assert result.delong_p == 1.0 and result.bootstrap_p == 1.0 and result.difference == 0.0


def test_clearly_different_scores_are(data):
    labels, groups, weak, strong = data
    result = AnomalyTask().compare(labels, strong, weak, groups, "auroc", 500, 0)
    assert result.delong_p < 1e-6 and result.bootstrap_p < 0.01
    expected = roc_auc_score(labels, strong) - roc_auc_score(labels, weak)
    assert result.ci_low > 0 and result.difference == pytest.approx(expected, abs=1e-12)


def test_delong_variance_agrees_with_the_bootstrap_variance(data):
    labels, _, weak, _ = data
    aucs, cov = delong_covariance(labels, weak)
    rng = np.random.default_rng(1)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    boot = []
    for _ in range(2000):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        boot.append(auroc(labels[idx], weak[idx]))
    assert aucs[0] == pytest.approx(auroc(labels, weak))
    assert cov[0, 0] == pytest.approx(np.var(boot), rel=0.2)


def test_p_value_is_roughly_uniform_under_the_null():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 60)
    ps = [delong_test(labels, rng.normal(size=120) + labels, rng.normal(size=120) + labels) for _ in range(200)]
    assert 0.02 < np.mean(np.array(ps) < 0.05) < 0.1


def test_tie_groups(data):
    labels, _, weak, strong = data
    rng = np.random.default_rng(5)
    nearly = strong + 0.05 * rng.normal(size=300)
    p = tied_with_leader(labels, {"strong": strong, "nearly": nearly, "weak": weak})
    leader = max(("strong", "nearly"), key=lambda k: auroc(labels, {"strong": strong, "nearly": nearly}[k]))
    assert p[leader] == 1.0 and p["weak"] < 0.05 and min(p["strong"], p["nearly"]) >= 0.05


def test_compare_runs_refuses_failed_runs_and_runs_on_other_boards(tiny_board, tiny_multilabel_board, tmp_path):
    from harness.core.errors import XRBenchError
    from harness.results.compare import compare_runs
    from harness.results.store import ResultStore
    from harness.run.runner import bench

    db = tmp_path / "r.duckdb"
    anomaly = bench("intensity", tiny_board, db=db, device="cpu", corruptions=False).run_id
    multilabel = bench("random", tiny_multilabel_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        failed = "a-failed-run"
        store.start_run({"run_id": failed, "board": "tiny-ad", "method": "intensity", "task": "anomaly"})
        store.fail_run(failed, "RuntimeError: it crashed")
        with pytest.raises(XRBenchError, match="runs differ in board"):
            compare_runs(store, anomaly, multilabel)
        with pytest.raises(XRBenchError, match=f"run {failed} has status failed; only completed runs compare"):
            compare_runs(store, anomaly, failed)
        store.con.execute("UPDATE runs SET split_sha256 = 'another' WHERE run_id = ?", [multilabel])
        store.con.execute("UPDATE runs SET board = 'tiny-ad', task = 'anomaly' WHERE run_id = ?", [multilabel])
        with pytest.raises(XRBenchError, match="runs differ in split_sha256"):
            compare_runs(store, anomaly, multilabel)
