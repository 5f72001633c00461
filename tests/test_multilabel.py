"""Multi-label boards: metrics against scikit-learn, temperature scaling, patient splits, and
end-to-end runs of the random baseline and the supervised classifier."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import publish
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register
from harness.boards.files import load_board
from harness.boards.splits import patient_split, target_matrix
from harness.core.errors import MethodOutputError, XRBenchError
from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.scoring.multilabel import compare_multilabel, fit_calibrators, multilabel_metrics

NAMES = ("A", "B", "C")
FAST_SUPERVISED = {"epochs": "1", "augment": "0"}


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 3)) < [0.2, 0.3, 0.4]).astype(np.int64)
    logits = targets * [1.0, 2.0, 0.5] + rng.normal(size=(n, 3))
    groups = np.arange(n) // 2  # two images per patient
    return targets, logits, groups


def _by_slice(rows):
    return {(v.slice, v.metric): (v, flag) for v, flag in rows}


def test_macro_and_per_finding_values_equal_scikit_learn():
    targets, logits, groups = _data()
    rows = _by_slice(
        multilabel_metrics(targets, logits, groups, NAMES, 200, 0, 5, metrics=("auroc", "auprc"), per_finding=True)
    )
    macro, flag = rows[("all", "auroc")]
    assert flag is None
    assert macro.value == pytest.approx(roc_auc_score(targets, logits, average="macro"))
    assert macro.ci_low < macro.value < macro.ci_high
    assert rows[("all", "auprc")][0].value == pytest.approx(average_precision_score(targets, logits, average="macro"))
    for k, name in enumerate(NAMES):
        value = rows[(f"finding={name}", "auroc")][0]
        assert value.value == pytest.approx(roc_auc_score(targets[:, k], logits[:, k]))
        assert value.n_pos == targets[:, k].sum()
        assert value.ci_low < value.value < value.ci_high


def test_auprc_intervals_equal_the_copy_loop_skipping_a_resample_for_every_finding():
    """A resample in which one finding loses a class is skipped for all findings; the counted
    per-finding values are scikit-learn's on the copied images, bit for bit."""
    from harness.scoring.resampling import patient_resamples

    targets, logits, groups = _data(n=60, seed=2)
    logits = np.round(logits, 1)
    targets[:, 0] = 0
    targets[:6, 0] = 1  # three patients: some resamples draw none of them
    loop = np.array([
        [average_precision_score(targets[idx, k], logits[idx, k]) for k in range(3)]
        for idx in patient_resamples(groups, 150, seed=4)
        if (targets[idx].min(axis=0) != targets[idx].max(axis=0)).all()
    ])  # fmt: skip
    rows = multilabel_metrics(targets, logits, groups, NAMES, 150, 4, 5, metrics=("auprc",), per_finding=True)
    rows = _by_slice(rows)
    assert 100 < len(loop) < 150  # some resamples lost a class of the rare finding
    macro = rows[("all", "auprc")][0]
    assert (macro.ci_low, macro.ci_high) == tuple(np.quantile(loop.mean(axis=1), [0.025, 0.975]))
    for k, name in enumerate(NAMES):
        value = rows[(f"finding={name}", "auprc")][0]
        assert (value.ci_low, value.ci_high) == tuple(np.quantile(loop[:, k], [0.025, 0.975]))


