"""Reference implementations for the statistics behind every stored number.

Each harness computation is checked against a slow, direct computation written here from the
definition (never the harness's own helpers), on cases built to expose a subtly wrong
formula: correlated and tied scores with unequal classes, probabilities on bin edges, tie
orders that change a curve. `make mutants` shows that these tests catch deliberate bugs.
"""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from reference import aurc as reference_aurc
from reference import pairwise_auroc, patient_loop_resamples, step_auprc
from scipy.stats import norm

from harness.boards.slices import slice_values
from harness.boards.spec import Board, DatasetSpec
from harness.scoring.anomaly import AnomalyTask, slice_masks
from harness.scoring.calibration import calibration_metrics, reliability_bins
from harness.scoring.metrics import (
    auroc,
    best_f1_threshold,
    binary_metric_fns,
    binary_metrics,
    bootstrap_aurocs,
    cluster_bootstrap,
    counted_samples,
    sensitivity_at_specificity,
)
from harness.scoring.resampling import Resamples
from harness.scoring.robustness import corruption_errors, robustness_summary
from harness.scoring.selective import risk_coverage
from harness.scoring.significance import bootstrap_difference, delong_covariance, delong_test, paired_bootstrap

# --- direct computations ------------------------------------------------------------------


def correlated_tied_scores(seed: int = 0, n_pos: int = 37, n_neg: int = 61):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    latent = rng.normal(size=len(y)) + 0.8 * y
    a = np.round(latent + 0.3 * rng.normal(size=len(y)), 1)  # ties within and across classes
    b = np.round(latent + 0.6 * rng.normal(size=len(y)), 1)  # correlated with a
    return y, a, b


# --- AUROC, DeLong ------------------------------------------------------------------------


def test_auroc_is_the_pairwise_probability_with_ties_as_halves():
    y, a, b = correlated_tied_scores()
    assert auroc(y, a) == pytest.approx(pairwise_auroc(y, a), abs=1e-12)
    assert auroc(y, b) == pytest.approx(pairwise_auroc(y, b), abs=1e-12)


def test_delong_covariance_equals_the_structural_components_computed_pair_by_pair():
    y, a, b = correlated_tied_scores()
    scores = np.vstack([a, b])
    m, n = int(y.sum()), int((y == 0).sum())

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.array([[np.mean([psi(x, z) for z in s[y == 0]]) for x in s[y == 1]] for s in scores])
    v01 = np.array([[np.mean([psi(x, z) for x in s[y == 1]]) for z in s[y == 0]] for s in scores])
    expected = np.cov(v10, ddof=1) / m + np.cov(v01, ddof=1) / n
    aucs, cov = delong_covariance(y, scores)
    np.testing.assert_allclose(aucs, [pairwise_auroc(y, a), pairwise_auroc(y, b)], atol=1e-12)
    np.testing.assert_allclose(cov, expected, atol=1e-12)
    assert abs(cov[0, 1]) > 1e-4  # correlated scores: the covariance term matters
    z = (aucs[0] - aucs[1]) / np.sqrt(expected[0, 0] + expected[1, 1] - 2 * expected[0, 1])
    assert delong_test(y, a, b) == pytest.approx(2 * norm.sf(abs(z)), abs=1e-12)


# --- the patient bootstrap ------------------------------------------------------------------


def test_bootstrap_interval_equals_a_hand_written_patient_loop_with_the_same_draws():
    y, scores, _ = correlated_tied_scores(1, 40, 50)
    groups = np.array([f"p{i // 3:03d}" for i in range(len(y))])  # three images per patient
    values = []
    for idx in patient_loop_resamples(groups, 300, seed=7):
        if y[idx].min() != y[idx].max():
            values.append(pairwise_auroc(y[idx], scores[idx]))
    expected = np.quantile(values, [0.025, 0.975])
    lo, hi = cluster_bootstrap({"auroc": auroc}, y, scores, groups, 300, 7)["auroc"]
    assert (lo, hi) == pytest.approx(tuple(expected), abs=1e-12)
    counted = bootstrap_aurocs(y[:, None], scores[:, None], groups, 300, 7)[:, 0]
    np.testing.assert_allclose(np.sort(counted), np.sort(values), atol=1e-12)


