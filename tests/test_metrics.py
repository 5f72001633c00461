import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from harness.scoring.metrics import (
    auroc,
    best_f1_threshold,
    binary_metrics,
    cluster_bootstrap,
    sensitivity_at_specificity,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 150)
    scores = rng.normal(size=300) + 1.0 * labels
    groups = np.arange(300) // 2  # two images per patient
    return labels, scores, groups


def test_sensitivity_at_specificity_matches_a_threshold_scan(scored):
    labels, scores, _ = scored
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        spec = np.mean(~pred[labels == 0])
        if spec >= 0.95:
            best = max(best, np.mean(pred[labels == 1]))
    assert sensitivity_at_specificity(labels, scores) == pytest.approx(best)


def test_best_f1_threshold_is_the_argmax_over_all_thresholds(scored):
    labels, scores, _ = scored
    f1s = {t: f1_score(labels, scores >= t) for t in np.unique(scores)}
    threshold = best_f1_threshold(labels, scores)
    assert f1_score(labels, scores >= threshold) == pytest.approx(max(f1s.values()))


def test_point_estimates_match_scikit_learn_and_counting(scored):
    labels, scores, groups = scored
    values = {m.metric: m for m in binary_metrics(labels, scores, groups, 0.5, 100, 0)}
    assert values["auroc"].value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    tp, fp = int(((scores >= 0.5) & (labels == 1)).sum()), int(((scores >= 0.5) & (labels == 0)).sum())
    assert values["f1"].value == pytest.approx(2 * tp / (tp + fp + labels.sum()), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert values["sens@95spec"].value == pytest.approx(tpr[fpr <= 0.05].max())
    assert values["auroc"].n == 300 and values["auroc"].n_pos == 150


def test_the_literatures_metrics_against_a_sweep_over_every_threshold(scored):
    """Specificity at 95% sensitivity and F1-max, against every threshold tried by hand."""
    labels, scores, groups = scored
    values = {m.metric: m.value for m in binary_metrics(labels, scores, groups, 0.5, 100, 0)}
    thresholds = [*np.unique(scores), np.inf]
    positives, negatives = scores[labels == 1], scores[labels == 0]
    specificities = [(negatives < t).mean() for t in thresholds if (positives >= t).mean() >= 0.95]
    assert values["spec@95sens"] == pytest.approx(max(specificities), abs=1e-12)
    assert values["f1max"] == pytest.approx(max(f1_score(labels, scores >= t) for t in np.unique(scores)), abs=1e-12)
    assert values["f1max"] >= values["f1"]  # the test set's own best threshold beats any other


def test_bootstrap_intervals_depend_on_the_seed_only(scored):
    labels, scores, groups = scored
    first = binary_metrics(labels, scores, groups, 0.5, 300, seed=1)
    again = binary_metrics(labels, scores, groups, 0.5, 300, seed=1)
    other = binary_metrics(labels, scores, groups, 0.5, 300, seed=2)
    assert [(m.ci_low, m.ci_high) for m in first] == [(m.ci_low, m.ci_high) for m in again]
    assert [(m.ci_low, m.ci_high) for m in first] != [(m.ci_low, m.ci_high) for m in other]
    # equal to a hand-written patient loop: tests/test_statistics.py


def test_cluster_bootstrap_is_wider_than_image_bootstrap_for_duplicated_patients():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 40)
    scores = rng.normal(size=80) + labels
    # Each patient's image appears five times: the information is that of 80 images, not 400.
    y, s, g = np.repeat(labels, 5), np.repeat(scores, 5), np.repeat(np.arange(80), 5)
    fns = {"auroc": lambda a, b: roc_auc_score(a, b)}
    lo_c, hi_c = cluster_bootstrap(fns, y, s, g, 300, 0)["auroc"]
    lo_i, hi_i = cluster_bootstrap(fns, y, s, np.arange(400), 300, 0)["auroc"]
    assert hi_c - lo_c > 1.5 * (hi_i - lo_i)


@pytest.mark.parametrize("seed", range(5))
def test_rank_auroc_equals_scikit_learn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 97)
    labels[:2] = [0, 1]
    continuous = rng.normal(size=97) + labels
    tied = np.round(continuous * 2) / 2  # many ties
    for scores in (continuous, tied):
        assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