def test_the_decision_metrics_and_sensitivity_equal_scikit_learn_on_every_copied_resample():
    """F1 at 0.5 and at the validation thresholds, precision, recall and sensitivity at 95%
    specificity: point values and every resample's value equal scikit-learn on the copies."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_curve

    from harness.scoring.multilabel import DETAILED_METRICS, validation_thresholds
    from harness.scoring.resampling import patient_resamples

    targets, logits, groups = _data(n=90, seed=5)
    logits = np.round(logits, 1)  # ties
    thresholds = validation_thresholds(targets, logits + 0.3)
    assert (thresholds != 0).all()

    def sens(y, s):
        fpr, tpr, _ = roc_curve(y, s)
        return tpr[fpr <= 0.05 + 1e-12].max()

    reference = {
        "f1@0.5": lambda y, s, k: f1_score(y, s >= 0, zero_division=0),
        "f1": lambda y, s, k: f1_score(y, s >= thresholds[k], zero_division=0),
        "precision@val": lambda y, s, k: precision_score(y, s >= thresholds[k], zero_division=0),
        "recall@val": lambda y, s, k: recall_score(y, s >= thresholds[k], zero_division=0),
        "sens@95spec": lambda y, s, k: sens(y, s),
    }
    kept = [
        idx
        for idx in patient_resamples(groups, 120, seed=3)
        if (targets[idx].min(axis=0) != targets[idx].max(axis=0)).all()
    ]
    rows = _by_slice(
        multilabel_metrics(
            targets, logits, groups, NAMES, 120, 3, 5, metrics=DETAILED_METRICS, per_finding=True, thresholds=thresholds
        )
    )
    for metric, fn in reference.items():
        loop = np.array([[fn(targets[idx, k], logits[idx, k], k) for k in range(3)] for idx in kept])
        for k, name in enumerate(NAMES):
            value = rows[(f"finding={name}", metric)][0]
            assert value.value == fn(targets[:, k], logits[:, k], k), (metric, name)
            assert (value.ci_low, value.ci_high) == tuple(np.quantile(loop[:, k], [0.025, 0.975])), (metric, name)
        macro = rows[("all", metric)][0]
        assert macro.value == pytest.approx(np.mean([fn(targets[:, k], logits[:, k], k) for k in range(3)]))
        assert (macro.ci_low, macro.ci_high) == tuple(np.quantile(loop.mean(axis=1), [0.025, 0.975]))


def test_micro_auroc_aurc_and_thresholds_of_a_clean_evaluation(tiny_multilabel_board):
    from sklearn.metrics import roc_auc_score

    from harness.scoring.multilabel import MultilabelTask
    from harness.scoring.selective import risk_coverage

    board = load_board(tiny_multilabel_board)
    targets, logits, groups = _data(n=120, seed=6)
    k = len(board.targets)
    targets, logits = np.tile(targets, (1, 2))[:, :k], np.tile(logits, (1, 2))[:, :k]
    findings = ["|".join(n for n, t in zip(board.targets, row, strict=True) if t) or "No Finding" for row in targets]
    meta = pd.DataFrame({"patient_id": groups, "image_id": [f"i{i}" for i in range(120)], "findings": findings})
    task = MultilabelTask()
    fitted = task.fit_on_validation(board, targets, logits)
    board = dataclasses.replace(board, slices=("num_findings",), min_slice_class=1)
    out = task.evaluate(board, meta, targets, logits, fitted, "clean", 0, detailed=True)
    frame = pd.DataFrame(out.metrics).set_index(["slice", "metric"])
    micro = frame.loc[("all", "micro_auroc")]
    assert micro["value"] == pytest.approx(roc_auc_score(targets.ravel(), logits.ravel()))
    assert micro["ci_low"] < micro["value"] < micro["ci_high"]
    probs = 1 / (1 + np.exp(-logits.ravel()))
    assert frame.loc[("all", "aurc"), "value"] == pytest.approx(risk_coverage(targets.ravel(), probs)[2])
    for j, name in enumerate(board.targets):
        y, s = targets[:, j], logits[:, j]
        f1s = {t: 2 * ((s >= t) & (y == 1)).sum() / ((s >= t).sum() + y.sum()) for t in np.unique(s)}
        best = min(t for t, f in f1s.items() if f == max(f1s.values()))  # the lowest threshold of the best F1
        assert frame.loc[(f"finding={name}", "threshold"), "value"] == fitted.thresholds[j] == best
    assert len(out.risk_coverage) > 10
    complexity = meta["findings"].str.count(r"\|").add(1).where(meta["findings"] != "No Finding", 0).clip(upper=2)
    for value, label in ((1, "1"), (2, "2+")):
        row = frame.loc[(f"num_findings={label}", "auroc")]
        assert row["n"] == (complexity == value).sum()


def test_a_rare_finding_is_flagged_and_left_out_of_the_macro_mean():
    targets, logits, groups = _data()
    targets[:, 1] = 0
    targets[:3, 1] = 1  # three positives, below the minimum of five
    rows = _by_slice(multilabel_metrics(targets, logits, groups, NAMES, 100, 0, 5, per_finding=True))
    macro, flag = rows[("all", "auroc")]
    expected = np.mean([roc_auc_score(targets[:, k], logits[:, k]) for k in (0, 2)])
    assert macro.value == pytest.approx(expected)
    assert "B" in flag
    rare, rare_flag = rows[("finding=B", "auroc")]
    assert np.isnan(rare.value) and "3 positive" in rare_flag


def test_no_usable_finding_gives_a_flag_not_a_crash():
    targets, logits, groups = _data(n=20)
    rows = multilabel_metrics(targets, logits, groups, NAMES, 50, 0, 50)
    (value, flag), *_ = rows
    assert np.isnan(value.value) and "too few cases" in flag


def test_temperature_scaling_recovers_an_overconfident_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(scale=2.0, size=(4000, 3))
    targets = (rng.random(true_logits.shape) < 1 / (1 + np.exp(-true_logits))).astype(np.int64)
    calibrators, temperature = fit_calibrators(true_logits * 3.0, targets)
    assert temperature == pytest.approx(3.0, rel=0.1)
    p = calibrators["temperature"](true_logits * 3.0)
    assert np.allclose(p, 1 / (1 + np.exp(-true_logits * 3.0 / temperature)))


def test_patient_split_is_disjoint_seeded_and_near_its_fractions():
    rng = np.random.default_rng(0)
    entries = pd.DataFrame({"image_id": [f"{i:05d}" for i in range(3000)], "patient_id": rng.integers(0, 900, 3000)})
    entries["patient_id"] = entries["patient_id"].astype(str)
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    frame = patient_split(entries, fractions, seed=4)
    assert len(frame) == 3000
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    for split, fraction in fractions.items():
        assert abs((frame["split"] == split).mean() - fraction) < 0.01
    assert frame.equals(patient_split(entries, fractions, seed=4))
    assert not frame["split"].equals(patient_split(entries, fractions, seed=5)["split"])
    with pytest.raises(XRBenchError, match="summing to 1"):
        patient_split(entries, {"train": 0.7, "val": 0.1, "test": 0.1}, seed=0)


def test_target_matrix_reads_pipe_separated_findings():
    findings = pd.Series(["No Finding", "A|C", "C", None])
    assert target_matrix(findings, NAMES).tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_boards_must_list_targets_for_multilabel_only(tiny_multilabel_board, tmp_path):
    assert load_board(tiny_multilabel_board).targets == ("Cardiomegaly", "Effusion", "Nodule")
    text = tiny_multilabel_board.read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace("targets = [", "old_targets = [").replace("old_targets", "# "))
    with pytest.raises(XRBenchError, match="lists its `targets`"):
        load_board(broken)


def test_random_baseline_end_to_end(tiny_multilabel_board, tmp_path):
    db = tmp_path / "r.duckdb"
    result = bench("random", tiny_multilabel_board, db=db, device="cpu")
    with ResultStore(db) as store:
        run = store.run(result.run_id)
        predictions = store.query("SELECT * FROM predictions WHERE run_id = ?", [result.run_id])
        robustness = store.query("SELECT * FROM robustness WHERE run_id = ?", [result.run_id])
    assert run["status"] == "ok" and run["temperature"] > 0 and pd.isna(run["threshold"])
    assert predictions["score"].isna().all()
    assert predictions["scores"].map(len).eq(3).all() and predictions["target_labels"].map(len).eq(3).all()
    clean = result.metrics[(result.metrics["condition"] == "clean")]
    slices = set(clean["slice"])
    assert {"all", "finding=Cardiomegaly", "finding=Effusion", "finding=Nodule", "sex=F", "sex=M"} <= slices
    assert set(result.metrics["condition"]) == {"clean", "gaussian_noise", "jpeg"}
    assert {"ece_none", "ece_temperature", "brier_temperature"} <= set(clean["metric"])
    assert robustness["clean_auroc"].iloc[0] == pytest.approx(result.robustness["clean_auroc"])


@register
class ReturnsOneScore(Method):
    card = MethodCard("test-one-score", "test", "one score per image on a multi-label board", "-", "-", ("multilabel",))

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def test_a_wrong_score_shape_names_the_expected_one(tiny_multilabel_board, tmp_path):
    with pytest.raises(MethodOutputError, match=r"expected \(16, 3\)"):
        bench("test-one-score", tiny_multilabel_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)


def test_anomaly_methods_are_refused_on_multilabel_boards(tiny_multilabel_board, tmp_path):
    with pytest.raises(XRBenchError, match="supports"):
        bench("intensity", tiny_multilabel_board, db=tmp_path / "r.duckdb", device="cpu")


def test_supervised_training_is_deterministic_and_compares(tiny_multilabel_board, tmp_path):
    db = tmp_path / "r.duckdb"
    runs = [
        bench("supervised", tiny_multilabel_board, params=FAST_SUPERVISED, db=db, device="cpu", corruptions=False)
        for _ in range(2)
    ]
    random = bench("random", tiny_multilabel_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        a, b = (store.run(r.run_id) for r in runs)
        assert a["predictions_sha256"] == b["predictions_sha256"]
        assert a["weights_sha256"] == b["weights_sha256"] and a["weights_id"] == "none+trained"
        from harness.results.compare import compare_runs

        same = compare_runs(store, runs[0].run_id, runs[1].run_id, n_resamples=100)
        other = compare_runs(store, runs[0].run_id, random.run_id, n_resamples=100)
    assert same.difference == 0 and np.isnan(same.delong_p)
    assert other.value_b == pytest.approx(random.robustness["clean_auroc"])
    publish(db, tmp_path / "site")
    page = next((tmp_path / "site" / "boards").glob("tiny-cls-*.html")).read_text()
    assert "Macro AUROC" in page and "supervised" in page and "paired patient-level bootstrap" in page


def test_compare_multilabel_separates_a_good_from_a_random_model():
    targets, logits, groups = _data(n=400)
    noise = np.random.default_rng(3).normal(size=logits.shape)
    result = compare_multilabel(targets, logits, noise, groups, n_resamples=300)
    assert result.difference > 0.1 and result.bootstrap_p < 0.01 and result.ci_low > 0
    assert result.value_a == pytest.approx(roc_auc_score(targets, logits, average="macro"))


@pytest.mark.parametrize("exact_float32_below", [2**23, 0])  # the float32 path, and the float64 one
def test_counted_bootstrap_aurocs_equal_ranking_the_resampled_copies(exact_float32_below, monkeypatch):
    import harness.scoring.counted
    from harness.scoring.metrics import auroc, bootstrap_aurocs
    from harness.scoring.resampling import patient_resamples

    monkeypatch.setattr(harness.scoring.counted, "FLOAT32_EXACT_LIMIT", exact_float32_below)
    targets, logits, groups = _data(n=120)
    logits = np.round(logits, 1)  # ties within and across classes
    fast = bootstrap_aurocs(targets, logits, groups, 40, seed=7)
    slow = [
        [auroc(targets[idx, k], logits[idx, k]) for k in range(3)]
        for idx in patient_resamples(groups, 40, seed=7)
        if (targets[idx].min(axis=0) != targets[idx].max(axis=0)).all()
    ]
    assert fast.shape == (len(slow), 3) and len(slow) > 30
    np.testing.assert_array_equal(fast, slow)  # bit for bit: both count the same integers exactly


def test_supervised_training_survives_a_last_batch_of_one_image(tiny_multilabel_board, tmp_path):
    train_size = 48  # tiny-cls: batch size 47 leaves one image for the last training batch
    board = tmp_path / "tiny-cls.toml"
    text = tiny_multilabel_board.read_text().replace("batch_size = 16", f"batch_size = {train_size - 1}")
    board.write_text(text.replace('split_manifest = "', f'split_manifest = "{tiny_multilabel_board.parent}/'))
    from harness.data.loading import load_board_data

    assert len(load_board_data(load_board(board)).splits["train"]) == train_size
    result = bench("supervised", board, params=FAST_SUPERVISED, db=tmp_path / "r.duckdb", corruptions=False)
    assert result.weights_id == "none+trained"


def test_uncertainty_rows_against_an_independent_computation():
    """The AUROC of the variance for the errors and the AURC of deferring the most uncertain
    first, against scikit-learn and a loop over coverages."""
    from sklearn.metrics import roc_auc_score

    from harness.scoring.evaluation import Fitted
    from harness.scoring.uncertainty import uncertainty_rows

    targets, logits, _ = _data(n=80, seed=7)
    gen = np.random.default_rng(0)
    thresholds = np.array([0.2, -0.1, 0.4])
    errors = (logits >= thresholds) != (targets == 1)
    variances = np.where(errors, 1.0, 0.3) * gen.random(logits.shape)  # errors tend to be uncertain
    fitted = Fitted({}, thresholds=thresholds)
    out = uncertainty_rows(targets, logits, variances, fitted, "clean", 0)
    values = {row["metric"]: row["value"] for row in out.metrics}
    assert values["uncertainty_auroc"] == pytest.approx(roc_auc_score(errors.ravel(), variances.ravel()))
    assert values["uncertainty_auroc"] > 0.6
    order = np.argsort(variances.ravel(), kind="stable")
    by_hand = np.mean([errors.ravel()[order[:k]].mean() for k in range(1, errors.size + 1)])
    assert values["aurc_uncertainty"] == pytest.approx(by_hand)
    assert {row["abstain_by"] for row in out.risk_coverage} == {"uncertainty"}
