import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve

from harness.scoring.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_calibrator,
    fit_temperature,
    reliability_bins,
)
from harness.scoring.selective import risk_coverage


@pytest.fixture
def probs_labels():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=2000)
    labels = (rng.uniform(size=2000) < probs**1.5).astype(int)  # miscalibrated on purpose
    return labels, probs


def test_ece_matches_a_second_formula_built_on_sklearn_calibration_curve(probs_labels):
    labels, probs = probs_labels
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=15, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 16)[1:-1], probs), minlength=15)
    counts = counts[counts > 0]
    expected = np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred))
    assert expected_calibration_error(reliability_bins(labels, probs)) == pytest.approx(expected, abs=1e-12)


def test_adaptive_bins_hold_equal_mass(probs_labels):
    labels, probs = probs_labels
    counts = [b.count for b in reliability_bins(labels, probs, adaptive=True)]
    assert len(counts) == 15 and max(counts) - min(counts) <= 2


def test_brier_and_perfect_calibration(probs_labels):
    labels, probs = probs_labels
    m = calibration_metrics(labels, probs)
    assert m["brier"] == pytest.approx(np.mean((probs - labels) ** 2), abs=1e-12)
    rng = np.random.default_rng(1)
    calibrated = rng.uniform(size=20000)
    assert calibration_metrics((rng.uniform(size=20000) < calibrated).astype(int), calibrated)["ece"] < 0.02


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_calibrators_fitted_on_validation_reduce_ece_on_held_out_data(kind):
    rng = np.random.default_rng(2)

    def draw(n):
        labels = rng.integers(0, 2, n)
        return labels, 3.0 + 2.0 * labels + rng.normal(size=n)  # scores far from [0, 1]

    val_labels, val_scores = draw(600)
    test_labels, test_scores = draw(600)
    before = calibration_metrics(test_labels, fit_calibrator("none", val_scores, val_labels)(test_scores))["ece"]
    after = calibration_metrics(test_labels, fit_calibrator(kind, val_scores, val_labels)(test_scores))["ece"]
    assert after < before and after < 0.08


def test_calibrator_is_a_function_of_validation_data_only():
    rng = np.random.default_rng(3)
    val_labels, val_scores = rng.integers(0, 2, 100), rng.normal(size=100)
    calibrate = fit_calibrator("platt", val_scores, val_labels)
    probe = np.linspace(-2, 2, 9)
    first = calibrate(probe)
    calibrate(rng.normal(size=1000) * 50)  # applying it to other data must not change it
    assert np.array_equal(first, calibrate(probe))


def test_temperature_scaling_recovers_the_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=g) * 2
    targets = torch.bernoulli(torch.sigmoid(true_logits), generator=g)
    assert fit_temperature(true_logits * 3.0, targets) == pytest.approx(3.0, rel=0.15)


def test_risk_coverage_for_perfect_and_useless_confidence():
    labels = np.array([0, 0, 1, 1])
    coverage, risk, aurc = risk_coverage(labels, np.array([0.1, 0.2, 0.9, 0.8]))
    assert aurc == 0.0 and coverage[-1] == 1.0
    # confident mistakes first: risk starts at 1
    _, risk, aurc = risk_coverage(labels, np.array([0.99, 0.4, 0.01, 0.6]))
    assert risk[0] == 1.0 and aurc > 0.5