@pytest.mark.parametrize("rounding", [1, 3, None])  # heavy ties, few ties, no ties
def test_every_bootstrapped_metric_equals_the_copy_loop_bit_for_bit(rounding):
    """AUROC, AUPRC, sensitivity at 95% specificity, specificity at 95% sensitivity, F1 and
    F1-max count the resamples instead of copying them: each resample's value must be exactly
    what scikit-learn (or the rank AUROC) gives on the copied images."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_curve

    y, scores, _ = correlated_tied_scores(2, 45, 70)
    if rounding != 1:
        scores = np.random.default_rng(5).normal(size=len(y)) + y
        scores = np.round(scores, rounding) if rounding else scores
    groups = np.array([f"p{i // 4:03d}" for i in range(len(y))])  # four images per patient
    threshold = float(np.median(scores))
    fns = binary_metric_fns(threshold)
    loop: dict[str, list[float]] = {"auroc": [], "f1": [], "auprc": [], "sens@95spec": [], "spec@95sens": [],
                                    "f1max": []}  # fmt: skip
    for idx in patient_loop_resamples(groups, 200, seed=3):
        if y[idx].min() != y[idx].max():
            loop["auroc"].append(pairwise_auroc(y[idx], scores[idx]))
            loop["f1"].append(f1_score(y[idx], scores[idx] >= threshold))
            loop["auprc"].append(average_precision_score(y[idx], scores[idx]))
            fpr, tpr, _ = roc_curve(y[idx], scores[idx])
            loop["sens@95spec"].append(tpr[fpr <= 0.05 + 1e-12].max())
            loop["spec@95sens"].append(1.0 - fpr[tpr >= 0.95 - 1e-12].min())
            precision, recall, _ = precision_recall_curve(y[idx], scores[idx])
            loop["f1max"].append((2 * precision * recall / np.maximum(precision + recall, 1e-12)).max())
    samples = counted_samples(fns, y, scores, groups, 200, 3)
    for name in ("f1", "auprc", "sens@95spec", "spec@95sens", "f1max"):
        np.testing.assert_array_equal(samples[name], loop[name], err_msg=name)
    np.testing.assert_allclose(samples["auroc"], loop["auroc"], rtol=0, atol=1e-15)
    intervals = cluster_bootstrap({k: fns[k] for k in loop}, y, scores, groups, 200, 3)
    for name, values in loop.items():
        assert intervals[name] == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=1e-15), name


def test_counted_curves_cover_the_float64_path_chunks_and_single_image_patients(monkeypatch):
    """Above the float32 limit the counts are float64; curves built CURVE_CHUNK resamples at a
    time must not depend on the chunk size."""
    from sklearn.metrics import average_precision_score

    import harness.scoring.counted

    y, scores, _ = correlated_tied_scores(4, 30, 90)
    groups = np.arange(len(y))  # one image per patient
    resamples = Resamples.keeping_both_classes(y, groups, 50, 11)
    expected = [
        average_precision_score(y[idx], scores[idx])
        for idx in patient_loop_resamples(groups, 50, seed=11)
        if y[idx].min() != y[idx].max()
    ]
    for limit, chunk in ((0, 7), (2**23, 64)):
        monkeypatch.setattr(harness.scoring.counted, "FLOAT32_EXACT_LIMIT", limit)
        monkeypatch.setattr(harness.scoring.counted, "CURVE_CHUNK", chunk)
        got = harness.scoring.counted.average_precisions(y[:, None], scores[:, None], resamples)[:, 0]
        np.testing.assert_array_equal(got, expected)


def test_bootstrap_p_value_and_interval_of_hand_made_differences():
    d = np.r_[np.ones(99), -1.0]
    p, lo, hi = bootstrap_difference(d)
    assert p == pytest.approx(2 * 2 / 101, abs=1e-15)  # (1 non-positive + 1) / (100 + 1), two-sided
    d = np.arange(1.0, 101.0)  # 1..100: linear interpolation at 2.5% and 97.5%
    p, lo, hi = bootstrap_difference(d)
    assert p == pytest.approx(2 / 101, abs=1e-15)
    assert (lo, hi) == pytest.approx((1 + 0.025 * 99, 1 + 0.975 * 99), abs=1e-12)
    assert bootstrap_difference(np.r_[-2.0, 0.0, 1.0, 2.0, 3.0])[0] == 1.0  # 2 * min(3, 5) / 6 = 1


def test_paired_bootstrap_resamples_the_same_patients_for_both_methods():
    y, a, b = correlated_tied_scores(2)
    groups = np.arange(len(y)) // 2
    deltas = [
        pairwise_auroc(y[i], a[i]) - pairwise_auroc(y[i], b[i])
        for i in patient_loop_resamples(groups, 200, seed=3)
        if y[i].min() != y[i].max()
    ]
    p, lo, hi = paired_bootstrap(y, a, b, groups, 200, 3)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(deltas, [0.025, 0.975])), abs=1e-12)
    d = np.array(deltas)
    expected_p = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (len(d) + 1), (np.sum(d >= 0) + 1) / (len(d) + 1)))
    assert p == pytest.approx(expected_p, abs=1e-15)


# --- threshold metrics ---------------------------------------------------------------------


def test_sensitivity_at_95_specificity_and_f1_by_counting():
    y, s, _ = correlated_tied_scores(3, 30, 80)
    best = 0.0
    for t in [*np.unique(s), np.inf]:
        tn, fp = int(((s < t) & (y == 0)).sum()), int(((s >= t) & (y == 0)).sum())
        if Fraction(tn, tn + fp) >= Fraction(95, 100):
            best = max(best, ((s >= t) & (y == 1)).sum() / y.sum())
    assert sensitivity_at_specificity(y, s) == pytest.approx(best, abs=1e-15)
    threshold = best_f1_threshold(y, s)
    f1s = {}
    for t in np.unique(s):
        tp, fp = int(((s >= t) & (y == 1)).sum()), int(((s >= t) & (y == 0)).sum())
        f1s[t] = 2 * tp / (2 * tp + fp + (int(y.sum()) - tp))
    top = max(f1s.values())
    assert threshold == min(t for t, f in f1s.items() if f == top)  # the lowest threshold with the best F1
    assert binary_metric_fns(threshold)["f1"](y, s) == pytest.approx(top, abs=1e-15)


def test_auprc_is_the_step_sum_of_precision_over_recall_increments():
    y, s, _ = correlated_tied_scores(4)
    assert binary_metric_fns(0.5)["auprc"](y, s) == pytest.approx(step_auprc(y, s), abs=1e-12)


# --- calibration -----------------------------------------------------------------------------


def test_reliability_bins_ece_mce_brier_and_nll_on_hand_built_cases():
    edges = np.linspace(0.0, 1.0, 16)
    # On an edge (edges[6]) a probability belongs to the bin below it, as in scikit-learn's
    # calibration_curve; several probabilities are tied.
    probs = np.array([0.02, 0.02, 0.02, edges[6], edges[6], 0.41, 0.9, 0.9, 0.9, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 0])
    bins = {b.index: b for b in reliability_bins(labels, probs)}
    assert sorted(bins) == [0, 5, 6, 13]
    assert (bins[0].count, bins[5].count, bins[6].count, bins[13].count) == (3, 2, 1, 4)
    gaps = {0: abs(1 / 3 - 0.02), 5: abs(0.5 - edges[6]), 6: abs(1 - 0.41), 13: abs(0.75 - 0.9)}
    counts = {0: 3, 5: 2, 6: 1, 13: 4}
    metrics = calibration_metrics(labels, probs)
    assert metrics["ece"] == pytest.approx(sum(counts[b] / 10 * gaps[b] for b in gaps), abs=1e-12)
    assert metrics["mce"] == pytest.approx(max(gaps.values()), abs=1e-12)
    assert metrics["brier"] == pytest.approx(np.mean((probs - labels) ** 2), abs=1e-12)
    nll = -np.mean([np.log(p) if y else np.log(1 - p) for p, y in zip(probs, labels, strict=True)])
    assert metrics["nll"] == pytest.approx(nll, abs=1e-12)


def test_adaptive_ece_uses_equal_mass_bins():
    rng = np.random.default_rng(5)
    probs = np.sort(rng.uniform(size=150))
    labels = (rng.uniform(size=150) < probs**2).astype(int)
    # 150 distinct probabilities in 15 equal-mass bins: ten consecutive ones per bin.
    expected = sum(10 / 150 * abs(labels[k : k + 10].mean() - probs[k : k + 10].mean()) for k in range(0, 150, 10))
    assert calibration_metrics(labels, probs)["adaptive_ece"] == pytest.approx(expected, abs=1e-12)


def test_nll_clips_certain_mistakes_at_1e_minus_7():
    metrics = calibration_metrics(np.array([1, 0]), np.array([0.0, 0.0]))  # p = 0 becomes 1e-7
    assert metrics["nll"] == pytest.approx(-(np.log(1e-7) + np.log(1 - 1e-7)) / 2, rel=1e-12)


# --- selective prediction ----------------------------------------------------------------------


def test_aurc_is_its_exact_fraction_with_ties_kept_in_image_order():
    labels = np.array([1, 0, 0, 1, 1])
    probs = np.array([0.9, 0.1, 0.9, 0.6, 0.4])
    # confidence 0.9, 0.9, 0.9, 0.6, 0.6; errors 0, 0, 1, 0, 1; risks 0, 0, 1/3, 1/4, 2/5
    coverage, risk, aurc = risk_coverage(labels, probs)
    assert aurc == pytest.approx(float(Fraction(59, 300)), abs=1e-15) == reference_aurc(labels, probs)
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 1 / 4, 2 / 5], atol=1e-15)
    np.testing.assert_allclose(coverage, [0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-15)


# --- robustness and corruption errors ----------------------------------------------------------


AUROCS = {("clean", 0): 0.9, ("noise", 1): 0.8, ("noise", 2): 0.6, ("blur", 1): 0.85, ("blur", 2): 0.7}
REFERENCE = {("clean", 0): 0.8, ("noise", 1): 0.7, ("noise", 2): 0.6, ("blur", 1): 0.75, ("blur", 2): 0.5}


def test_robustness_summary_by_hand():
    summary = robustness_summary(AUROCS)
    assert summary["mean_corrupted_auroc"] == pytest.approx((0.8 + 0.6 + 0.85 + 0.7) / 4, abs=1e-15)
    assert (summary["worst_condition"], summary["worst_severity"], summary["worst_auroc"]) == ("noise", 2, 0.6)
    assert summary["auroc_drop"] == pytest.approx(0.9 - 0.7375, abs=1e-15)
    assert robustness_summary({("clean", 0): 0.7}) == {"clean_auroc": 0.7}


def test_mce_and_relative_mce_by_hand():
    mce, relative = corruption_errors(AUROCS, REFERENCE)
    ce_noise = (0.2 + 0.4) / (0.3 + 0.4)
    ce_blur = (0.15 + 0.3) / (0.25 + 0.5)
    assert mce == pytest.approx((ce_noise + ce_blur) / 2, abs=1e-12)
    rel_noise = ((0.9 - 0.8) + (0.9 - 0.6)) / ((0.8 - 0.7) + (0.8 - 0.6))
    rel_blur = ((0.9 - 0.85) + (0.9 - 0.7)) / ((0.8 - 0.75) + (0.8 - 0.5))
    assert relative == pytest.approx((rel_noise + rel_blur) / 2, abs=1e-12)
    assert corruption_errors(AUROCS, {("clean", 0): 0.8}) == (None, None)  # reference lacks conditions


# --- slices -------------------------------------------------------------------------------------


def _board(**settings) -> Board:
    return Board(
        name="b", version=1, description="", task="anomaly", resolution=64, split_manifest=None,
        split_sha256="", dataset=DatasetSpec("synth-cxr"), **settings,
    )  # fmt: skip


def test_age_bins_are_half_open_at_40_and_60():
    meta = pd.DataFrame({"age": [0, 39, 40, 59, 60, 95]})
    assert slice_values(meta, "age_bin").tolist() == ["<40", "<40", "40-59", "40-59", "60+", "60+"]


def test_per_finding_slices_hold_that_finding_and_every_normal_image():
    meta = pd.DataFrame(
        {"findings": ["No Finding", "Mass", "Mass|Nodule", "Nodule", "No Finding"], "sex": ["F", "M", "F", "M", "M"]}
    )
    truth = np.array([0, 1, 1, 1, 0])
    masks = slice_masks(_board(slices=("sex",)), meta, truth)
    assert masks["finding=Mass"].tolist() == [True, True, True, False, True]
    assert masks["finding=Nodule"].tolist() == [True, False, True, True, True]
    assert masks["sex=F"].tolist() == [True, False, True, False, False]


def test_a_slice_below_min_slice_class_gets_a_flag_and_no_number():
    rng = np.random.default_rng(6)
    n = 60
    meta = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "patient_id": [f"p{k}" for k in range(n)],
            "findings": ["Mass"] * 30 + ["No Finding"] * 30,
            "site": ["A"] * 56 + ["B"] * 4,
        }
    )
    truth = np.r_[np.ones(30, int), np.zeros(30, int)]
    scores = rng.normal(size=n) + truth
    task = AnomalyTask()
    board = _board(slices=("site",), min_slice_class=2, bootstrap=20)
    rows = task.evaluate(board, meta, truth, scores, task.fit_on_validation(board, truth, scores), "clean", 0, True)
    by_slice = {r["slice"]: r for r in rows.metrics if r["metric"] == "auroc"}
    assert by_slice["site=B"]["flag"].startswith("too few cases: 0 abnormal, 4 normal") and np.isnan(
        by_slice["site=B"]["value"]
    )
    assert by_slice["site=A"]["flag"] is None
    assert by_slice["site=A"]["value"] == pytest.approx(pairwise_auroc(truth[:56], scores[:56]), abs=1e-12)
    # n = 60 < 300: calibration rows carry the small-sample flag
    ece = next(r for r in rows.metrics if r["metric"] == "ece_platt")
    assert ece["flag"] == "calibration measured on 60 images (< 300)"


def test_metric_rows_carry_n_and_positives():
    y, s, _ = correlated_tied_scores(7)
    groups = np.arange(len(y))
    rows = {m.metric: m for m in binary_metrics(y, s, groups, 0.0, 30, 0)}
    assert all(m.n == len(y) and m.n_pos == int(y.sum()) for m in rows.values())


def test_no_resample_with_both_classes_gives_nan_intervals_not_a_crash():
    y = np.r_[np.ones(3, int), np.zeros(3, int)]
    scores = np.arange(6.0)
    groups = np.zeros(6, int)  # one patient: every resample holds both classes...
    fns = binary_metric_fns(2.5)
    assert all(np.isfinite(v).all() for v in cluster_bootstrap(fns, y, scores, groups, 20, 0).values())
    groups = np.r_[np.zeros(3, int), np.ones(3, int)]  # ...two single-class patients: some do not
    intervals = cluster_bootstrap(fns, y, scores, groups, 20, 0)
    assert set(intervals) == set(fns)
    empty = cluster_bootstrap(fns, y[:3], scores[:3], groups[:3], 20, 0)  # one class: no resample kept
    assert all(np.isnan(v).all() for v in empty.values())


def test_the_normal_quantile_threshold_needs_no_abnormal_validation_image():
    """`threshold = "normal-quantile"`: the q-quantile of the normal validation scores, by
    linear interpolation between order statistics (written out here); without abnormal
    validation images only min-max scaling is fitted and no risk-coverage curve is drawn."""
    from harness.core.errors import XRBenchError

    rng = np.random.default_rng(8)
    val = rng.normal(size=41)
    ordered, q = np.sort(val), 0.9
    h = (len(val) - 1) * q
    expected = ordered[int(h)] + (h - int(h)) * (ordered[int(h) + 1] - ordered[int(h)])
    task = AnomalyTask()
    board = _board(threshold="normal-quantile", threshold_quantile=q, bootstrap=20)
    fitted = task.fit_on_validation(board, np.zeros(41, int), val)
    assert fitted.threshold == pytest.approx(expected, abs=1e-12) and set(fitted.calibrators) == {"none"}
    assert (val >= fitted.threshold).sum() == 5  # (41 - 1) * 0.9 = 36: the 37th smallest and the four above it
    truth = np.r_[np.ones(30, int), np.zeros(30, int)]
    scores = rng.normal(size=60) + truth
    meta = pd.DataFrame({"image_id": [f"i{k}" for k in range(60)], "patient_id": [f"p{k}" for k in range(60)],
                         "findings": ["Mass"] * 30 + ["No Finding"] * 30})  # fmt: skip
    rows = {r["metric"]: r for r in task.evaluate(board, meta, truth, scores, fitted, "clean", 0, True).metrics}
    tp = int(((scores >= expected) & (truth == 1)).sum())
    assert rows["f1"]["value"] == pytest.approx(2 * tp / (30 + int((scores >= expected).sum())), abs=1e-12)
    assert "ece_none" in rows and "ece_platt" not in rows and "aurc" not in rows
    with pytest.raises(XRBenchError, match=r"no abnormal images, so no F1-optimal threshold; set threshold = "):
        task.fit_on_validation(_board(), np.zeros(41, int), val)
    with pytest.raises(XRBenchError, match=r"board b: its validation split has no normal images to take a quantile"):
        task.fit_on_validation(board, np.ones(41, int), val)
